"""Lookup tables for `enrich`: every worker keeps the latest row per key of a table's
topic (compacted semantics), reading all of its partitions with a consumer of its own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from streams.records import key_of
from streams.state import DictStateStore

log = logging.getLogger("sluice.tables")


async def feed_lookup_table(
    connection: dict[str, Any],
    topic: str,
    key_fields: tuple[str, ...],
    store: DictStateStore,
    loaded: asyncio.Event,
    decode: Callable[[list[bytes]], Awaitable[list[Any]]] | None = None,
) -> None:
    """Keep `store` equal to the latest row per key of `topic` (compacted semantics),
    reading all its partitions: every worker sees the whole table. A row whose value is
    null deletes its key."""
    consumer = AIOKafkaConsumer(
        topic,
        **connection,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for messages in batches.values():
                decoded: Iterator[Any] = iter(())
                if decode is not None:  # a registry format: records or RecordErrors
                    decoded = iter(await decode([m.value for m in messages if m.value]))
                for message in messages:
                    try:
                        row = None
                        if message.value is not None and decode is None:
                            row = orjson.loads(message.value)
                        elif message.value:
                            row = next(decoded)
                            if isinstance(row, Exception):
                                raise orjson.JSONDecodeError(str(row), "", 0)
                    except orjson.JSONDecodeError:
                        log.warning(
                            "table %s: skipping a row that does not decode (offset %d)",
                            topic,
                            message.offset,
                        )
                        continue
                    key = key_of(row, key_fields) if isinstance(row, dict) else None
                    if key is None and message.key is not None:
                        key = message.key.decode("utf-8", errors="replace")
                    if key is None:
                        continue
                    if row is None:
                        store.delete(key)
                    else:
                        store.set(key, row)
            if not batches and not loaded.is_set():
                loaded.set()
                log.info("lookup table %s loaded: %d rows", topic, len(store))
    finally:
        await consumer.stop()
