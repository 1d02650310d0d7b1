"""Recovery: how a worker gets back the state of the partitions it is assigned, as of
the group's committed offsets, before it processes any of their records.

    local copy (rocksdb://) ─► changelog from there on ─► rules ─► compensations + owner marks

For each (store, partition): the local copy is loaded when there is one (it holds a
committed checkpoint's state and the changelog offset it reaches), then the changelog is
read from there (or from its start) to its end, record by record, with C the group's
committed input offset of the partition (streams.runtime.changelog explains why):
- a record whose epoch is below one already applied in this changelog partition is a
  zombie's late write: skipped, its key compensated;
- a record whose offset header is >= C was written by a worker that died before its
  commit: stale, skipped, its key compensated;
- anything else is applied (a null value deletes the key).
Then the partition's new epoch is max(generation, largest epoch applied + 1), every
skipped key's restored value is queued as a compensating write, and the partition gets an
owner mark with the new epoch; the engine sends them (through the checkpoint) before any
record is processed.

The repartition bookkeeping lives here too (`first_deliveries`): the records a worker
forwarded twice to a repartition topic (it died between forwarding and committing) are
recognised by their source offsets, which are kept in state like the steps' state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from streams.runtime.changelog import ChangelogStore, StateRecoveryError, marks_in, owner_key
from streams.runtime.local_state import LocalState
from streams.runtime.seams import ReaderLike, RecordLike, stop_reader
from streams.runtime.sender import SOURCE_OFFSET, SOURCE_PARTITION

log = logging.getLogger("sluice.state")

RESTORE_IDLE_S = 30.0
ReaderFactory = Callable[[bool], ReaderLike]


@dataclass(slots=True)
class Restored:
    """What a restore read: records, where each changelog partition now ends (the next
    offset), the keys it applied or corrected per store partition, and what it skipped."""

    records: int = 0
    ends: dict[tuple[str, int], int] = field(default_factory=dict)
    touched: dict[tuple[ChangelogStore, int], set[str]] = field(default_factory=dict)
    stale: int = 0
    zombie: int = 0


@dataclass(slots=True)
class PartitionReplay:
    """The rules applied to one changelog partition, record by record, in log order."""

    store: ChangelogStore
    partition: int
    committed: int  # the group's committed input offset of the partition (C)
    newest: int = -1  # the largest epoch applied so far
    skipped: set[str] = field(default_factory=set)
    stale: int = 0
    zombie: int = 0

    def apply(self, key: str, value: Any, headers: Iterable[tuple[str, bytes]]) -> None:
        offset, epoch = marks_in(headers)
        if epoch < self.newest:
            self.zombie += 1
            self.skipped.add(key)
            return
        if offset is not None and offset >= self.committed:
            self.stale += 1
            self.skipped.add(key)
            return
        self.newest = max(self.newest, epoch)
        self.store.load(key, value, self.partition)

    def loaded_locally(self) -> None:
        """The local copy holds the owner mark of the epoch it was written in."""
        mark = self.store.get(owner_key(self.partition))
        if isinstance(mark, int):
            self.newest = max(self.newest, mark)

    def take_over(self, generation: int) -> int:
        """The new owner's epoch; skipped keys compensated, the owner mark queued."""
        epoch = max(generation, self.newest + 1)
        part = self.store.partition(self.partition)
        part.epoch = epoch
        for key in self.skipped:
            self.store.compensate(key, self.partition)
        self.store.set(owner_key(self.partition), epoch, self.partition)
        return epoch


