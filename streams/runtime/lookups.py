"""Lookup tables for `enrich`: every worker keeps the latest row per key of a table's
topic (compacted semantics), reading all of its partitions with a consumer of its own.

A table is loaded once it is read to the end offsets its partitions had when the feeder
started (as Kafka Streams restores global tables before processing); the worker processes
nothing before every table is loaded. Counting a table as loaded after its first empty
200 ms poll let 962 of 2,000 events find "no row" with 200,000 rows in the topic (issue
22). A row that is not a JSON object (invalid JSON, `[1, 2]`, a string) or has no key is
a dead letter of the pipeline (step `table`), never a row: `enrich` reads fields of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.core.jsonl import json_type
from streams.core.records import DeadLetter, key_of
from streams.core.state import DictStateStore
from streams.runtime.seams import stop_reader
from streams.runtime.sender import ResultSender, dead_letter_headers, key_bytes

log = logging.getLogger("sluice.tables")

TABLE_STEP = "table"  # `sluice.error.step` of a table row's dead letter
POLL_MS = 200
PROGRESS_LOG_S = 10.0
NOT_DECODED: Any = object()  # a table in JSON: the feeder parses the value itself


def row_problem(value: bytes | None) -> tuple[Any, DeadLetter | None]:
    """A table message's row (None: a tombstone, delete the key), or why it is none:
    (row, None) or (None, a dead letter without its position)."""
    if value is None:
        return None, None
    try:
        row = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return None, _letter(value, "invalid_json", f"invalid JSON: {exc}")
    if row.__class__ is not dict:
        return None, _letter(value, "invalid_json", f"expected a JSON object, got {json_type(row)}")
    return row, None


def decoded_row_problem(value: bytes, decoded: Any) -> tuple[Any, DeadLetter | None]:
    """As `row_problem`, for a value a registry format decoded (a record, or the error
    that it does not decode: a `schema` dead letter, as on a source)."""
    if isinstance(decoded, Exception):
        return None, _letter(value, "schema", str(decoded))
    if decoded.__class__ is not dict:
        return None, _letter(value, "schema", f"expected a record, got {json_type(decoded)}")
    return decoded, None


def _letter(raw: bytes, error_type: str, message: str) -> DeadLetter:
    return DeadLetter(
        raw=raw, step=TABLE_STEP, error_type=error_type, message=message, partition=-1, offset=-1
    )


async def _end_offsets(consumer: AIOKafkaConsumer, topic: str) -> dict[TopicPartition, int]:
    """Per partition with records, the offset reading must reach to have them all."""
    await consumer.topics()  # metadata of every topic: the table topic's partitions
    partitions = [
        TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    if not partitions:
        return {}
    ends = await consumer.end_offsets(partitions)
    begins = await consumer.beginning_offsets(partitions)
    return {tp: end for tp, end in ends.items() if end > begins[tp]}


async def _reached(
    consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int], corrected: set[TopicPartition]
) -> None:
    """Drop from `ends` the partitions read to their end offset. tansu lists an end at or
    below the true log end (the base offset of the last batch + 1: 29,708 listed for
    30,500 records, measured), so each end is raised once to the high watermark of the
    first fetch that reports one (`corrected`), as streams.runtime.recovery reads."""
    assigned = consumer.assignment()
    for tp in list(ends):
        if tp not in corrected:
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            ends[tp] = max(ends[tp], highwater)
            corrected.add(tp)
        if tp in assigned and await consumer.position(tp) >= ends[tp]:
            del ends[tp]


async def feed_lookup_table(
    connection: dict[str, Any],
    name: str,
    topic: str,
    key_fields: tuple[str, ...],
    store: DictStateStore,
    loaded: asyncio.Event,
    dead_letter: Callable[[DeadLetter], Awaitable[None]],
    decode: Callable[[list[bytes]], Awaitable[list[Any]]] | None = None,
) -> None:
    """Keep `store` equal to the latest row per key of `topic` (compacted semantics),
    reading all its partitions: every worker sees the whole table. A row whose value is
    null deletes its key. `loaded` is set once the offsets that were the end at start
    are read; rows that cannot be rows go to `dead_letter`. `decode`: a registry format's
    batch decoder (records, or the errors of values that do not decode)."""
    consumer = AIOKafkaConsumer(
        topic,
        **connection,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    try:
        ends = await _end_offsets(consumer, topic)
        total = sum(ends.values())
        log.info("lookup table %s: reading %s to its end (%d records)", name, topic, total)
        last_log = asyncio.get_running_loop().time()
        corrected: set[TopicPartition] = set()
        while True:
            if not ends and not loaded.is_set():
                loaded.set()
                log.info("lookup table %s loaded: %d rows", name, len(store))
            batches = await consumer.getmany(timeout_ms=POLL_MS, max_records=10_000)
            for messages in batches.values():
                decoded: Iterator[Any] | None = None
                if decode is not None:  # one value decoded per message that has one
                    decoded = iter(await decode([m.value for m in messages if m.value]))
                for message in messages:
                    value = next(decoded) if decoded is not None and message.value else NOT_DECODED
                    letter = _apply(name, topic, key_fields, store, message, value)
                    if letter is not None:
                        await dead_letter(letter)
            if ends:
                await _reached(consumer, ends, corrected)
                now = asyncio.get_running_loop().time()
                if ends and now - last_log >= PROGRESS_LOG_S:
                    last_log = now
                    log.info("lookup table %s: loading, %d rows so far", name, len(store))
    finally:
        await stop_reader(consumer)


def _apply(
    name: str,
    topic: str,
    key_fields: tuple[str, ...],
    store: DictStateStore,
    message: Any,
    decoded: Any = NOT_DECODED,
) -> DeadLetter | None:
    """The message applied to the table, or the dead letter it is (`decoded`: its value
    as a registry format decoded it, else NOT_DECODED: JSON)."""
    row, letter = (
        row_problem(message.value)
        if decoded is NOT_DECODED
        else decoded_row_problem(message.value, decoded)
    )
    key = key_of(row, key_fields) if row is not None else None
    if key is None and message.key is not None:
        key = message.key.decode("utf-8", errors="replace")
    if letter is None and key is None:
        letter = _letter(
            message.value or b"",
            "key",
            f"table key field(s) {', '.join(key_fields)} missing or null "
            "and the message has no key",
        )
    if letter is not None:
        letter.message = f"table {name!r} ({topic}): {letter.message}"
        letter.partition = message.partition
        letter.offset = message.offset
        letter.key = key
        letter.headers = list(message.headers or ())
        return letter
    assert key is not None
    if row is None:
        store.delete(key)
    else:
        store.set(key, row)
    return None


class DeadLetterOwner(Protocol):
    """What sends a pipeline's dead letters: a worker's PipelineRunner, a Faust host's
    PipelineAgent."""

    name: str
    metrics: Any
    recent_dead_letters: deque[dict[str, Any]]
    sender: ResultSender


class TableDeadLetters:
    """A pipeline's table rows that cannot be rows, onto its dead-letter topic: the
    original bytes, the headers every dead letter has (the source position naming the
    table's topic), counted and logged like the pipeline's own dead letters."""

    def __init__(self, producer: AIOKafkaProducer, runner: DeadLetterOwner, topic: str) -> None:
        self.producer = producer
        self.runner = runner
        self.topic = topic

    async def send(self, letter: DeadLetter) -> None:
        runner = self.runner
        runner.metrics.dead_letters(letter.step, letter.error_type, 1)
        runner.recent_dead_letters.appendleft(
            {
                "at": time.time(),
                "step": letter.step,
                "type": letter.error_type,
                "message": letter.message[:300],
                "trace_id": None,
            }
        )
        log.warning(
            "dead letter at step %s: %s",
            letter.step,
            letter.message[:300],
            extra={
                "pipeline": runner.name,
                "step": letter.step,
                "error_type": letter.error_type,
                "partition": letter.partition,
                "offset": letter.offset,
            },
        )
        delivery = await self.producer.send(
            runner.sender.dead_letter_topic,
            letter.raw,
            key=key_bytes(letter.key),
            headers=list(dead_letter_headers(letter, self.topic)),
        )
        delivery.add_done_callback(self._delivered)

    def _delivered(self, delivery: asyncio.Future[Any]) -> None:
        if not delivery.cancelled() and delivery.exception() is not None:
            log.error(
                "a table dead letter of %s was not delivered: %r",
                self.runner.name,
                delivery.exception(),
            )
