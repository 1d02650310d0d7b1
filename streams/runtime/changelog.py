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

Zombies (issue 22). Every record also carries its writer's owner epoch
(`sluice.generation`): at an assignment the new owner of a store partition takes
max(group generation, the largest epoch its restore applied + 1) and writes an owner mark
(`owner_key`) with it before it processes anything. A partition has one owner per
generation, so epochs only grow along a changelog partition — also when the group was
deleted and its generations start again — and a record whose epoch is below one already
applied in its changelog partition was written by a member that had lost the partition
(a paused worker waking up): it is skipped and compensated like a stale record. Such a
zombie write can land after its successor's commits, where the offset rule alone would
apply it (a resurrected window).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from streams.core.errors import SluiceError
from streams.core.state import (
    DictStateStore,
    StateBackend,
    StateStore,
    bookkeeping_key,
    bookkeeping_partition,
    lookup_store_name,
    store_owner,
)

log = logging.getLogger("sluice.state")

OFFSET_HEADER = "sluice.offset"
GENERATION_HEADER = "sluice.generation"
OWNER = "owner"
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
    epoch: int = -1  # -1: the writer's group generation


class StorePartition:
    """One partition of a store: its keys' values and the changes not yet written to the
    changelog. Dropping or restoring a partition touches only its own keys."""

    __slots__ = ("data", "epoch", "number", "pending")

    def __init__(self, number: int) -> None:
        self.number = number
        self.data: dict[str, Any] = {}
        self.pending: dict[str, Any] = {}  # key -> value, or _DELETED
        # the owner epoch its writes carry (set by a restore; -1: the group generation)
        self.epoch = -1

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.pending[key] = value

    def delete(self, key: str) -> None:
        self.data.pop(key, None)
        self.pending[key] = _DELETED

    def load(self, key: str, value: Any) -> None:
        """A restored value (not a change: nothing to write back); None deletes."""
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value

    def compensate(self, key: str) -> None:
        """Write the key's current (restored) value again: it supersedes a stale record."""
        self.pending[key] = self.data.get(key, _DELETED)

    def take_writes(self) -> list[tuple[str, Any]]:
        """(key, value or None) per key changed since the last call."""
        writes = [(k, None if v is _DELETED else v) for k, v in self.pending.items()]
        self.pending.clear()
        return writes


class ChangelogStore:
    """A StateStore for one step in a worker (see the module docstring): a `StorePartition`
    per partition, and an index of which partition holds a key (steps read by key)."""

    __slots__ = ("_where", "name", "partitions", "topic")

    def __init__(self, name: str, topic: str) -> None:
        self.name = name
        self.topic = topic
        self.partitions: dict[int, StorePartition] = {}
        self._where: dict[str, StorePartition] = {}

    def partition(self, number: int) -> StorePartition:
        found = self.partitions.get(number)
        if found is None:
            found = self.partitions[number] = StorePartition(number)
        return found

    def _home(self, key: str, partition: int | None) -> StorePartition:
        """The partition a change of `key` belongs to: the one given, else where the key
        is, else the one its name says (bookkeeping keys), else 0."""
        if partition is not None:
            home = self.partition(partition)
            before = self._where.get(key)
            if before is not None and before is not home:
                before.data.pop(key, None)  # a key lives in one partition
            return home
        found = self._where.get(key)
        return found if found is not None else self.partition(_partition_in_name(key))

    # --- StateStore ----------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        home = self._where.get(key)
        return default if home is None else home.data.get(key, default)

    def set(self, key: str, value: Any, partition: int | None = None) -> None:
        home = self._home(key, partition)
        home.set(key, value)
        self._where[key] = home

    def delete(self, key: str, partition: int | None = None) -> None:
        home = self._home(key, partition)
        home.delete(key)
        self._where.pop(key, None)

    def keys(self) -> Iterator[str]:
        return iter(list(self._where))

    def __len__(self) -> int:
        return len(self._where)

    # --- the worker's side ------------------------------------------------------------

    def take_writes(self) -> list[Write]:
        """The changes since the last call, one per key, to send to the changelog."""
        return [
            Write(self, key, value, part.number, part.epoch)
            for part in self.partitions.values()
            for key, value in part.take_writes()
        ]

    def has_writes(self) -> bool:
        return any(part.pending for part in self.partitions.values())

    def drop_partitions(self, partitions: AbstractSet[int]) -> None:
        """Forget the partitions this worker no longer owns (or must restore)."""
        for number in partitions:
            part = self.partitions.pop(number, None)
            if part is not None:
                for key in part.data:
                    self._where.pop(key, None)

    def load(self, key: str, value: Any, partition: int) -> None:
        """A restored value (not a change: nothing to write back)."""
        home = self.partition(partition)
        home.load(key, value)
        if value is None:
            self._where.pop(key, None)
        else:
            self._where[key] = home

    def compensate(self, key: str, partition: int) -> None:
        """Write the key's current (restored) value again: it supersedes a stale record."""
        self.partition(partition).compensate(key)

    def __repr__(self) -> str:
        return f"ChangelogStore({self.name!r}, {len(self)} keys)"


