"""State in a worker: one store per stateful step, backed by a compacted changelog topic.

A store named `<pipeline>.<step>` keeps its values in memory and writes every change to
the topic `<app_id>-<pipeline>.<step>-changelog`, into the partition of the stage topic
partition whose records caused it (the store is co-partitioned with its input). Writes
are collected between checkpoints and sent once per changed key (`take_writes`).

Exactness across crashes (at-least-once). Every changelog record carries, in the header
`sluice.offset`, the last input offset of its partition that the state includes; the
checkpoint sends the changelog writes *before* it commits the consumer offsets. So on
restore, with C the group's committed offset of the partition:
- a record with offset header < C belongs to a finished checkpoint: it is applied;
- a record with header >= C was written by a worker that died before its commit: it is
  *stale* — not applied, and the restoring worker writes the key's restored value again
  (a compensating write) before it processes anything. A later restore then finds the
  stale record followed by its correction, whatever the commits did in between, and
  compaction keeps the correction.
(A scheme of "applied" markers without the compensation, used before, let such stale
writes count once a later commit passed their offset: records applied twice to a window,
issue 19.) With exactly-once the changelog is written in the same transaction as the
offsets; a `read_committed` restore never sees an aborted write, and the same rule holds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streams.errors import SluiceError
from streams.state import (
    DictStateStore,
    StateStore,
    bookkeeping_partition,
    lookup_store_name,
    store_owner,
)

log = logging.getLogger("sluice.state")

OFFSET_HEADER = "sluice.offset"
# store: rocksdb:// keeps each store's partitions here, under the working directory
LOCAL_STATE_DIR = Path(".sluice-data")
RESTORE_IDLE_S = 30.0
_DELETED = object()


class StateRecoveryError(SluiceError):
    """A store could not be restored from its changelog."""


def changelog_topic(app_id: str, store: str) -> str:
    return f"{app_id}-{store}-changelog"


@dataclass(slots=True)
class Write:
    """One changelog record: `value` None deletes the key."""

    store: ChangelogStore
    key: str
    value: Any
    partition: int


class ChangelogStore:
    """A StateStore for one step in a worker (see the module docstring)."""

    __slots__ = ("_data", "_partition_of", "_pending", "name", "topic")

    def __init__(self, name: str, topic: str) -> None:
        self.name = name
        self.topic = topic
        self._data: dict[str, Any] = {}
        self._partition_of: dict[str, int] = {}
        self._pending: dict[str, Any] = {}

    # --- StateStore ----------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def set(self, key: str, value: Any, partition: int | None = None) -> None:
        self._data[key] = value
        self._pending[key] = value
        if partition is not None:
            self._partition_of[key] = partition
        elif key not in self._partition_of:
            self._partition_of[key] = _partition_in_name(key)

    def delete(self, key: str, partition: int | None = None) -> None:
        self._data.pop(key, None)
        self._pending[key] = _DELETED
        if partition is not None:
            self._partition_of[key] = partition
        elif key not in self._partition_of:
            self._partition_of[key] = _partition_in_name(key)

    def keys(self) -> Iterator[str]:
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    # --- the worker's side ------------------------------------------------------------

    def take_writes(self) -> list[Write]:
        """The changes since the last call, one per key, to send to the changelog."""
        writes = [
            Write(self, key, None if value is _DELETED else value, self._partition_of[key])
            for key, value in self._pending.items()
        ]
        self._pending.clear()
        for write in writes:
            if write.value is None:
                self._partition_of.pop(write.key, None)
        return writes

    def has_writes(self) -> bool:
        return bool(self._pending)

    def drop_partitions(self, partitions: AbstractSet[int]) -> None:
        """Forget the keys of partitions this worker no longer owns."""
        if not partitions:
            return
        gone = [k for k, p in self._partition_of.items() if p in partitions]
        for key in gone:
            self._data.pop(key, None)
            self._partition_of.pop(key, None)
            self._pending.pop(key, None)

    def load(self, key: str, value: Any, partition: int) -> None:
        """A restored value (not a change: nothing to write back)."""
        if value is None:
            self._data.pop(key, None)
            self._partition_of.pop(key, None)
        else:
            self._data[key] = value
            self._partition_of[key] = partition

    def compensate(self, key: str, partition: int) -> None:
        """Write the key's current (restored) value again: it supersedes a stale record."""
        self._partition_of.setdefault(key, partition)
        self._pending[key] = self._data.get(key, _DELETED)

    def __repr__(self) -> str:
        return f"ChangelogStore({self.name!r}, {len(self._data)} keys)"


def _partition_in_name(key: str) -> int:
    # a step's bookkeeping keys ("\x00watermark:3") name the partition they belong to
    partition = bookkeeping_partition(key)
    return 0 if partition is None else partition


def encode_key(key: str) -> bytes:
    return orjson.dumps(key)


