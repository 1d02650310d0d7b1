"""Demo traffic for `sluice run --demo`: the users table, then sample payments at a
steady rate, with a producer of its own."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaProducer

from models.settings import Settings
from streams.demo import payments, settlements, users_table
from streams.runtime.clients import RATE_STEP_SECONDS
from streams.runtime.kafka import connection_options, start_client

log = logging.getLogger("sluice.demo")
DEMO_TOPIC = "payments"
USERS_TOPIC = "users"
SETTLEMENTS_TOPIC = "settlements"


async def produce_demo_traffic(settings: Settings, rate: float, topic: str = DEMO_TOPIC) -> None:
    """Send the users table, then generated payments to `topic` at `rate` per second,
    until cancelled."""
    producer = AIOKafkaProducer(**connection_options(settings), linger_ms=5)
    await start_client(producer, settings)
    try:
        for row in users_table():  # the lookup table the risk pipeline enriches from
            await producer.send(USERS_TOPIC, row)
        began = time.monotonic()
        log.info("demo traffic: %.0f payments/s to %r", rate, topic)
        lines = payments(10**12, start=datetime.now(UTC), events_per_second=rate)
        for sent, line in enumerate(lines, 1):
            await producer.send(topic, line)
            ahead = sent / rate - (time.monotonic() - began)
            if ahead > RATE_STEP_SECONDS:  # a batch per step, not per record
                await asyncio.sleep(ahead)
    finally:
        await asyncio.shield(producer.stop())


async def produce_settlement_traffic(settings: Settings, rate: float) -> None:
    """The demo's second stream (for the payments-settled join): each demo payment's
    settlement, sent when its event time comes, until cancelled. It regenerates the
    payments `produce_demo_traffic` sends (same seed and rate, from now) to answer them."""
    producer = AIOKafkaProducer(**connection_options(settings), linger_ms=5)
    await start_client(producer, settings)
    try:
        start = datetime.now(UTC)
        began = time.monotonic()
        for line in settlements(10**12, start=start, events_per_second=rate):
            due = datetime.fromisoformat(orjson.loads(line)["ts"]) - start
            ahead = due.total_seconds() - (time.monotonic() - began)
            if ahead > RATE_STEP_SECONDS:
                await asyncio.sleep(ahead)
            await producer.send(SETTLEMENTS_TOPIC, line)
    finally:
        await asyncio.shield(producer.stop())
