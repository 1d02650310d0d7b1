"""The hold/release decision of streams.runtime.backpressure (pure: no consumer)."""

from __future__ import annotations

from aiokafka.structs import TopicPartition

from streams.runtime.backpressure import Backpressure

SOURCE = TopicPartition("payments", 0)
INTERNAL = [TopicPartition("app-risk-repartition", p) for p in range(2)]


def test_internal_lag_counts_only_internal_partitions_that_were_fetched() -> None:
    backpressure = Backpressure(["app-risk-repartition"], batch_max=100)
    ends = {SOURCE: 10_000, INTERNAL[0]: 500, INTERNAL[1]: None}
    positions = {SOURCE: 0, INTERNAL[0]: 200, INTERNAL[1]: 0}
    lag = backpressure.internal_lag([SOURCE, *INTERNAL], positions, ends.get)
    assert lag == 300  # the source's 10,000 and the unfetched partition do not count
    # a position past the end the last fetch saw (the fetch is older) is no lag
    assert backpressure.internal_lag([INTERNAL[0]], {INTERNAL[0]: 900}, ends.get) == 0


def test_sources_are_held_above_hold_at_and_released_at_release_at_not_between() -> None:
    backpressure = Backpressure(["internal"], batch_max=100)  # hold above 2,000, release at 500
    assert backpressure.decide(2_000) is None
    assert backpressure.decide(2_001) is True
    assert backpressure.held
    assert backpressure.decide(5_000) is None  # already held: nothing to do
    assert backpressure.decide(501) is None  # between: stays held (no flapping)
    assert backpressure.decide(500) is False
    assert not backpressure.held
    assert backpressure.decide(1_000) is None  # between, released: stays released
    assert backpressure.decide(3_000) is True
    assert backpressure.holds == 2
    backpressure.reset()  # a new assignment: the consumer holds nothing
    assert not backpressure.held
    assert backpressure.decide(3_000) is True


def test_while_held_a_poll_takes_the_internal_partitions_only() -> None:
    backpressure = Backpressure(["app-risk-repartition"], batch_max=100)
    assigned = [SOURCE, *INTERNAL]
    positions = {INTERNAL[0]: 0, INTERNAL[1]: 0}
    verdict, lag = backpressure.update(assigned, positions, {INTERNAL[0]: 2_500}.get)
    assert (verdict, lag) == (True, 2_500)
    assert sorted(backpressure.polled) == sorted(INTERNAL)
    verdict, lag = backpressure.update(assigned, positions, {INTERNAL[0]: 400}.get)
    assert (verdict, lag) == (False, 400)
    assert backpressure.polled == []  # every partition again
    backpressure.update(assigned, positions, {INTERNAL[0]: 2_500}.get)
    backpressure.reset()
    assert backpressure.polled == []
