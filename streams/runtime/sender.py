"""Sends a batch's results: records to their topics, dead letters with error headers.

Sends are started for the whole batch, then awaited together: the batch is acknowledged
(and its offsets committed) only after every result is on the broker — at-least-once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from streams.jsonl import dumps
from streams.records import BatchResult, DeadLetter, Headers
from streams.tracing import TRACEPARENT, new_traceparent

SOURCE_TOPIC = "sluice.source.topic"
SOURCE_PARTITION = "sluice.source.partition"
SOURCE_OFFSET = "sluice.source.offset"
_SOURCE_HEADERS = (SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET)

# (topic, key, value, partition, timestamp seconds, headers) -> future of the send
SendFn = Callable[
    [str, bytes | None, bytes | None, int | None, float | None, Headers | None],
    Awaitable[Awaitable[Any]],
]


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
    def __init__(
        self,
        send: SendFn,
        dead_letter_topic: str,
        source_topic: str,
        observe_latencies: Callable[[list[float]], None] | None = None,
        *,
        trace: bool = True,
    ) -> None:
        self._send = send
        self.trace = trace
        self.dead_letter_topic = dead_letter_topic
        self.source_topic = source_topic
        self.observe_latencies = observe_latencies

    async def send(self, result: BatchResult) -> int:
        """Send everything in `result`; returns how many messages were sent."""
        send, trace = self._send, self.trace
        pending: list[Awaitable[Any]] = []
        event_times: list[int] = []
        for topic, events in result.outputs.items():
            for event in events:
                headers = [h for h in event.headers if h[0] not in _SOURCE_HEADERS] or None
                if headers is None and trace:  # caused by no single record: a window result
                    headers = [(TRACEPARENT, new_traceparent())]
                pending.append(
                    await send(topic, key_bytes(event.key), dumps(event.value), None, None, headers)
                )
                event_times.append(event.timestamp_ms)
        for letter in result.dead_letters:
            pending.append(
                await send(
                    self.dead_letter_topic,
                    key_bytes(letter.key),
                    letter.raw,
                    None,
                    None,
                    dead_letter_headers(letter, self.source_topic),
                )
            )
        if pending:
            await asyncio.gather(*pending)
        if self.observe_latencies is not None and event_times:
            now_ms = time.time() * 1000
            self.observe_latencies([max(0.0, (now_ms - t) / 1000) for t in event_times])
        return len(pending)
