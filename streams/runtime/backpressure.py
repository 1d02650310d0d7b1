"""Backpressure between a worker's own topics.

A worker reads topics its own pipelines write: a re-keyed pipeline's repartition topic, a
derived stream another pipeline reads (`payments_eur` → `merchant_minutes`). Under more
load than it can take, the consumer keeps handing it source records, and the pipelines
behind an internal topic fall further behind without bound while the source pipelines
keep pace: in a 10-minute soak at 120% of the maximum, 3.1M records waited on the internal
topics and 1.5M on the source — a lag an autoscaler watching the source never sees
(docs/decisions/0003-backpressure.md).

So, as Kafka Streams pauses a partition whose buffer is full: when the records waiting
on the internal partitions this worker owns pass `hold_at`, the worker polls only those
(its source partitions' fetched records stay buffered in the consumer) until `release_at`
or fewer wait. Every pipeline then moves at the same pace and the backlog waits on the
source topic, where the lag metric and the autoscaler look.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from aiokafka.structs import TopicPartition

HOLD_AT_BATCHES = 20  # internal records waiting, in batches (batch_max), before a hold
RELEASE_AT_BATCHES = 5


class Backpressure:
    """Whether the source partitions should be held, from the internal partitions' lag."""

    def __init__(self, internal_topics: Collection[str], batch_max: int) -> None:
        self.internal_topics = frozenset(internal_topics)
        self.hold_at = HOLD_AT_BATCHES * batch_max
        self.release_at = RELEASE_AT_BATCHES * batch_max
        self.held = False
        self.holds = 0  # how many times the sources were held (for the log and tests)
        # what a poll takes: the internal partitions while held, else [] (every partition)
        self.polled: list[TopicPartition] = []

    def update(
        self,
        assigned: Collection[TopicPartition],
        next_offsets: Mapping[TopicPartition, int],
        end_offset: Callable[[TopicPartition], int | None],
    ) -> tuple[bool | None, int]:
        """`decide` on the internal lag of the `assigned` partitions, `polled` following
        it; returns the verdict and the lag."""
        lag = self.internal_lag(assigned, next_offsets, end_offset)
        verdict = self.decide(lag)
        if verdict:
            self.polled = [tp for tp in assigned if tp.topic in self.internal_topics]
        elif verdict is False:
            self.polled = []
        return verdict, lag

    def internal_lag(
        self,
        owned: Collection[TopicPartition],
        next_offsets: Mapping[TopicPartition, int],
        end_offset: Callable[[TopicPartition], int | None],
    ) -> int:
        """Records waiting on the internal partitions among `owned`: the end offset the
        last fetch saw (None: not fetched yet) minus the next offset to process."""
        lag = 0
        for tp in owned:
            if tp.topic in self.internal_topics:
                end = end_offset(tp)
                position = next_offsets.get(tp)
                if end is not None and position is not None and end > position:
                    lag += end - position
        return lag

    def decide(self, internal_lag: int) -> bool | None:
        """True: hold the sources now; False: release them now; None: no change."""
        if not self.held and internal_lag > self.hold_at:
            self.held = True
            self.holds += 1
            return True
        if self.held and internal_lag <= self.release_at:
            self.held = False
            return False
        return None

    def reset(self) -> None:
        """A new assignment: nothing held."""
        self.held = False
        self.polled = []
