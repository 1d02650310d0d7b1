"""The window's batch path (records wait in `pending`, aggregates fold them in with
`Batched.add_all`) gives what adding each record one by one gives: the same results in the same
order, the same dead letters, late counts and stored state, whatever the values."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.pipeline_spec import WindowSpec
from streams.core.records import BatchResult, Event
from streams.core.state import DictStateStore
from streams.expressions import parse_aggregate
from streams.steps.contract import BatchContext
from streams.steps.window import GrowsInPlace, ValueKinds, WindowStep, make_aggregate

BASE = 1_795_600_000_000
AGGREGATES = {
    "n": "count()",
    "nx": "count(x)",
    "total": "sum(x)",
    "mean": "avg(x)",
    "low": "min(x)",
    "high": "max(x)",
    "first_x": "first(x)",
    "last_x": "last(x)",
    "p90": "percentile(x, 0.9)",
    "distinct": "count_distinct(x)",
    "names": "count_distinct(y)",
    "top_name": "max(y)",
    "earliest_x": "earliest(x)",
    "latest_x": "latest(x)",
}

plain_x = st.one_of(
    st.none(),
    st.integers(-1_000, 1_000),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
)
hostile_x = st.one_of(
    st.sampled_from([2**31 + 1, 2**40, 2**62, 2**63, 2**64 - 1, 2**64 + 1, -(2**63) - 1]),
    st.booleans(),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
)
plain_keys = st.one_of(
    st.sampled_from(["a", "b", "c"]), st.sampled_from([1, 2.5, True, None, "missing"])
)
hostile_keys = st.one_of(plain_keys, st.just(2**70))


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[int, Any, Any, Any, int]]:
    """(partition, key, x, y, t) with event times out of order by up to 8 s."""
    hostile = draw(st.integers(0, 3)) == 0
    x = st.one_of(plain_x, hostile_x) if hostile else plain_x
    keys = hostile_keys if hostile else plain_keys
    y = st.one_of(st.none(), st.sampled_from(["m1", "m2", "m3"]), st.integers(0, 3))
    step = st.tuples(st.integers(0, 1), keys, x, y, st.integers(0, 3_000), st.integers(0, 8_000))
    now = BASE
    records = []
    for partition, key, xv, yv, advance, back in draw(st.lists(step, min_size=1, max_size=150)):
        now += advance
        records.append((partition, key, xv, yv, now - back))
    return records


def run(
    one_by_one: bool,
    options: dict[str, Any],
    records: list[tuple[int, Any, Any, Any, int]],
    batch: int,
    persist_every: int,
) -> dict[str, Any]:
    spec = WindowSpec.model_validate({"key": "k", "aggregates": AGGREGATES, **options})
    step = WindowStep("window", spec, DictStateStore())
    if one_by_one:
        step.batched = False
    results: list[dict[str, Any]] = []
    letters: list[tuple[int, str, str]] = []
    late = 0
    for number, i in enumerate(range(0, len(records), batch)):
        events = []
        for offset, (partition, key, x, y, t) in enumerate(records[i : i + batch], i):
            value = {"x": x, "y": y} if key == "missing" else {"k": key, "x": x, "y": y}
            events.append(Event(value, timestamp_ms=t, partition=partition, offset=offset))
        ctx = BatchContext(BatchResult(), 0)
        results += [e.value for e in step.process(events, ctx)]
        letters += [(d.offset, d.error_type, d.message) for d in ctx.result.dead_letters]
        late += ctx.late
        if number % persist_every == persist_every - 1:
            step.persist()
            if number % 2:  # a rebalance: the step reloads what it persisted
                step.reset()
    step.persist()
    stored = {key: _normal(step.store.get(key)) for key in step.store.keys()}
    ctx = BatchContext(BatchResult(), 0)
    results += [e.value for e in step.flush(ctx, final=True)]
    return {"results": results, "letters": letters, "late": late, "stored": stored}


def _normal(value: Any) -> Any:
    """Stored state with count_distinct's unordered lists sorted."""
    if isinstance(value, dict):
        if "w" in value:
            return {
                **value,
                "w": [
                    [s, e, last, [sorted(d) if i in (9, 10) else d for i, d in enumerate(dumped)]]
                    for s, e, last, dumped in value["w"]
                ],
            }
        return value
    return value


