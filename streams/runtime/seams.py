"""The surface of the Kafka clients the engine, its checkpoint and its recovery use, as
Protocols: aiokafka's clients satisfy them, and the unit tests' in-memory fakes do too
(tests/unit/runtime/fakes.py), so the runtime is typed, not `Any`, underneath."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from aiokafka.structs import TopicPartition


class RecordLike(Protocol):
    """What the runtime reads of a consumer record."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


class ReaderLike(Protocol):
    """A consumer reading assigned partitions (a changelog restore, and the engine's)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def assign(self, partitions: Iterable[TopicPartition]) -> None: ...
    def seek(self, partition: TopicPartition, offset: int) -> None: ...
    async def position(self, partition: TopicPartition) -> int: ...
    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]: ...
    async def beginning_offsets(
        self, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]: ...
    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]: ...
    def highwater(self, partition: TopicPartition) -> int | None: ...
    def last_stable_offset(self, partition: TopicPartition) -> int | None: ...


class GroupConsumer(ReaderLike, Protocol):
    """The engine's consumer: a member of the group."""

    def subscribe(self, topics: list[str], listener: Any) -> None: ...
    def assignment(self) -> set[TopicPartition]: ...
    def partitions_for_topic(self, topic: str) -> set[int] | None: ...
    async def committed(self, partition: TopicPartition) -> int | None: ...
    async def commit(self, offsets: Mapping[TopicPartition, int | tuple[int, str]]) -> None: ...


class ProducerLike(Protocol):
    """The engine's producer: record batches, and transactions with exactly_once."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def create_batch(self) -> Any: ...
    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any: ...
    async def partitions_for(self, topic: str) -> set[int]: ...
    async def begin_transaction(self) -> None: ...
    async def commit_transaction(self) -> None: ...
    async def abort_transaction(self) -> None: ...
    async def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, tuple[int, str]], group_id: str
    ) -> None: ...


def group_generation(consumer: object) -> int:
    """The group generation the consumer is a member of; -1 before it joins and once it
    learns it was dropped (aiokafka resets it on IllegalGeneration/UnknownMemberId).

    The one reach into aiokafka's internals: it has no public API for the generation (its
    `ConsumerGroupMetadata` equivalent does not exist, and its TxnOffsetCommit is v0,
    without generation or member id — KIP-447), and the checkpoint needs it to write
    nothing once the member is out of the group and to mark its changelog writes."""
    coordinator = getattr(consumer, "_coordinator", None)
    return int(getattr(coordinator, "generation", -1))


def request_rejoin(consumer: object) -> None:
    """Ask the group for a rebalance, as Kafka Streams does when its producer is fenced
    (`StreamThread.handleTaskMigrated`: all tasks lost, then a rejoin): the revoke and
    assign callbacks run again and the assignment restores every partition.

    Needed because a fence does not always come with a rebalance: the broker aborts a
    transaction left open past its timeout (during a broker outage, a long pause) by
    bumping the producer's epoch, and the member, still in good standing in its group,
    learns of it only from ProducerFenced. A reach into aiokafka's coordinator, whose
    `request_rejoin()` is what aiokafka itself calls on a metadata change; it has no
    public `enforce_rebalance` (aiokafka 0.14)."""
    coordinator = getattr(consumer, "_coordinator", None)
    rejoin = getattr(coordinator, "request_rejoin", None)
    if callable(rejoin):
        rejoin()


async def committed_owners(
    consumer: object, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, tuple[int, str]]:
    """The group's committed offset of each partition with its metadata (partitions
    without a commit are left out). With exactly_once the metadata names the
    transactional id of the worker that owned the partition (streams.runtime.checkpoint).

    A reach into aiokafka's coordinator because `AIOKafkaConsumer.committed()` returns the
    offset only and drops the metadata (aiokafka 0.14, consumer.py); its coordinator's
    `fetch_committed_offsets` returns `OffsetAndMetadata` from the same OffsetFetch."""
    coordinator: Any = getattr(consumer, "_coordinator")  # noqa: B009 - see above
    found = await coordinator.fetch_committed_offsets(list(partitions))
    return {tp: (int(o.offset), str(o.metadata or "")) for tp, o in found.items()}


def read_fatal_error(producer: object) -> None:
    """Read (and drop) a fenced aiokafka producer's fatal error. aiokafka 0.14 sets it on
    its transaction manager's `_transaction_waiter` future, which only a commit or an abort
    awaits; unread, asyncio logs "Future exception was never retrieved" (an ERROR line)
    when the dead producer is collected, seconds after the fence was handled."""
    manager = getattr(producer, "_txn_manager", None)
    waiter = getattr(manager, "_transaction_waiter", None)
    if isinstance(waiter, asyncio.Future) and waiter.done() and not waiter.cancelled():
        waiter.exception()


async def stop_reader(reader: ReaderLike) -> None:
    """`reader.stop()`, except that aiokafka's own cancellation does not escape it.

    aiokafka 0.14's `Fetcher.close` cancels its pending fetch requests and awaits each
    without catching the CancelledError; a fetch sleeping in its retry back-off (the broker
    gone) made `consumer.stop()` raise CancelledError, and a worker stopping during a broker
    outage exited 1 with a traceback (CI, 2026-12-07). A cancellation of the stopping task
    itself is passed on.
    """
    try:
        await reader.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
