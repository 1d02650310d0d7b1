"""The rewind Faust does after a rebalance (streams.faust.patches): every stream partition
goes back to where its group stands — also one the group never committed — and changelog
partitions are left to the recovery. A fake consumer records the seeks; the takeover test
(tests/integration/test_faust_agents.py) shows the loss this prevents on a real broker."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

import pytest

from streams.faust import patches


class TP(NamedTuple):
    topic: str
    partition: int


class SeekingConsumer:
    """aiokafka's `seek_to_committed` as it is: only offsets above 0 are sought."""

    def __init__(self, committed: dict[TP, int | None]) -> None:
        self.committed = committed
        self.positions: dict[TP, int | str] = dict.fromkeys(committed, "moved on")

    async def seek_to_committed(self) -> dict[TP, int | None]:
        for tp, offset in self.committed.items():
            if offset and offset > 0:
                self.positions[tp] = offset
        return dict(self.committed)

    def seek(self, tp: TP, offset: int) -> None:
        self.positions[tp] = offset

    async def seek_to_beginning(self, *tps: TP) -> None:
        for tp in tps:
            self.positions[tp] = "beginning"

    async def seek_to_end(self, *tps: TP) -> None:
        for tp in tps:
            self.positions[tp] = "end"


COMMITTED = {
    TP("payments", 0): 246,
    TP("payments", 1): 0,
    TP("payments", 2): None,  # a worker killed before its first commit owned it
    TP("app-p.window-changelog", 2): None,
}


@pytest.mark.parametrize(
    ("policy", "never_committed"), [("earliest", "beginning"), ("latest", "end")]
)
def test_every_stream_partition_goes_back_to_where_its_group_stands(
    policy: str, never_committed: str
) -> None:
    consumer = SeekingConsumer(COMMITTED)
    returned = asyncio.run(
        patches._rewind_every_stream_partition(consumer, {"app-p.window-changelog"}, policy)
    )
    assert returned == COMMITTED  # what Faust takes as the read offsets
    assert consumer.positions == {
        TP("payments", 0): 246,
        TP("payments", 1): 0,
        TP("payments", 2): never_committed,
        TP("app-p.window-changelog", 2): "moved on",  # the recovery's own
    }


def test_with_no_reset_policy_a_partition_never_committed_stays() -> None:
    consumer = SeekingConsumer({TP("payments", 2): None})
    asyncio.run(patches._rewind_every_stream_partition(consumer, set(), "none"))
    assert consumer.positions == {TP("payments", 2): "moved on"}


def test_the_driver_rewinds_through_the_patch() -> None:
    from faust.transport.drivers import aiokafka as driver

    patches.apply()
    thread: Any = driver.AIOKafkaConsumerThread
    assert thread.seek_to_committed is patches._seek_to_committed
