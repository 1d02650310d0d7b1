"""StateStore over a Faust Table, written from batches.

Faust picks a table write's changelog partition from the *current event*, which batch
iteration (`take_events`) does not set ("Cannot modify table key from outside of stream
iteration"). So this store bypasses `Table.__setitem__`: it writes the table's local store
and sends the changelog record itself, to the partition the key's records came from
(the table is co-partitioned with its source, as Faust requires). A step writes each
touched key once per batch, so the changelog gets one record per key per batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import faust
from faust.types import TableT


class FaustTableStore:
    """One step's state: a Faust Table named `<pipeline>.<step>` with a changelog topic."""

    def __init__(self, table: TableT[Any, Any]) -> None:
        self.table = table
        self.name = table.name
        self.partition_of: dict[str, int] = {}  # filled per batch by the agent

    def get(self, key: str, default: Any = None) -> Any:
        return self.table.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.table.data[key] = value
        self.table.send_changelog(self._partition(key), key, value)

    def delete(self, key: str) -> None:
        if key in self.table.data:
            del self.table.data[key]
            self.table.send_changelog(self._partition(key), key, None, value_serializer="raw")

    def keys(self) -> Iterator[str]:
        return iter(list(self.table.data.keys()))

    def __len__(self) -> int:
        return len(self.table.data)

    def _partition(self, key: str) -> int | None:
        # None only for keys no record of this batch carried (a wall-clock flush): the
        # producer's partitioner then hashes the key as the repartition topic did
        return self.partition_of.get(key)


class FaustStateBackend:
    """Creates a table per stateful step, before the app starts (Faust needs them declared)."""

    def __init__(self, app: faust.App, partitions: int) -> None:
        self.app = app
        self.partitions = partitions
        self.stores: dict[str, FaustTableStore] = {}

    def store(self, name: str) -> FaustTableStore:
        if name not in self.stores:
            table = self.app.Table(
                name,
                default=None,
                partitions=self.partitions,
                key_serializer="json",
                value_serializer="json",
                help=f"sluice state of {name}",
            )
            self.stores[name] = FaustTableStore(table)
        return self.stores[name]

    def assign_partitions(self, partition_of: dict[str, int]) -> None:
        for store in self.stores.values():
            store.partition_of = partition_of
