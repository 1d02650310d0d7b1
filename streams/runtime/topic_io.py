"""`sluice produce` and `sluice consume`: JSON Lines in and out of a topic, with aiokafka."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from models.envelopes import EventEnvelope
from models.settings import Settings
from streams.core.jsonl import dumps
from streams.core.records import key_of
from streams.runtime.formats import ANY_FORMAT, RecordFormats
from streams.runtime.kafka import connection_options, start_client


async def start_or_explain(client: Any, settings: Settings) -> None:
    """Start an aiokafka client; an unreachable broker becomes a KafkaUnreachable that
    says where and what to check."""
    await start_client(client, settings)


@dataclass(slots=True)
class ProduceSummary:
    sent: int = 0
    skipped: int = 0


SkippedCallback = Callable[[int, str], None]  # (line number, why)

# `--rate` sends in steps of this long: each step's records leave together, a batch per
# partition, as from a producer with linger.ms=100. Paced record by record (a batch of 2-3
# records every 5 ms at 2,000/s), the embedded broker's fetches slowed to a stop once a
# partition held ~20k batches, two minutes into a soak (bench/tansu_small_batches.py);
# Apache Kafka does not mind, but a --rate run should not measure the test broker.
RATE_STEP_SECONDS = 0.1


async def produce(
    settings: Settings,
    topic: str,
    lines: Iterator[bytes],
    *,
    key_field: str | None = None,
    rate: float | None = None,
    on_sent: Any = None,
    on_skipped: SkippedCallback | None = None,
    encode: Callable[[Any], bytes] | None = None,
) -> ProduceSummary:
    """Send each non-empty line as a message. A line that cannot be sent — longer than
    processing.max_message_bytes, or refused by the broker — is reported through
    `on_skipped(line_number, reason)` and skipped; the rest is sent."""
    limit = settings.processing.max_message_bytes
    producer = AIOKafkaProducer(
        **connection_options(settings),
        linger_ms=5,
        max_batch_size=262_144,
        request_timeout_ms=15_000,
        max_request_size=max(limit * 2, 1_048_576),
    )
    await start_or_explain(producer, settings)
    summary = ProduceSummary()
    began = time.monotonic()
    pending: list[tuple[int, Any]] = []

    def skip(number: int, reason: str) -> None:
        summary.skipped += 1
        if on_skipped is not None:
            on_skipped(number, reason)

    async def settle() -> None:
        results = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
        for (number, _), result in zip(pending, results, strict=True):
            if isinstance(result, BaseException):
                summary.sent -= 1
                skip(number, f"the broker refused it: {type(result).__name__}: {result}")
        pending.clear()

    try:
        for number, line in enumerate(lines, 1):
            value = line.rstrip(b"\r\n")
            if on_sent is not None:
                on_sent(len(line))
            if not value.strip():
                continue
            if encode is not None:  # a registry format (sluice produce --format)
                try:
                    value = encode(orjson.loads(value))
                except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
                    skip(number, f"cannot encode it: {str(exc)[:300]}")
                    continue
            if len(value) > limit:
                skip(
                    number,
                    f"{len(value):,} bytes, more than processing.max_message_bytes ({limit:,})",
                )
                continue
            key = None
            if key_field is not None:
                try:
                    record = orjson.loads(line)
                    found = key_of(record, (key_field,)) if isinstance(record, dict) else None
                    key = found.encode() if found is not None else None
                except orjson.JSONDecodeError:
                    key = None
            try:
                pending.append((number, await producer.send(topic, value, key=key)))
            except KafkaError as exc:  # refused before sending: too large for the client
                skip(number, f"{type(exc).__name__}: {exc}")
                continue
            summary.sent += 1
            if len(pending) >= 10_000:
                await settle()
            if rate:
                ahead = summary.sent / rate - (time.monotonic() - began)
                if ahead > RATE_STEP_SECONDS:
                    await asyncio.sleep(ahead)
        await settle()
    finally:
        await producer.stop()
    return summary


_UNDECODED = object()


def render(message: Any, envelope: bool, decoded: Any = _UNDECODED) -> bytes:
    """A consumed message as one JSON line: its value (non-JSON as a JSON string; `decoded`
    instead when given: a registry-encoded value's record), or the whole envelope."""
    raw = message.value if message.value is not None else b"null"
    if decoded is not _UNDECODED:
        value = decoded
    else:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            value = raw.decode("utf-8", errors="backslashreplace")
    if not envelope:
        return orjson.dumps(value) if decoded is _UNDECODED else dumps(value)
    return (
        EventEnvelope(
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=None
            if message.key is None
            else message.key.decode("utf-8", errors="backslashreplace"),
            headers={
                k: v.decode("utf-8", errors="backslashreplace") for k, v in message.headers or ()
            },
            value=value,
            timestamp_ms=message.timestamp,
        )
        .model_dump_json(exclude={"timestamp_ms"})
        .encode()
    )


async def consume(
    settings: Settings,
    topic: str,
    out: IO[bytes],
    *,
    from_beginning: bool = False,
    limit: int | None = None,
    envelope: bool = False,
    idle_timeout: float | None = None,
    isolation: str | None = None,
    decode: bool = False,
) -> int:
    """Print messages of `topic` as JSON Lines until `limit` (or Ctrl-C, or `idle_timeout`
    seconds without a message). `isolation` defaults to read_committed when the settings
    ask for exactly-once (results of unfinished transactions are not shown)."""
    if isolation is None:
        exactly_once = settings.processing.guarantee == "exactly_once"
        isolation = "read_committed" if exactly_once else "read_uncommitted"
    consumer = AIOKafkaConsumer(
        topic,
        **connection_options(settings),
        isolation_level=isolation,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        group_id=None,
        request_timeout_ms=15_000,
    )
    await start_or_explain(consumer, settings)
    formats = RecordFormats(settings) if decode else None
    printed = 0
    last = time.monotonic()
    try:
        while limit is None or printed < limit:
            batches = await consumer.getmany(timeout_ms=200, max_records=1000)
            if not batches:
                if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                    break
                continue
            last = time.monotonic()
            for messages in batches.values():
                values: list[Any] = [_UNDECODED] * len(messages)
                if formats is not None:
                    values = await _decoded(formats, messages)
                for message, value in zip(messages, values, strict=True):
                    out.write(render(message, envelope, value) + b"\n")
                    printed += 1
                    if limit is not None and printed >= limit:
                        break
                if limit is not None and printed >= limit:
                    break
            out.flush()
    finally:
        await consumer.stop()
        if formats is not None:
            await formats.close()
    return printed


async def _decoded(formats: RecordFormats, messages: list[Any]) -> list[Any]:
    """Each message's decoded record, or _UNDECODED (printed as it is) for a value that is
    not in the wire format or does not decode."""
    raws = [m.value or b"" for m in messages]
    records = await formats.decode_values(raws, ANY_FORMAT)
    return [_UNDECODED if isinstance(r, Exception) else r for r in records]


def stdout_bytes() -> IO[bytes]:
    return sys.stdout.buffer
