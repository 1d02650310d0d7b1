"""An in-memory broker with a group member consumer, a reader and a (transactional)
producer: the client surface of streams.runtime.seams, enough to run the engine, its
checkpoint and its recovery without Kafka. Offsets are indexes into a partition's log;
read_committed readers stop at the first record of an open transaction (the last stable
offset) and skip aborted ones, as Kafka's do. Transactional producers have an id and an
epoch: a new producer of an id fences the older one (its open transaction aborted, its
later transactional calls refused with ProducerFenced), and committed offsets keep their
metadata, as a transaction coordinator and a group coordinator do."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from aiokafka.errors import CommitFailedError, ProducerFenced
from aiokafka.structs import TopicPartition

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    txn: int | None = None


@dataclass
class FakeBroker:
    partitions: int = 4
    logs: dict[tuple[str, int], list[Record]] = field(default_factory=dict)
    group_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    offset_metadata: dict[TopicPartition, str] = field(default_factory=dict)
    epochs: dict[str, int] = field(default_factory=dict)  # per transactional id
    txn_of: dict[int, str] = field(default_factory=dict)  # open transaction -> its id
    fenced: list[str] = field(default_factory=list)  # ids fenced, in order
    generation: int = 0
    open_txns: set[int] = field(default_factory=set)
    aborted: set[int] = field(default_factory=set)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    round_trips: int = 0  # requests that would reach a broker (a cost measure)

    def log(self, topic: str, partition: int) -> list[Record]:
        return self.logs.setdefault((topic, partition), [])

    def append(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        headers: Headers,
        txn: int | None = None,
        timestamp: int = 0,
    ) -> int:
        log = self.log(topic, partition)
        log.append(Record(topic, partition, len(log), timestamp, key, value, headers, txn))
        return len(log) - 1

    def readable(self, tp: TopicPartition, committed: bool) -> tuple[list[Record], int]:
        """The records a reader sees and where they end (the LSO for read_committed)."""
        log = self.log(tp.topic, tp.partition)
        if not committed:
            return log, len(log)
        seen: list[Record] = []
        for record in log:
            if record.txn in self.open_txns:
                return seen, record.offset
            if record.txn not in self.aborted:
                seen.append(record)
        return seen, len(log)

    def next_txn(self) -> int:
        return next(self._ids)

    def init_producer(self, transactional_id: str) -> int:
        """InitProducerId: the id's epoch bumped, its open transaction aborted."""
        return self._fence(transactional_id)

    def time_out(self, transactional_id: str) -> None:
        """The transaction coordinator aborts the id's open transaction, past its
        transaction timeout (Kafka's abortTimedOutTransactions: prepareFenceProducerEpoch,
        then the abort): the epoch is bumped, so the producer's next call is refused."""
        assert transactional_id in self.txn_of.values(), "no open transaction to time out"
        self._fence(transactional_id)

    def _fence(self, transactional_id: str) -> int:
        epoch = self.epochs.get(transactional_id, -1) + 1
        if epoch > 0:
            self.fenced.append(transactional_id)
        self.epochs[transactional_id] = epoch
        for txn, owner in list(self.txn_of.items()):
            if owner == transactional_id:
                self.open_txns.discard(txn)
                self.aborted.add(txn)
                del self.txn_of[txn]
        return epoch

    def commit_offsets(self, offsets: Mapping[TopicPartition, Any]) -> None:
        for tp, value in offsets.items():
            offset, metadata = value if isinstance(value, tuple) else (value, "")
            self.group_offsets[tp] = offset
            self.offset_metadata[tp] = metadata

    def records(self, topic: str, *, committed: bool = True) -> list[Record]:
        return [
            r
            for (t, p) in sorted(self.logs)
            if t == topic
            for r in self.readable(TopicPartition(t, p), committed)[0]
        ]


class _Batch:
    def __init__(self) -> None:
        self.items: list[tuple[bytes | None, bytes | None, Headers]] = []

    def append(
        self, *, key: bytes | None, value: bytes | None, timestamp: Any, headers: Headers
    ) -> object:
        self.items.append((key, value, list(headers)))
        return object()


