"""A batch's results onto the `Output`: records to their topics, dead letters with the
error headers and their original bytes."""

from __future__ import annotations

from streams.jsonl import dumps
from streams.records import BatchResult, DeadLetter, Headers
from streams.runtime.output import Output
from streams.tracing import TRACEPARENT, new_traceparent

SOURCE_TOPIC = "sluice.source.topic"
SOURCE_PARTITION = "sluice.source.partition"
SOURCE_OFFSET = "sluice.source.offset"
_SOURCE_HEADERS = frozenset({SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET})


def key_bytes(key: str | None) -> bytes | None:
    return None if key is None else key.encode()


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
    the next checkpoint)."""

    def __init__(self, dead_letter_topic: str, source_topic: str, *, trace: bool = True) -> None:
        self.trace = trace
        self.dead_letter_topic = dead_letter_topic
        self.source_topic = source_topic

    def send(self, result: BatchResult, output: Output) -> int:
        """Queue everything in `result`; returns how many records."""
        add, trace, sent = output.add, self.trace, 0
        for topic, events in result.outputs.items():
            for event in events:
                headers = [h for h in event.headers if h[0] not in _SOURCE_HEADERS]
                if not headers and trace:  # caused by no single record: a window result
                    headers = [(TRACEPARENT, new_traceparent())]
                add(topic, key_bytes(event.key), dumps(event.value), headers)
            sent += len(events)
        for letter in result.dead_letters:
            add(
                self.dead_letter_topic,
                key_bytes(letter.key),
                letter.raw,
                dead_letter_headers(letter, self.source_topic),
            )
        return sent + len(result.dead_letters)
