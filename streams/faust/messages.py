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

import orjson

from streams.core.records import DeadLetter, Event, key_of
from streams.core.tracing import continue_trace
from streams.runtime.output import Output
from streams.runtime.pipeline_status import split_tombstones, text_key
from streams.runtime.sender import (
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
    dead_letter_headers,
    key_bytes,
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


def forward(messages: Sequence[Any], fields: tuple[str, ...], topic: str, output: Output) -> None:
    """Source records onto the repartition `topic`, keyed by `fields` (`source.key`), with
    their source position in headers (as sluice's own engine re-keys); value and headers
    unchanged."""
    add, loads = output.add, orjson.loads
    for message in messages:
        key, value = message.key, message.value
        if value is not None:
            try:
                decoded = loads(value)
            except orjson.JSONDecodeError:
                decoded = None  # the pipeline dead-letters it, with the original bytes
            if decoded.__class__ is dict:
                key = key_bytes(key_of(decoded, fields)) or key
        headers = [
            *headers_of(message),
            (SOURCE_TOPIC, message.topic.encode()),
            (SOURCE_PARTITION, str(message.partition).encode()),
            (SOURCE_OFFSET, str(message.offset).encode()),
        ]
        add(topic, key, value, headers)


def tombstone_letters(
    messages: list[Any], dead_letter_topic: str, source_topic: str, output: Output
) -> tuple[list[Any], list[DeadLetter]]:
    """Tombstones as the worker treats them (runtime.pipeline_status.split_tombstones),
    their dead letters queued on `output`. Returns (the messages with a value, the dead
    letters)."""
    kept, letters = split_tombstones(messages, headers_of)
    for letter, message in zip(letters, (m for m in messages if m.value is None), strict=True):
        output.add(dead_letter_topic, message.key, None, dead_letter_headers(letter, source_topic))
    return kept, letters


def tp(topic: str, partition: int) -> Any:
    from faust.types import TP

    return TP(topic, partition)