def aiokafka_reader(connection: dict[str, Any]) -> ReaderFactory:
    def make(read_committed: bool) -> ReaderLike:
        consumer: ReaderLike = AIOKafkaConsumer(
            **connection,
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
            isolation_level="read_committed" if read_committed else "read_uncommitted",
            fetch_max_wait_ms=50,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        return consumer

    return make


class Recovery:
    """Restores store partitions (see the module docstring)."""

    def __init__(
        self, reader: ReaderFactory, local: LocalState | None, *, read_committed: bool
    ) -> None:
        self.reader = reader
        self.local = local
        self.read_committed = read_committed

    def drop(self, stores: Iterable[ChangelogStore], partitions: set[int]) -> None:
        """Partitions no longer owned, or to be reloaded: forgotten in memory, local
        copies closed (another worker on this host may open them next)."""
        for store in stores:
            store.drop_partitions(partitions)
            if self.local is not None:
                for partition in partitions:
                    self.local.close(store.name, partition)

    async def restore(
        self, stores: Sequence[ChangelogStore], committed: dict[int, int], generation: int
    ) -> Restored:
        """The store partitions of `committed` (partition -> committed input offset)
        restored; compensations and owner marks queued as the stores' writes."""
        replays = {
            (store.topic, p): PartitionReplay(store, p, c)
            for store in stores
            for p, c in committed.items()
        }
        start_at = self._load_locally(replays)
        result = await self._read(replays, start_at)
        for replay in replays.values():
            replay.take_over(generation)
            result.stale += replay.stale
            result.zombie += replay.zombie
        self._write_locally(result)
        return result

    def _load_locally(self, replays: dict[tuple[str, int], PartitionReplay]) -> dict[Any, int]:
        start_at: dict[tuple[str, int], int] = {}
        if self.local is None or not replays:
            return start_at
        began, loaded = time.monotonic(), 0
        for where, replay in replays.items():
            entries, offset = self.local.partition(replay.store.name, replay.partition).load()
            for key, value in entries:
                replay.store.load(key, value, replay.partition)
                loaded += 1
            replay.loaded_locally()
            start_at[where] = offset
        log.info("local state loaded: %d keys in %.2fs", loaded, time.monotonic() - began)
        return start_at

    def _write_locally(self, result: Restored) -> None:
        if self.local is None:
            return
        for (store, partition), keys in result.touched.items():
            end = result.ends[(store.topic, partition)]
            changes = [(key, store.get(key)) for key in keys]
            self.local.partition(store.name, partition).write(changes, end)

    async def _read(
        self, replays: dict[tuple[str, int], PartitionReplay], start_at: dict[Any, int]
    ) -> Restored:
        result = Restored()
        if not replays:
            return result
        began = time.monotonic()
        partitions = [TopicPartition(topic, p) for topic, p in sorted(replays)]
        consumer = self.reader(self.read_committed)
        await consumer.start()
        try:
            consumer.assign(partitions)
            # tansu reports an end offset at or below the true log end (the base offset of
            # the last batch + 1); zero does mean empty. Each fetch's high watermark is
            # right: read until the position reaches it.
            ends = await consumer.end_offsets(partitions)
            firsts = await consumer.beginning_offsets(partitions)
            remaining = set()
            for tp in partitions:
                where = (tp.topic, tp.partition)
                begin = max(firsts[tp], start_at.get(where, 0))
                result.ends[where] = begin
                if ends[tp] > begin:
                    consumer.seek(tp, begin)
                    remaining.add(tp)
            idle_since = time.monotonic()
            while remaining:
                batches = await consumer.getmany(*remaining, timeout_ms=200, max_records=20_000)
                for tp, records in batches.items():
                    self._apply(replays[(tp.topic, tp.partition)], records, result)
                for tp in list(remaining):
                    end = consumer.last_stable_offset(tp) if self.read_committed else None
                    end = end if end is not None else consumer.highwater(tp)
                    position = await consumer.position(tp)
                    result.ends[(tp.topic, tp.partition)] = position
                    if end is not None and position >= end:
                        remaining.discard(tp)
                if batches:
                    idle_since = time.monotonic()
                elif remaining and time.monotonic() - idle_since > RESTORE_IDLE_S:
                    # processing on a partial state would lose records: fail, be restarted
                    names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(remaining))
                    raise StateRecoveryError(
                        f"changelogs {names} returned nothing for {RESTORE_IDLE_S:.0f}s "
                        "before reaching their end; is the broker overloaded or down?"
                    )
        finally:
            await asyncio.shield(stop_reader(consumer))
        skipped = sum(len(r.skipped) for r in replays.values())
        log.info(
            "state restored: %d changelog records of %d store partition(s) in %.2fs%s",
            result.records,
            len(replays),
            time.monotonic() - began,
            f" ({skipped} keys written by a worker that stopped before its commit or had "
            "lost the partition: corrected)"
            if skipped
            else "",
        )
        return result

    @staticmethod
    def _apply(replay: PartitionReplay, records: list[RecordLike], result: Restored) -> None:
        touched = result.touched.setdefault((replay.store, replay.partition), set())
        for record in records:
            if record.key is None:
                continue
            key = orjson.loads(record.key)
            touched.add(key)
            value = None if record.value is None else orjson.loads(record.value)
            replay.apply(key, value, record.headers or ())
        result.records += len(records)


def first_deliveries(
    store: ChangelogStore,
    records: Sequence[RecordLike],
    join_topic: str | None = None,
    join_stream: str | None = None,
) -> Sequence[RecordLike]:
    """Repartition records minus those forwarded twice.

    A worker that dies after forwarding source records but before committing their source
    offsets leaves them on the repartition topic; whoever takes the source partition over
    forwards them again. Each source partition's records reach a repartition partition in
    source order, so a record whose source offset is not above the highest applied one
    (per repartition partition and source partition, kept in `store`) is such a second
    copy: skipped, or a window would count it twice (issue 19). A join's second stage
    (`join_topic`, re-keyed from `join_stream`) keeps entries of its own."""
    first = []
    highest: dict[str, int] = {}
    for record in records:
        source_partition = source_offset = None
        for name, value in record.headers or ():
            if name == SOURCE_PARTITION:
                source_partition = value
            elif name == SOURCE_OFFSET:
                source_offset = value
        if source_partition is None or source_offset is None:
            first.append(record)  # not written by a re-key stage
            continue
        key = f"{record.partition}:{source_partition.decode()}"
        if join_topic is not None and record.topic == join_topic:
            key = f"{record.partition}:{join_stream}:{source_partition.decode()}"
        offset = int(source_offset)
        done = highest.get(key)
        if done is None:
            done = store.get(key, -1)
        if offset <= done:
            continue
        highest[key] = offset
        first.append(record)
    for key, offset in highest.items():
        store.set(key, offset, int(key.partition(":")[0]))
    return first