@settings(max_examples=200, deadline=None)
@given(
    records=streams(),
    batch=st.integers(1, 60),
    persist_every=st.integers(1, 4),
    options=st.sampled_from(
        [
            {"type": "tumbling", "size": "10s", "grace": "3s"},
            {"type": "tumbling", "size": "10s", "grace": "0s", "late": "dlq"},
            {"type": "hopping", "size": "10s", "hop": "4s", "grace": "2s"},
            {"type": "tumbling", "size": "10s", "grace": "3s", "emit": "updates"},
        ]
    ),
)
def test_batch_path_equals_one_by_one(
    records: list[Any], batch: int, persist_every: int, options: dict[str, Any]
) -> None:
    assert run(False, options, records, batch, persist_every) == run(
        True, options, records, batch, persist_every
    )


def test_plain_batches_take_the_batch_path() -> None:
    spec = WindowSpec.model_validate(
        {"key": "k", "aggregates": AGGREGATES, "type": "tumbling", "size": "1m"}
    )
    step = WindowStep("window", spec, DictStateStore())
    events = [Event({"k": "a", "x": i * 0.5, "y": "m"}, timestamp_ms=BASE + i) for i in range(10)]
    step.process(events, BatchContext(BatchResult(), 0))
    [window] = step.cache["a"].windows.values()
    assert window.pending is not None and len(window.pending) == 10


def test_windows_past_the_exact_limits_equal_one_by_one() -> None:
    """Past 256 values (percentile's sketch) and 1,000 distinct (count_distinct's HLL)."""
    values = [((i * 7919) % 10_007) / 7.0 for i in range(3_000)]
    records = [(0, "a", v, f"m{i % 1_500}", BASE + i) for i, v in enumerate(values)]
    options = {"type": "tumbling", "size": "1h"}
    batched = run(False, options, records, 700, 2)
    assert batched == run(True, options, records, 700, 2)
    [result] = batched["results"]
    truth = sorted(values)[math.ceil(0.9 * len(values)) - 1]
    assert abs(result["p90"] - truth) <= 0.01 * truth
    assert abs(result["names"] - 1_500) <= 0.02 * 1_500


def test_int_sums_near_the_limit_leave_the_batch_path() -> None:
    records = [(0, "a", 2**62, None, BASE), (0, "a", 2**62, None, BASE + 1)]
    records += [(0, "a", 2**31, None, BASE + 2 + i) for i in range(50)]
    options = {"type": "tumbling", "size": "1m"}
    batched = run(False, options, records, 1, 3)
    assert batched == run(True, options, records, 1, 3)
    assert batched["results"][0]["total"] == 2**63 + 50 * 2**31


@given(values=st.lists(st.one_of(plain_x, hostile_x), max_size=40), start=st.booleans())
@settings(max_examples=300, deadline=None)
def test_add_all_equals_add_one_by_one(values: list[Any], start: bool) -> None:
    """And results_of([values]) is the result of a fresh state given them."""
    for source in AGGREGATES.values():
        aggregate: Any = make_aggregate(parse_aggregate(source))
        prepare = aggregate.prepare if isinstance(aggregate, GrowsInPlace) else (lambda v: v)
        kinds = ValueKinds.of(values)
        if not aggregate.accepts(kinds):
            continue
        times = list(range(len(values)))
        state = aggregate.init()
        if start and values and values[0] is not None:  # a state holding a value already
            state = aggregate.add(state, prepare(values[0]), 0)
        one_by_one = state if not isinstance(state, list | set) else type(state)(state)
        for value, t in zip(values, times, strict=True):
            if value is None and aggregate.skips_nulls:
                continue
            one_by_one = aggregate.add(one_by_one, prepare(value), t)
        kept = [(v, t) for v, t in zip(values, times, strict=True) if v is not None]
        if aggregate.skips_nulls:
            batch_values, batch_times = [v for v, _ in kept], [t for _, t in kept]
        else:
            batch_values, batch_times = values, times
        fresh = aggregate.add_all(aggregate.init(), batch_values, batch_times)
        [result] = aggregate.results_of([batch_values], [batch_times])
        assert result == aggregate.result(fresh), source
        together = aggregate.add_all(state, batch_values, batch_times)
        dumped, expected = aggregate.dump(together), aggregate.dump(one_by_one)
        if source.startswith("count_distinct") and isinstance(dumped, list):
            dumped, expected = sorted(dumped), sorted(expected)
        assert dumped == expected, source


