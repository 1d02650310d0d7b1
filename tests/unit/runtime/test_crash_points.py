"""A crash at every point of a checkpoint (issue 23): hypothesis chooses the events (keys,
amounts, event times), the batch size, the checkpoint and the point where the worker
dies; a new worker restores and processes the rest. Its state, and the state a fresh
restore reads from the changelog, equal a run without the crash; exactly-once: every
result once; at-least-once: results possibly twice, each identical to the uncrashed
run's. All on the in-memory broker (tests/unit/runtime/fakes.py)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from streams.runtime.faults import POINTS
from tests.unit.runtime.fakes import FakeBroker
from tests.unit.runtime.harness import Member, produce, results

AT_LEAST_ONCE_POINTS = [p for p in POINTS if "send_offsets" not in p and "before_commit" not in p]
# where a worker can die besides the named points: after a batch, before its checkpoint
BETWEEN = "between.batches"
EXAMPLES: Counter[tuple[bool, str]] = Counter()  # (exactly_once, point) -> crashed examples


class Crash(Exception):
    """The worker process died here."""


events = st.lists(
    st.tuples(
        st.sampled_from([f"user{i}" for i in range(6)]),
        st.integers(1, 100),
        st.integers(0, 60_000),
    ),
    min_size=1,
    max_size=60,
).map(lambda found: [(u, a, i * 500 + t // 100) for i, (u, a, t) in enumerate(found)])


async def _run(
    data: list[tuple[str, int, int]],
    exactly_once: bool,
    batch: int,
    every: int,
    crash_at: tuple[str, int] | None,
) -> tuple[Any, Any, Any, Counter[str]]:
    """A run in which the first worker dies at the nth time it reaches `crash_at` (None:
    never) and a second one takes over; then a fresh worker restores. Returns the final
    state, the freshly restored state, the committed results and the points reached."""
    broker = FakeBroker()
    produce(broker, data)
    victim = Member(broker, exactly_once=exactly_once)
    victim.engine.batch_max = batch
    seen = Counter[str]()

    def reached(where: str) -> None:
        seen[where] += 1
        if crash_at == (where, seen[where]):
            raise Crash(where)

    victim.engine.checkpoints.reached = reached
    await victim.join()
    last = victim
    try:
        for _ in range(10_000):
            if await victim.tick(every):
                break
            if victim.engine.uncommitted:
                reached(BETWEEN)
    except Crash:
        victim.producer.crashed()
        last = Member(broker, exactly_once=exactly_once)
        last.engine.batch_max = batch
        await last.join()
        await last.run_to_end(every)
    fresh = Member(broker, exactly_once=exactly_once)
    await fresh.join()
    return last.values(), fresh.values(), results(broker, committed=True), seen


def _check(exactly_once: bool, data: Any, batch: int, every: int, point: str, choice: int) -> None:
    state, restored, outputs, seen = asyncio.run(_run(data, exactly_once, batch, every, None))
    assert restored == state
    if point != BETWEEN:  # every checkpoint reaches each named point
        assert seen[point] > 0, f"{point} never reached"
    assume(seen[point] > 0)  # between batches: only when a batch waits for its checkpoint
    nth = 1 + choice % seen[point]
    crashed_state, crashed_restored, got, again = asyncio.run(
        _run(data, exactly_once, batch, every, (point, nth))
    )
    assert again[point] == nth  # it died there
    EXAMPLES[(exactly_once, point)] += 1
    assert crashed_state == state
    assert crashed_restored == state  # the changelog holds it: nothing twice, nothing lost
    want = Counter(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in outputs)
    have = Counter(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in got)
    if exactly_once:
        assert have == want
    else:  # every result the uncrashed run gave, possibly again, and no other
        assert set(have) == set(want)


@pytest.mark.parametrize("point", [*AT_LEAST_ONCE_POINTS, BETWEEN])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=events, batch=st.integers(1, 25), every=st.integers(1, 4), choice=st.integers(0, 50))
def test_at_least_once_crash_at_every_point(
    point: str, data: list[tuple[str, int, int]], batch: int, every: int, choice: int
) -> None:
    _check(False, data, batch, every, point, choice)


@pytest.mark.parametrize("point", [*POINTS, BETWEEN])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=events, batch=st.integers(1, 25), every=st.integers(1, 4), choice=st.integers(0, 50))
def test_exactly_once_crash_at_every_point(
    point: str, data: list[tuple[str, int, int]], batch: int, every: int, choice: int
) -> None:
    _check(True, data, batch, every, point, choice)


def test_every_point_was_crashed_at() -> None:
    """The figures (runs after the property tests, in file order, when they ran)."""
    if EXAMPLES:
        print(f"crash points x examples: {dict(EXAMPLES)}, total {sum(EXAMPLES.values())}")
        assert len(EXAMPLES) == len(AT_LEAST_ONCE_POINTS) + len(POINTS) + 2
