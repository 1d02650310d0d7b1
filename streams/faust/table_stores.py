"""State in Faust tables: each stateful step's `StateStore` is a Faust `Table` named
`<pipeline>.<step>` (changelog topic `<app id>-<pipeline>.<step>-changelog`, recovery
Faust's).

The steps read and write a table through `FaustTableStore`, never through Faust's
`table[key] = value`: that takes the changelog partition from `current_event()`, which is
unset inside a batch (`stream.take()`/`noack_take()` hand over a list; measured: "Cannot
modify table key from outside of stream iteration"). Setting the current event per record
(`_set_current_event`, a private call) cost 3,800 records/s. The store knows the partition
of each write (the steps pass it), so it writes the store directly; the agent's checkpoint
sends the changelog records, once per changed key per checkpoint, each carrying the
checkpoint it belongs to (streams.faust.checkpoint_versions).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from streams.core.state import DictStateStore, StateStore, bookkeeping_partition

from .checkpoint_versions import CheckpointVersions

_DELETED = object()


class FaustTableStore:
    """A StateStore over one Faust `Table` (see the module docstring).

    `active`: the partitions this worker owns now (a callable: the assignment changes). A
    Faust memory store also keeps the keys of partitions read as standby replicas or
    revoked by a rebalance; `keys()` leaves them out, so a window step rebuilding its index
    never closes another worker's windows."""

    __slots__ = ("_active", "_partition_of", "_pending", "name", "table", "versions")

    def __init__(self, table: Any, active: Any) -> None:
        self.table = table
        self.name: str = table.name
        self._active = active
        self._pending: dict[str, tuple[Any, int]] = {}
        # key -> partition of the keys written here; recovered keys' partitions are the
        # memory store's own `_key_partition`
        self._partition_of: dict[str, int] = {}
        self.versions = CheckpointVersions()

    @property
    def _store(self) -> Any:
        return self.table.data

    # --- StateStore ----------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        return self._store.data.get(key, default)

    def set(self, key: str, value: Any, partition: int | None = None) -> None:
        where = self._partition(key, partition)
        self._store.data[key] = value
        self._pending[key] = (value, where)

    def delete(self, key: str, partition: int | None = None) -> None:
        where = self._partition(key, partition)
        self._store.data.pop(key, None)
        self._pending[key] = (_DELETED, where)

    def keys(self) -> Iterator[str]:
        active = self._active()
        partitions = self._key_partitions()
        return iter([k for k in list(self._store.data) if partitions.get(k) in active])

    def __len__(self) -> int:
        return sum(1 for _ in self.keys())

    # --- the agent's side -----------------------------------------------------------------

    def _key_partitions(self) -> dict[Any, int]:
        # Patch: a Faust memory store records the partition of recovered keys only
        # (`Store._key_partition`, filled by apply_changelog_batch) and forgets keys of
        # revoked partitions by it after recovery; keys written by the agent are recorded
        # here too (see `_partition`), so they are forgotten alike.
        found: dict[Any, int] = getattr(self._store, "_key_partition", {})
        return found

    def _partition(self, key: str, partition: int | None) -> int:
        if partition is None:
            partition = self._partition_of.get(key)
            if partition is None:
                partition = self._key_partitions().get(key)
            if partition is None:
                # a step's bookkeeping key ("\x00watermark:3") names its partition
                partition = bookkeeping_partition(key) or 0
        self._partition_of[key] = partition
        self._key_partitions()[key] = partition
        return partition

    def take_writes(self) -> list[tuple[str, Any, int]]:
        """(key, value or None for a deletion, partition) of every key changed since the
        last call, once each."""
        writes = [
            (key, None if value is _DELETED else value, partition)
            for key, (value, partition) in self._pending.items()
        ]
        self._pending.clear()
        return writes

    def settle(self, committed: Any) -> tuple[int, dict[int, int]]:
        """After a recovery: recovered values of assigned partitions become their last
        committed ones (streams.faust.checkpoint_versions); keys rolled back are written
        again at the next checkpoint. Returns how many were rolled back and, per
        partition, the highest checkpoint number seen."""
        data = self._store.data
        changed = set(self._pending)  # none after a checkpoint at the revocation
        rolled, seen = self.versions.settle(
            data, self._key_partitions(), self._active(), committed, changed
        )
        for key, partition in rolled:
            self._pending[key] = (data.get(key, _DELETED), partition)
        return len(rolled), seen

    def __repr__(self) -> str:
        return f"FaustTableStore({self.name!r})"


class FaustState:
    """The StateBackend of one pipeline in a Faust app: a Faust `Table` per stateful step
    (created on first use, before the app starts), a plain dict per lookup table (fed
    from its topic by the agent's host; every worker holds all of it)."""

    def __init__(self, app: Any, partitions: int, active: Any) -> None:
        self.app = app
        self.partitions = partitions
        self.active = active
        self.stores: dict[str, FaustTableStore] = {}
        self.lookups: dict[str, DictStateStore] = {}

    def store(self, name: str) -> StateStore:
        found = self.stores.get(name)
        if found is None:
            table = self.app.Table(
                name,
                partitions=self.partitions,
                # no key or value type: keys and values are JSON (Faust's serializer for
                # tables without a type), as in sluice's own changelogs
                # sluice's stores are in memory: a restart reads the changelog (compacted)
                store="memory://",
                help=f"sluice state {name}",
            )
            found = self.stores[name] = FaustTableStore(table, self.active)
        return found

    def lookup(self, name: str) -> StateStore:
        return self.lookups.setdefault(name, DictStateStore(name))

    def resize(self, partitions: int) -> None:
        """Every table and its changelog topic get `partitions` (before Faust starts them:
        streams.faust.host fits the state to its input topic)."""
        self.partitions = partitions
        for table in self.tables():
            table.partitions = partitions
            table.changelog_topic.partitions = partitions

    def changelog_topics(self) -> list[str]:
        return [table.changelog_topic.get_topic_name() for table in self.tables()]

    def tables(self) -> Iterable[Any]:
        return [store.table for store in self.stores.values()]
