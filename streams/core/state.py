"""State behind one small interface.

A stateful step owns one `StateStore`: a mapping from a key (the step's key, as text) to a
JSON-serializable value. In a worker the store is `<pipeline>.<step>`, kept in memory; its
changelog topic is the durable copy (streams.runtime.changelog), and `store: rocksdb://`
adds a local copy so that a restart reads only the changelog written since. In replay and
unit tests it is a dict. Steps read a key once per batch and write it back once, so the
store sees one write per touched key per batch, whatever the number of records.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

# The names state lives under, and the keys a step keeps for itself. The core (building
# steps, replay) and the runtime (stores, changelog topics, restores) both use these:
# one definition, not matching strings.
#
# Every name maps back to exactly one owner. A pipeline name may hold '.', '-' and '_'; a
# step name and a runtime store's `what` hold no '.', and only the runtime's start with
# `__`. So the last '.' of a store name splits it into (pipeline, step) — pipeline `a`
# never owns `a.b.window`, the store of step `window` of pipeline `a.b` (store_owner).
# A worker's topics join the app id (no '-' allowed in it, models.settings) to these
# names with '-': `<app_id>-<store>-changelog`, `<app_id>-<pipeline>-repartition`.

BOOKKEEPING = "\x00"  # a key starting with it is a step's own (a watermark), no record's


def step_store_name(pipeline: str, step: str) -> str:
    """A stateful step's store; a worker's changelog topic is `<app_id>-<this>-changelog`."""
    return f"{pipeline}.{step}"


def lookup_store_name(pipeline: str, table: str) -> str:
    """A lookup table's rows (for enrich), kept by `StateBackend.lookup` (never a topic;
    table names hold no '.')."""
    return f"{pipeline}.tables.{table}"


def runtime_store_name(pipeline: str, what: str) -> str:
    """State the runtime keeps for a pipeline besides its steps' (step names cannot start
    with `__`; `what` holds no '.')."""
    return f"{pipeline}.__{what}"


def store_owner(store: str) -> str:
    """The pipeline a store (`step_store_name`, `runtime_store_name`) belongs to."""
    return store.rpartition(".")[0]


def bookkeeping_key(what: str, partition: int) -> str:
    """A step's own key about one partition (`watermark`), kept in that partition."""
    return f"{BOOKKEEPING}{what}:{partition}"


def is_bookkeeping(key: str) -> bool:
    return key.startswith(BOOKKEEPING)


def bookkeeping_partition(key: str) -> int | None:
    """The partition a bookkeeping key belongs to; None for a record's key."""
    if not key.startswith(BOOKKEEPING):
        return None
    tail = key.rpartition(":")[2]
    return int(tail) if tail.isdigit() else None


@runtime_checkable
class StateStore(Protocol):
    """Per-step keyed state."""

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored under `key`, or `default` when there is none."""

    def set(self, key: str, value: Any, partition: int | None = None) -> None:
        """Store `value` (JSON-serializable) under `key`, replacing any earlier value.
        `partition`: the source partition of the records behind it (a worker's table
        keeps the key in that partition of its changelog)."""

    def delete(self, key: str, partition: int | None = None) -> None:
        """Forget `key`; no error when it is absent."""

    def keys(self) -> Iterator[str]:
        """The keys this store holds (in a worker: those of its assigned partitions)."""

    def __len__(self) -> int:
        """How many keys are stored."""


class StateBackend(Protocol):
    """Hands each stateful step its store, and enrich its lookup table."""

    def store(self, name: str) -> StateStore:
        """The store named `name` (`step_store_name`), created on first use."""

    def lookup(self, name: str) -> StateStore:
        """The lookup table named `name` (`lookup_store_name`): in a worker every worker
        holds all of it, fed from its topic, never written to a changelog."""


class DictStateStore:
    """A StateStore in a plain dict: replay and unit tests."""

    __slots__ = ("_data", "name")

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def set(self, key: str, value: Any, partition: int | None = None) -> None:
        self._data[key] = value

    def delete(self, key: str, partition: int | None = None) -> None:
        self._data.pop(key, None)

    def keys(self) -> Iterator[str]:
        return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"DictStateStore({self.name!r}, {len(self._data)} keys)"


class MemoryStateBackend:
    """Dict stores by name."""

    def __init__(self) -> None:
        self.stores: dict[str, DictStateStore] = {}
        self.lookups: dict[str, DictStateStore] = {}

    def store(self, name: str) -> StateStore:
        if name not in self.stores:
            self.stores[name] = DictStateStore(name)
        return self.stores[name]

    def lookup(self, name: str) -> StateStore:
        if name not in self.lookups:
            self.lookups[name] = DictStateStore(name)
        return self.lookups[name]
