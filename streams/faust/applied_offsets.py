"""A pipeline agent's checkpoint, and the input offsets its results and state include.

    outputs and state changes (each record carrying its partition's next checkpoint
    number) acknowledged ─► the checkpoint numbers and the input offsets they include
    written to `<pipeline>.__offsets` (acknowledged) ─► the held events acked ─► Faust
    commits them

Every pipeline, stateless too, keeps per input partition (and, on a repartition topic, per
source partition, whose records arrive in source order) the last input offset it applied;
a record at or below it is skipped. Why every pipeline: a topic read by several agents is
committed at the slowest one's acked offset (Faust acks a message once every agent has),
and at a stop Faust clears the agents' queues before they can catch up, so the next worker
reads again what the faster agents had sent results for (measured: payments-clean's and
payments_eur's outputs and dead letters twice after a SIGTERM, on both brokers). With the
offsets table a SIGTERM re-sends nothing; a kill between a checkpoint's outputs and its
offsets write re-sends that checkpoint's outputs (at-least-once), and the state it wrote is
rolled back at the next recovery, so the records applied again are applied once
(streams.faust.checkpoint_versions; docs/faust.md, the kill rounds).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from streams.core.jsonl import dumps
from streams.runtime import faults
from streams.runtime.output import Output

from .checkpoint_versions import sequence_key
from .messages import Batches, source_position
from .table_stores import FaustState, FaustTableStore


class AgentCheckpoint:
    """What one pipeline agent holds between checkpoints, and the checkpoint itself."""

    def __init__(
        self, name: str, state: FaustState, offsets: FaustTableStore, *, rekeyed: bool
    ) -> None:
        self.name = name  # the pipeline's: names its fault point
        self.state = state
        self.offsets = offsets
        self.rekeyed = rekeyed
        # batches processed and sent, acked at the next checkpoint; the input offsets
        # they applied (per stage partition, or repartition and source partition)
        self.held: list[tuple[Batches, list[Any]]] = []
        self.applied: dict[str, tuple[int, int]] = {}
        self.last = time.monotonic()
        self.seen: dict[int, int] = {}  # per partition, the highest checkpoint recovered

    @property
    def pending(self) -> bool:
        return bool(self.held or self.applied)

    def hold(self, batches: Batches, events: list[Any]) -> None:
        self.held.append((batches, events))

    def first_deliveries(self, messages: list[Any]) -> list[Any]:
        """The messages whose effects are not sent yet (see the module docstring); their
        offsets are written at the next checkpoint."""
        store = self.offsets
        first = []
        applied = self.applied
        for message in messages:
            position = source_position(message) if self.rekeyed else None
            if position is not None:
                key, offset = f"{message.partition}:{position[0]}", position[1]
            else:
                key, offset = str(message.partition), message.offset
            done = applied.get(key)
            last = done[0] if done is not None else store.get(key, -1)
            if offset <= last:
                continue
            applied[key] = (offset, message.partition)
            first.append(message)
        return first

    def settle(self) -> int:
        """After a recovery, before a record is processed: the state stores' recovered
        values become those of their partitions' last committed checkpoints
        (streams.faust.checkpoint_versions). Returns the keys rolled back."""
        offsets = self.offsets

        def committed(partition: int) -> int:
            return int(offsets.get(sequence_key(partition), 0))

        rolled = 0
        self.seen = {}
        for store in self.state_stores():
            keys, seen = store.settle(committed)
            rolled += keys
            for partition, number in seen.items():
                self.seen[partition] = max(self.seen.get(partition, 0), number)
        return rolled

    def state_stores(self) -> list[FaustTableStore]:
        return [s for s in self.state.stores.values() if s is not self.offsets]

    async def run(self, output: Output, persist: Callable[[], None]) -> None:
        """Outputs and state changes acknowledged (each state record carrying its
        partition's next checkpoint number), then the checkpoint numbers and the input
        offsets they include, then the held events acked."""
        self.last = time.monotonic()
        persist()
        stores = self.state_stores()
        writes = {store.name: store.take_writes() for store in stores}
        applied, self.applied = self.applied, {}
        touched = {partition for w in writes.values() for _, _, partition in w}
        touched.update(partition for _, partition in applied.values())
        offsets = self.offsets
        numbers = {
            p: max(int(offsets.get(sequence_key(p), 0)), self.seen.get(p, 0)) + 1 for p in touched
        }
        for store in stores:
            topic = store.table.changelog_topic.get_topic_name()
            for raw_key, raw, partition in store.versions.records(writes[store.name], numbers):
                output.add(topic, raw_key, raw, [], partition)
        await output.drain()
        faults.reached("faust.checkpoint.after_state", self.name)
        if numbers:
            # the checkpoint numbers first: each partition's records go in order, so where
            # the offsets landed its number did too (a state never rolled back under
            # offsets that skip its records)
            for partition, number in numbers.items():
                offsets.set(sequence_key(partition), number, partition)
            for key, (offset, partition) in applied.items():
                offsets.set(key, offset, partition)
            queue_writes(offsets, output)
            await output.drain()
            faults.reached("faust.checkpoint.after_offsets", self.name)
        for store in stores:
            store.versions.commit()
        held, self.held = self.held, []
        for batches, events in held:
            await batches.ack(events)


def queue_writes(store: FaustTableStore, output: Output) -> None:
    """A store's changed keys onto its table's changelog as they are (the `__offsets`
    table: the commit record of the checkpoints), each into its partition."""
    topic = store.table.changelog_topic.get_topic_name()
    add = output.add
    for key, value, partition in store.take_writes():
        # the table's json serializers read these (orjson, as sluice's changelogs)
        add(topic, dumps(key), None if value is None else dumps(value), [], partition)