def encode_value(value: Any) -> bytes | None:
    return None if value is None else orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def offset_header(offset: int) -> list[tuple[str, bytes]]:
    return [(OFFSET_HEADER, str(offset).encode())]


def _offset_in(headers: Iterable[tuple[str, bytes]]) -> int | None:
    for name, value in headers:
        if name == OFFSET_HEADER:
            try:
                return int(value)
            except ValueError:
                return None
    return None


@dataclass(slots=True)
class Restored:
    """What a restore read: records, where each changelog partition now ends (the next
    offset), and the keys it applied or corrected per store partition."""

    records: int = 0
    ends: dict[tuple[str, int], int] = field(default_factory=dict)
    touched: dict[tuple[ChangelogStore, int], set[str]] = field(default_factory=dict)


async def restore(
    connection: dict[str, Any],
    stores: list[ChangelogStore],
    committed: dict[int, int],
    *,
    read_committed: bool,
    start_at: dict[tuple[str, int], int] | None = None,
) -> Restored:
    """Read the changelog partitions of `committed` (partition -> the group's committed
    input offset) of every store to their end into the stores — from `start_at` (topic,
    partition) -> offset where a local copy already holds what comes before; stale
    records (see the module docstring) are skipped and their keys queued for
    compensating writes."""
    result = Restored()
    if not stores or not committed:
        return result
    began = time.monotonic()
    by_topic = {store.topic: store for store in stores}
    partitions = [TopicPartition(topic, p) for topic in by_topic for p in sorted(committed)]
    consumer = AIOKafkaConsumer(
        **connection,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed" if read_committed else "read_uncommitted",
        fetch_max_wait_ms=50,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    stale: dict[tuple[ChangelogStore, str], int] = {}
    try:
        consumer.assign(partitions)
        # tansu reports an end offset at or below the true log end (the base offset of the
        # last batch + 1); zero does mean empty. Each fetch's high watermark is right:
        # read until the position reaches it.
        ends = await consumer.end_offsets(partitions)
        firsts = await consumer.beginning_offsets(partitions)
        remaining = set()
        for tp in partitions:
            begin = max(firsts[tp], (start_at or {}).get((tp.topic, tp.partition), 0))
            result.ends[(tp.topic, tp.partition)] = begin
            if ends[tp] > begin:
                consumer.seek(tp, begin)
                remaining.add(tp)
        idle_since = time.monotonic()
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=200, max_records=20_000)
            for tp, records in batches.items():
                store = by_topic[tp.topic]
                limit = committed[tp.partition]
                touched = result.touched.setdefault((store, tp.partition), set())
                for record in records:
                    if record.key is None:
                        continue
                    key = orjson.loads(record.key)
                    touched.add(key)
                    mark = _offset_in(record.headers)
                    if mark is not None and mark >= limit:
                        stale[(store, key)] = tp.partition
                        continue
                    value = None if record.value is None else orjson.loads(record.value)
                    store.load(key, value, tp.partition)
                result.records += len(records)
            for tp in list(remaining):
                end = consumer.last_stable_offset(tp) if read_committed else None
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
                    f"changelogs {names} returned nothing for {RESTORE_IDLE_S:.0f}s before "
                    "reaching their end; is the broker overloaded or down?"
                )
    finally:
        await asyncio.shield(consumer.stop())
    for (store, key), partition in stale.items():
        store.compensate(key, partition)
    log.info(
        "state restored: %d changelog records of %d store(s), partitions %s, in %.2fs%s",
        result.records,
        len(stores),
        sorted(committed),
        time.monotonic() - began,
        f" ({len(stale)} keys written by a worker that stopped before its commit: corrected)"
        if stale
        else "",
    )
    return result


class WorkerState:
    """The StateBackend of a worker's pipelines: a changelog store per stateful step, a
    plain dict per lookup table (every worker holds all of a lookup table's rows)."""

    def __init__(self, app_id: str) -> None:
        self.app_id = app_id
        self.stores: dict[str, ChangelogStore] = {}
        self.lookups: dict[str, DictStateStore] = {}

    def store(self, name: str) -> StateStore:
        if name not in self.stores:
            self.stores[name] = ChangelogStore(name, changelog_topic(self.app_id, name))
        return self.stores[name]

    def lookup(self, name: str) -> StateStore:
        return self.lookups.setdefault(name, DictStateStore(name))

    def stores_of(self, pipeline: str) -> list[ChangelogStore]:
        return [s for n, s in self.stores.items() if store_owner(n) == pipeline]

    def lookups_of(self, pipeline: str, tables: Iterable[str]) -> dict[str, DictStateStore]:
        """The lookup stores of `pipeline`'s tables, by table name."""
        found = {}
        for table in tables:
            store = self.lookup(lookup_store_name(pipeline, table))
            assert isinstance(store, DictStateStore)
            found[table] = store
        return found
