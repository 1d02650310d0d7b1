"""State behind one small interface.

A stateful step owns one `StateStore`: a mapping from a key (the step's key, as text) to a
JSON-serializable value. In a worker the store is `<pipeline>.<step>`, kept in memory
(and RocksDB with `store: rocksdb://`) with a changelog topic
(streams.runtime.changelog); in replay and unit tests it is a dict. Steps
read a key once per batch and write it back once, so the store sees one write per touched
key per batch, whatever the number of records.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable


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
    """Hands each stateful step its store."""

    def store(self, name: str) -> StateStore:
        """The store named `name` (`<pipeline>.<step>`), created on first use."""


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

    def store(self, name: str) -> StateStore:
        if name not in self.stores:
            self.stores[name] = DictStateStore(name)
        return self.stores[name]