WITHOUT_TIMES = {k: v for k, v in AGGREGATES.items() if k not in ("earliest_x", "latest_x")}


@settings(max_examples=150, deadline=None)
@given(
    raw=st.lists(
        st.tuples(
            st.integers(0, 30),
            st.one_of(st.integers(-50, 50), st.floats(-1e3, 1e3, allow_nan=False)),
            st.sampled_from(["m1", "m2", "m3"]),
            st.integers(0, 400),
        ),
        min_size=1,
        max_size=300,
    ),
    batch=st.integers(1, 120),
)
def test_windows_closing_together_equal_one_by_one(
    raw: list[tuple[int, Any, str, int]], batch: int
) -> None:
    """Many keys' windows close at once: their results computed together
    (Batched.results_of) equal one by one."""
    now, records = BASE, []
    for key, x, y, advance in raw:
        now += advance
        records.append((0, f"k{key}", x, y, now))
    global AGGREGATES  # noqa: PLW0603 - run() reads it
    saved = AGGREGATES
    AGGREGATES = WITHOUT_TIMES
    try:
        options = {"type": "tumbling", "size": "2s", "grace": "0s"}
        assert run(False, options, records, batch, 1_000) == run(
            True, options, records, batch, 1_000
        )
    finally:
        AGGREGATES = saved


@given(
    columns=st.lists(
        st.lists(
            st.one_of(
                st.integers(-50, 50),
                st.floats(-1e3, 1e3, allow_nan=False),
                st.sampled_from(["m1", "m2"]),
            ),
            min_size=1,
            max_size=20,
        ),
        max_size=12,
    ),
    told=st.booleans(),
)
@settings(max_examples=300, deadline=None)
def test_results_of_equals_a_fresh_state_given_each_window(
    columns: list[list[Any]], told: bool
) -> None:
    """Each window's result from `results_of` (several windows at once) is that of a fresh
    state given its values (`add_all`, itself checked against `add` above); also when told
    (`Batched.accepts`) what classes the values have, as the window does."""
    for source in WITHOUT_TIMES.values():
        aggregate: Any = make_aggregate(parse_aggregate(source))
        kinds = ValueKinds.of([v for column in columns for v in column])
        probe: Any = make_aggregate(parse_aggregate(source))  # accepts() remembers kinds
        if not probe.accepts(kinds):
            continue
        if told:
            aggregate.accepts(kinds)
        expected = [aggregate.result(aggregate.add_all(aggregate.init(), c, ())) for c in columns]
        assert aggregate.results_of(list(columns), ()) == expected, source


ROOT = Path(__file__).resolve().parents[3]
MIXED_KEYS_TWO_PARTITIONS = """
from tests.unit.steps.test_window_batch_path import run
t = 1_795_600_000_000
records = [(0, "a", None, None, t)] * 9 + [(0, "b", None, None, t), (0, 1, None, None, t)]
records.append((1, 2.5, None, None, t))
options = {"type": "tumbling", "size": "10s", "grace": "3s"}
assert run(False, options, records, 6, 2) == run(True, options, records, 6, 2)
"""


@pytest.mark.parametrize("hash_seed", ["0", "2", "6"])
def test_windows_of_two_partitions_close_in_the_same_order_on_both_paths(hash_seed: str) -> None:
    """Found by hypothesis in CI: the final close took partitions in the order they first
    registered a window, which the batch path and set order changed (string hashes differ
    per process: these seeds failed before the partitions were taken in order)."""
    subprocess.run(
        [sys.executable, "-c", MIXED_KEYS_TWO_PARTITIONS],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
    )
