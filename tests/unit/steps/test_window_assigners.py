"""Which windows an event time is in (streams.steps.window.assigners) against the
definition: every `[s, s + size)` with `s` a multiple of `hop` (tumbling: hop = size)
that holds the time, in start order."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from models.pipeline_spec import WindowSpec
from streams.steps.window.assigners import pairs_of, starts_of


def windows_of(t: int, size: int, hop: int) -> list[int]:
    first = (t - size) // hop * hop  # a multiple of hop at or before t - size
    return [s for s in range(first, t + 1, hop) if s <= t < s + size]


@settings(max_examples=200, deadline=None)
@given(
    hop=st.integers(1, 50),
    hops=st.integers(1, 5),
    extra=st.integers(0, 49),
    times=st.lists(st.integers(-(10**6), 10**13), max_size=40),
)
def test_pairs_are_each_records_windows_in_order(
    hop: int, hops: int, extra: int, times: list[int]
) -> None:
    size = hop * hops + extra % hop  # multiples of hop (the C path) and not
    options = {"type": "hopping", "hop": f"{hop}ms"} if size != hop else {"type": "tumbling"}
    spec = WindowSpec.model_validate(
        {"size": f"{size}ms", "aggregates": {"n": "count()"}, **options}
    )
    records, starts, lasts = pairs_of(spec, times)
    expected = [(i, s) for i, t in enumerate(times) for s in windows_of(t, size, hop)]
    if records is None:  # tumbling: the records themselves, one window each
        records = list(range(len(times)))
    assert list(zip(records, starts, strict=True)) == expected
    assert [last for last, _ in zip(lasts, records, strict=False)] == [
        i + 1 == len(records) or records[i + 1] != r for i, r in enumerate(records)
    ]
    for t in times:
        assert list(starts_of(spec)(t)) == windows_of(t, size, hop)
