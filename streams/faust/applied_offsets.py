"""A pipeline agent's checkpoint, and the input offsets its results and state include.

    outputs and state changes acknowledged ─► the input offsets they include written to
    `<pipeline>.__offsets` (acknowledged) ─► the held events acked ─► Faust commits them

Every pipeline, stateless too, keeps per input partition (and, on a repartition topic, per
source partition, whose records arrive in source order) the last input offset it applied;
a record at or below it is skipped. Why every pipeline: a topic read by several agents is
committed at the slowest one's acked offset (Faust acks a message once every agent has),
and at a stop Faust clears the agents' queues before they can catch up, so the next worker
reads again what the faster agents had sent results for (measured: payments-clean's and
payments_eur's outputs and dead letters twice after a SIGTERM, on both brokers). With the
offsets table a SIGTERM re-sends nothing; only a kill between a checkpoint's outputs and
its offsets write applies a batch twice (docs/faust.md, the kill rounds).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from streams.core.jsonl import dumps
from streams.runtime import faults
from streams.runtime.output import Output

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

    async def run(self, output: Output, persist: Callable[[], None]) -> None:
        """Outputs and state changes acknowledged, then the input offsets they include,
        then the held events acked."""
        self.last = time.monotonic()
        persist()
        for store in self.state.stores.values():
            if store is not self.offsets:
                queue_writes(store, output)
        await output.drain()
        faults.reached("faust.checkpoint.after_state", self.name)
        if self.applied:
            applied, self.applied = self.applied, {}
            for key, (offset, partition) in applied.items():
                self.offsets.set(key, offset, partition)
            queue_writes(self.offsets, output)
            await output.drain()
            faults.reached("faust.checkpoint.after_offsets", self.name)
        held, self.held = self.held, []
        for batches, events in held:
            await batches.ack(events)


def queue_writes(store: FaustTableStore, output: Output) -> None:
    """A store's changed keys onto its table's changelog, each into its partition."""
    topic = store.table.changelog_topic.get_topic_name()
    add = output.add
    for key, value, partition in store.take_writes():
        # the table's json serializers read these (orjson, as sluice's changelogs)
        add(topic, dumps(key), None if value is None else dumps(value), [], partition)