def _partition_in_name(key: str) -> int:
    # a step's bookkeeping keys ("\x00watermark:3") name the partition they belong to
    partition = bookkeeping_partition(key)
    return 0 if partition is None else partition


def encode_key(key: str) -> bytes:
    return orjson.dumps(key)


def encode_value(value: Any) -> bytes | None:
    return None if value is None else orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def changelog_headers(offset: int, epoch: int) -> list[tuple[str, bytes]]:
    """The input offset the state includes, and the writer's owner epoch."""
    return [(OFFSET_HEADER, str(offset).encode()), (GENERATION_HEADER, str(epoch).encode())]


def marks_in(headers: Iterable[tuple[str, bytes]]) -> tuple[int | None, int]:
    """(offset header or None, epoch header or -1: written before epochs were)."""
    offset: int | None = None
    generation = -1
    for name, value in headers:
        if name == OFFSET_HEADER:
            offset = _int_or(value, None)
        elif name == GENERATION_HEADER:
            generation = _int_or(value, -1)
    return offset, generation


def _int_or(value: bytes, default: int | None) -> Any:
    try:
        return int(value)
    except ValueError:
        return default


def owner_key(partition: int) -> str:
    """A bookkeeping key each restored store partition gets, valued and written with the
    new owner's epoch: whatever an older epoch writes after it is a zombie's."""
    return bookkeeping_key(OWNER, partition)


class WorkerState:
    """The StateBackend of a worker's pipelines: a changelog store per stateful step, a
    plain dict per lookup table (every worker holds all of a lookup table's rows).

    A store belongs to the pipeline whose `for_pipeline` view created it: ownership is
    recorded when the store is made, never guessed from its name (pipeline names may hold
    dots, so pipeline `a` must not take the stores of `a.b` by prefix)."""

    def __init__(self, app_id: str) -> None:
        self.app_id = app_id
        self.stores: dict[str, ChangelogStore] = {}
        self.lookups: dict[str, DictStateStore] = {}
        self.claimed: dict[str, str] = {}  # store name -> the pipeline whose view made it

    def store(self, name: str) -> StateStore:
        return self._store(name)

    def _store(self, name: str) -> ChangelogStore:
        if name not in self.stores:
            self.stores[name] = ChangelogStore(name, changelog_topic(self.app_id, name))
        return self.stores[name]

    def lookup(self, name: str) -> StateStore:
        return self.lookups.setdefault(name, DictStateStore(name))

    def for_pipeline(self, pipeline: str) -> PipelineState:
        return PipelineState(self, pipeline)

    def owned_store(self, pipeline: str, name: str) -> ChangelogStore:
        store = self._store(name)
        self.claimed.setdefault(name, pipeline)
        return store

    def stores_of(self, pipeline: str) -> list[ChangelogStore]:
        """The stores `pipeline`'s view made, and those made without a view whose name
        says `pipeline` (streams.core.state.store_owner), in the order they were made."""
        return [
            store
            for name, store in self.stores.items()
            if self.claimed.get(name, store_owner(name)) == pipeline
        ]

    def lookups_of(self, pipeline: str, tables: Iterable[str]) -> dict[str, DictStateStore]:
        """The lookup stores of `pipeline`'s tables, by table name."""
        found = {}
        for table in tables:
            store = self.lookup(lookup_store_name(pipeline, table))
            assert isinstance(store, DictStateStore)
            found[table] = store
        return found


class PipelineState(StateBackend):
    """One pipeline's view of the WorkerState: the stores it makes are its own."""

    def __init__(self, state: WorkerState, pipeline: str) -> None:
        self.state = state
        self.pipeline = pipeline

    def store(self, name: str) -> ChangelogStore:
        return self.state.owned_store(self.pipeline, name)

    def lookup(self, name: str) -> StateStore:
        return self.state.lookup(name)
