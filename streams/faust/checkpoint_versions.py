"""State changelog records that carry their checkpoint, and the restore that keeps only
committed checkpoints: the Faust host's state is exact after a kill at any point.

Why: a pipeline agent's checkpoint writes the steps' changed keys to their tables'
changelogs, then the input offsets they include to `<pipeline>.__offsets`
(streams.faust.applied_offsets) — writes to different topics, never atomic. A kill
between them left state that included a batch the next owner applied again (measured,
`python -m tests.stress.faust_kill --point after_state --without-dedupe`: windows counted
388 and 364 of 7,258 records twice over 5 kills on tansu and Apache Kafka). So each state
record carries the checkpoint it belongs to — per partition, a sequence number that the
`__offsets` write commits beside the offsets — and the value before it:

    {"\\u0000sluice.checkpoint": 7, "v": <value>, "p": <value before>}
    (no "v": the key was deleted; no "p": it did not exist before)

After every table recovery (before the agent processes a record) each recovered value of
an assigned partition is settled: the value of its checkpoint when that checkpoint is
committed, else the value before it — and such a rolled-back key is written again at the
next checkpoint, under a higher number, so the uncommitted record never outlives the
rollback in the changelog. Checkpoints of one agent are sequential (the next starts after
the last one's `__offsets` write is acknowledged), so at most one is undone per partition.
A deletion is a record without "v" until its checkpoint is committed, then a tombstone
(compaction drops the key). `sluice worker` gets the same exactness from the input
offsets its changelog records carry (streams.runtime.recovery).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import orjson

from streams.core.jsonl import dumps

CHECKPOINT = "\x00sluice.checkpoint"
_SEQUENCE = "\x00checkpoint:"  # the `__offsets` key of a partition's committed checkpoint
_ABSENT = object()


def sequence_key(partition: int) -> str:
    return f"{_SEQUENCE}{partition}"


class CheckpointVersions:
    """One state store's committed values (serialized) and this checkpoint's changes."""

    __slots__ = ("committed_values", "staged", "tombstones")

    def __init__(self) -> None:
        self.committed_values: dict[str, bytes] = {}  # key -> JSON of its committed value
        self.staged: dict[str, tuple[bytes | None, int]] = {}  # this checkpoint's values
        self.tombstones: dict[str, int] = {}  # committed deletions not yet tombstoned

    def records(
        self, writes: list[tuple[str, Any, int]], checkpoints: dict[int, int]
    ) -> list[tuple[bytes, bytes | None, int]]:
        """This checkpoint's changelog records for `writes` (key, value or None for a
        deletion, partition): each with its partition's checkpoint number and the value
        before it; and tombstones for deletions committed earlier."""
        records: list[tuple[bytes, bytes | None, int]] = []
        staged: dict[str, tuple[bytes | None, int]] = {}
        for key, value, partition in writes:
            new = None if value is None else dumps(value)
            record: dict[str, Any] = {CHECKPOINT: checkpoints[partition]}
            if new is not None:
                record["v"] = orjson.Fragment(new)
            before = self.committed_values.get(key)
            if before is not None:
                record["p"] = orjson.Fragment(before)
            records.append((dumps(key), orjson.dumps(record), partition))
            staged[key] = (new, partition)
            self.tombstones.pop(key, None)
        for key, partition in self.tombstones.items():
            records.append((dumps(key), None, partition))
        self.tombstones = {}
        self.staged = staged
        return records

    def commit(self) -> None:
        """This checkpoint's `__offsets` write is acknowledged: its values are committed."""
        for key, (new, partition) in self.staged.items():
            if new is None:
                self.committed_values.pop(key, None)
                self.tombstones[key] = partition
            else:
                self.committed_values[key] = new
        self.staged = {}

    def settle(
        self,
        data: dict[Any, Any],
        partition_of: dict[Any, int],
        active: set[int],
        committed: Callable[[int], int],
        changed: Collection[str] = (),
    ) -> tuple[list[tuple[str, int]], dict[int, int]]:
        """After a recovery: every recovered value of an `active` partition in `data` (the
        table's memory) becomes its last committed one. Keys `changed` since the last
        checkpoint (none, when a checkpoint preceded the rebalance) keep their committed
        values. Returns the keys rolled back (with their partitions: the caller writes
        them again) and, per partition, the highest checkpoint number seen (the next one
        must be above it)."""
        before = self.committed_values
        self.committed_values = {k: v for k, v in before.items() if k in changed}
        self.staged = {}
        self.tombstones = {}
        rolled: list[tuple[str, int]] = []
        seen: dict[int, int] = {}
        for key in list(data):
            partition = partition_of.get(key)
            if partition not in active or key in changed:
                continue  # a standby's or a revoked partition's: settled when assigned
            value = data[key]
            if isinstance(value, dict) and CHECKPOINT in value:
                number = int(value[CHECKPOINT])
                seen[partition] = max(seen.get(partition, 0), number)
                if number > committed(partition):
                    kept = value.get("p", _ABSENT)
                    rolled.append((key, partition))
                else:
                    kept = value.get("v", _ABSENT)
                if kept is _ABSENT:
                    del data[key]
                    continue
                data[key] = value = kept
            self.committed_values[key] = dumps(value)
        return rolled, seen