class FakeProducer:
    def __init__(
        self,
        broker: FakeBroker,
        *,
        transactional: bool = False,
        transactional_id: str = "unit-txn",
    ) -> None:
        self.broker = broker
        self.transactional = transactional
        self.transactional_id = transactional_id
        self.epoch = broker.init_producer(transactional_id) if transactional else 0
        self.txn: int | None = None
        self.pending_offsets: dict[TopicPartition, Any] = {}
        self.calls: list[str] = []
        self.stopped = False
        # aiokafka's sender gave up (it could not reach the transaction coordinator): every
        # later call fails with this; the broker still holds the open transaction
        self.dead: Exception | None = None

    def _live(self) -> None:
        """A newer producer of this id exists: refused, as the broker does."""
        if self.dead is not None:
            raise self.dead
        if self.transactional and self.broker.epochs[self.transactional_id] != self.epoch:
            self.txn = None
            raise ProducerFenced()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.stopped = True

    def create_batch(self) -> _Batch:
        return _Batch()

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> Any:
        self._live()
        first = -1
        for key, value, headers in batch.items:
            offset = self.broker.append(topic, partition, key, value, headers, self.txn)
            first = offset if first < 0 else first
        self.broker.round_trips += 1
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(SimpleNamespace(offset=first))
        return done

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.broker.partitions))

    async def begin_transaction(self) -> None:
        assert self.transactional and self.txn is None, "a transaction is open"
        self._live()
        self.calls.append("begin")
        self.txn = self.broker.next_txn()
        self.broker.open_txns.add(self.txn)
        self.broker.txn_of[self.txn] = self.transactional_id

    async def commit_transaction(self) -> None:
        self._live()
        assert self.txn is not None, "no transaction"
        self.calls.append("commit")
        self.broker.open_txns.discard(self.txn)
        self.broker.txn_of.pop(self.txn, None)
        self.broker.commit_offsets(self.pending_offsets)
        self.pending_offsets = {}
        self.txn = None
        self.broker.round_trips += 1

    async def abort_transaction(self) -> None:
        self._live()
        assert self.txn is not None, "no transaction"
        self.calls.append("abort")
        self.broker.open_txns.discard(self.txn)
        self.broker.aborted.add(self.txn)
        self.pending_offsets = {}
        self.txn = None

    async def send_offsets_to_transaction(
        self, offsets: Mapping[TopicPartition, Any], group_id: str
    ) -> None:
        self._live()
        assert self.txn is not None, "no transaction"
        self.calls.append("send_offsets")
        self.pending_offsets.update(offsets)
        self.broker.round_trips += 1

    def crashed(self) -> None:
        """The process died: its open transaction is aborted (its timeout, or a fence)."""
        if self.txn is not None:
            self.broker.open_txns.discard(self.txn)
            self.broker.aborted.add(self.txn)
            self.txn = None


class FakeReader:
    """A consumer of assigned partitions (a changelog restore)."""

    def __init__(self, broker: FakeBroker, read_committed: bool) -> None:
        self.broker = broker
        self.read_committed = read_committed
        self.positions: dict[TopicPartition, int] = {}
        self.assigned: set[TopicPartition] = set()
        self.stopped = False

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self.stopped = True

    def assign(self, partitions: Any) -> None:
        self.assigned = set(partitions)
        for tp in self.assigned:
            self.positions.setdefault(tp, 0)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.positions[partition] = offset

    async def position(self, partition: TopicPartition) -> int:
        return self.positions.get(partition, 0)

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]:
        left = max_records or 1_000_000
        found: dict[TopicPartition, list[Any]] = {}
        for tp in sorted(partitions or self.assigned):
            records, end = self.broker.readable(tp, self.read_committed)
            start = self.positions.get(tp, 0)
            taken = [r for r in records if r.offset >= start][:left]
            if taken:
                found[tp] = taken
                left -= len(taken)
                self.positions[tp] = taken[-1].offset + 1
            elif end > start:  # past aborted records and markers
                self.positions[tp] = end
            if left <= 0:
                break
        return found

    async def beginning_offsets(
        self, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, 0)

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.broker.log(tp.topic, tp.partition)) for tp in partitions}

    def highwater(self, partition: TopicPartition) -> int | None:
        return len(self.broker.log(partition.topic, partition.partition))

    def last_stable_offset(self, partition: TopicPartition) -> int | None:
        return self.broker.readable(partition, True)[1]


class FakeCoordinator:
    """The consumer's group coordinator: its generation, and committed offsets with their
    metadata (what streams.runtime.seams.committed_owners reads)."""

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.generation = broker.generation
        self.rejoins_requested = 0

    def request_rejoin(self) -> None:
        """aiokafka's coordinator then rebalances in its own task; a test joins."""
        self.rejoins_requested += 1

    async def fetch_committed_offsets(self, partitions: list[TopicPartition]) -> dict[Any, Any]:
        broker = self.broker
        return {
            tp: SimpleNamespace(
                offset=broker.group_offsets[tp], metadata=broker.offset_metadata[tp]
            )
            for tp in partitions
            if tp in broker.group_offsets
        }


class FakeConsumer(FakeReader):
    """A group member: committed offsets, commits refused once its generation is old."""

    def __init__(self, broker: FakeBroker) -> None:
        super().__init__(broker, read_committed=True)
        self._coordinator = FakeCoordinator(broker)
        self.listener: Any = None
        self.topics: list[str] = []

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.topics, self.listener = topics, listener

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.broker.partitions))

    async def committed(self, partition: TopicPartition) -> int | None:
        return self.broker.group_offsets.get(partition)

    async def commit(self, offsets: Mapping[TopicPartition, Any]) -> None:
        self.broker.round_trips += 1
        if self._coordinator.generation != self.broker.generation:
            raise CommitFailedError("the group has rebalanced")
        self.broker.commit_offsets(offsets)

    async def join(self, partitions: set[TopicPartition]) -> None:
        """A rebalance (eager: everything revoked first), then a new generation of the
        group in which this member owns `partitions`."""
        await self.listener.on_partitions_revoked(set(self.assigned))
        self.broker.generation += 1
        self._coordinator.generation = self.broker.generation
        self.assign(partitions)
        await self.listener.on_partitions_assigned(partitions)
