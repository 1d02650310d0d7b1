"""Faust messages in and out of a pipeline agent: the batches an agent's stream hands
over (and acks), the pipeline's input events made of them, tombstones as dead letters,
and source records forwarded onto a repartition topic.

Why `noack_take` and not `take`/`take_events`: those ack a batch in a `finally` when the
loop moves on — also when the batch raised, so a failed batch's offsets would be
committed at the graceful stop that follows. Here events are acked only after their
results and state are on the broker (streams.faust.applied_offsets).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from streams.core.records import Event
from streams.core.tracing import continue_trace
from streams.runtime.output import Output
from streams.runtime.pipeline_status import text_key
from streams.runtime.sender import (
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    forward_rekeyed,
)


def headers_of(message: Any) -> list[tuple[str, bytes]]:
    headers = message.headers
    if not headers:
        return []
    return list(headers.items() if isinstance(headers, dict) else headers)


def to_events(messages: Sequence[Any], *, trace: bool) -> list[Event]:
    """Faust messages as pipeline input: raw value, key, Kafka time (Faust's are seconds),
    headers (the W3C `traceparent` continued, or a new trace), position."""
    events = []
    for message in messages:
        headers = headers_of(message)
        events.append(
            Event(
                None,
                text_key(message.key),
                int(message.timestamp * 1000) if message.timestamp else 0,
                continue_trace(headers) if trace else headers,
                message.value,
                message.partition,
                message.offset,
            )
        )
    return events


class Batches:
    """What an agent's stream hands over, and acks: Faust's `noack_take`."""

    def __init__(self, stream: Any, batch_max: int, within_s: float) -> None:
        self.stream = stream
        self.batch_max = batch_max
        self.within_s = within_s

    def __aiter__(self) -> Any:
        return self.stream.noack_take(self.batch_max, within=self.within_s).__aiter__()

    async def ack(self, events: Sequence[Any]) -> None:
        ack = self.stream.ack
        for event in events:
            await ack(event)


def source_position(message: Any) -> tuple[int, int] | None:
    """(source partition, source offset) of a record the re-key agent forwarded."""
    partition = offset = None
    for name, value in headers_of(message):
        if name == SOURCE_PARTITION:
            partition = value
        elif name == SOURCE_OFFSET:
            offset = value
    if partition is None or offset is None:
        return None
    return int(partition), int(offset)


def forward(
    messages: Sequence[Any], fields: tuple[str, ...], topic: str, output: Output, partitions: int
) -> None:
    """Source records onto the repartition `topic` (of `partitions`), keyed by `fields`
    (`source.key`), as sluice's own engine re-keys (runtime.sender.forward_rekeyed).

    A record without a key (no such field, not JSON) goes to its source partition's
    partition (modulo), not the producer's sticky one: the re-key agent forwards again
    what the source's commit does not cover (it is the slowest agent's), and the stage
    skips a record applied before by its source position per stage partition — a keyless
    copy on another partition was not skipped (measured: `payments-risk`'s dead letters
    twice after a SIGTERM restart with the rebalance tests beside it, both brokers, in 4
    of 8 runs)."""
    forward_rekeyed(
        messages,
        fields,
        topic,
        output,
        headers_of,
        keyless_partition=lambda m: m.partition % partitions,
    )


def tp(topic: str, partition: int) -> Any:
    from faust.types import TP

    return TP(topic, partition)
