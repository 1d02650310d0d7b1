"""A batch's results onto the `Output`: records to their topics, dead letters with the
error headers and their original bytes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import orjson

from streams.core.jsonl import dumps
from streams.core.records import BatchResult, DeadLetter, Event, Headers, key_of
from streams.core.tracing import TRACEPARENT, new_traceparent
from streams.runtime.output import Output
from streams.runtime.seams import RecordLike
from streams.steps.route import SINK_STEP

SOURCE_TOPIC = "sluice.source.topic"
SOURCE_PARTITION = "sluice.source.partition"
SOURCE_OFFSET = "sluice.source.offset"
_SOURCE_HEADERS = frozenset({SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET})


def key_bytes(key: str | None) -> bytes | None:
    return None if key is None else key.encode()


R = TypeVar("R", bound=RecordLike)  # a consumer record, or a Faust message


def forward_rekeyed(
    records: Iterable[R],
    fields: tuple[str, ...],
    topic: str,
    output: Output,
    headers_of: Callable[[R], Headers],
    decode: Callable[[bytes], Any] = orjson.loads,
    keyless_partition: Callable[[R], int] | None = None,
) -> None:
    """Records onto a repartition `topic`, keyed by `fields` (the worker's runner and the
    Faust host alike), with their source position in headers; value and headers unchanged.
    A value that does not decode keeps its key: the pipeline dead-letters it later, with
    the original bytes. A record left without a key goes where `keyless_partition` says
    (default: the producer's sticky partition)."""
    add = output.add
    for record in records:
        key, value = record.key, record.value
        if value is not None:
            try:
                decoded = decode(value)
            except orjson.JSONDecodeError:
                decoded = None
            if decoded.__class__ is dict:
                key = key_bytes(key_of(decoded, fields)) or key
        headers = [
            *headers_of(record),
            (SOURCE_TOPIC, record.topic.encode()),
            (SOURCE_PARTITION, str(record.partition).encode()),
            (SOURCE_OFFSET, str(record.offset).encode()),
        ]
        if key is None and keyless_partition is not None:
            add(topic, key, value, headers, keyless_partition(record))
        else:
            add(topic, key, value, headers)


def dead_letter_headers(letter: DeadLetter, source_topic: str) -> Headers:
    """The record's own headers plus the error and, unless an earlier stage (repartition)
    already recorded it, the source position."""
    headers = [(k, v) for k, v in letter.headers if not k.startswith("sluice.error.")]
    present = {k for k, _ in headers}
    headers += [
        ("sluice.error.step", letter.step.encode()),
        ("sluice.error.type", letter.error_type.encode()),
        ("sluice.error.message", letter.message.encode()[:4096]),
    ]
    if SOURCE_TOPIC not in present:
        headers += [
            (SOURCE_TOPIC, source_topic.encode()),
            (SOURCE_PARTITION, str(letter.partition).encode()),
            (SOURCE_OFFSET, str(letter.offset).encode()),
        ]
    return headers


class ResultSender:
    """Puts one pipeline's results on the output (sent with the batch, acknowledged by
    the next checkpoint). A result larger than `max_message_bytes` (a component's, a
    map's) would be refused by the broker and fail every retry of its batch: it becomes
    an `oversize` dead letter of its input instead."""

    def __init__(
        self,
        dead_letter_topic: str,
        source_topic: str,
        *,
        trace: bool = True,
        max_message_bytes: int = 1_048_576,
    ) -> None:
        self.trace = trace
        self.dead_letter_topic = dead_letter_topic
        self.source_topic = source_topic
        self.max_message_bytes = max_message_bytes
        # topic -> encoder, for outputs not in JSON (Avro: streams.runtime.formats)
        self.encoders: dict[str, Callable[[Any], bytes]] = {}
        self.key_encoders: dict[str, Callable[[Any], bytes]] = {}  # sink key_format: avro

    def send(self, result: BatchResult, output: Output) -> int:
        """Queue everything in `result`; returns how many records. Oversize results are
        added to `result.dead_letters` (the caller counts them)."""
        add, trace, sent, limit = output.add, self.trace, 0, self.max_message_bytes
        for topic, events in result.outputs.items():
            encode = self.encoders.get(topic, dumps)
            encode_key = self.key_encoders.get(topic)
            for event in events:
                try:
                    value = encode(event.value)
                except ValueError as exc:  # a result that does not fit the topic's schema
                    result.dead_letters.append(_unencodable(event, topic, exc))
                    continue
                if len(value) > limit:
                    result.dead_letters.append(_oversize(event, topic, len(value), limit))
                    continue
                headers = [h for h in event.headers if h[0] not in _SOURCE_HEADERS]
                if not headers and trace:  # caused by no single record: a window result
                    headers = [(TRACEPARENT, new_traceparent())]
                key = event.key
                add(
                    topic,
                    key_bytes(key) if encode_key is None or key is None else encode_key(key),
                    value,
                    headers,
                )
                sent += 1
        for letter in result.dead_letters:
            add(
                self.dead_letter_topic,
                key_bytes(letter.key),
                letter.raw,
                dead_letter_headers(letter, self.source_topic),
            )
        return sent + len(result.dead_letters)


def _unencodable(event: Event, topic: str, exc: ValueError) -> DeadLetter:
    return DeadLetter(
        raw=event.raw,
        step=SINK_STEP,
        error_type="schema",
        message=f"the result for {topic} {str(exc)[:500]}",
        partition=event.partition,
        offset=event.offset,
        key=event.key,
        headers=event.headers,
    )


def _oversize(event: Event, topic: str, size: int, limit: int) -> DeadLetter:
    return DeadLetter(
        raw=event.raw,
        step=SINK_STEP,
        error_type="oversize",
        message=f"the result for {topic} is {size:,} bytes, more than "
        f"processing.max_message_bytes ({limit:,})",
        partition=event.partition,
        offset=event.offset,
        key=event.key,
        headers=event.headers,
    )
