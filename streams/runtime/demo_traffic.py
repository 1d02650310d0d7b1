"""Demo traffic for `sluice run --demo`: the users table, then sample payments at a
steady rate, through the worker's own producer."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from faust.exceptions import NotReady

from streams.demo import payments, users_table

log = logging.getLogger("sluice.demo")
DEMO_TOPIC = "payments"
USERS_TOPIC = "users"


async def _producer_ready(app: Any) -> None:
    # the producer starts with the consumer; a send before that raises NotReady
    while True:
        try:
            app.producer._ensure_producer()
        except Exception:
            await asyncio.sleep(0.2)
        else:
            return


async def produce_demo_traffic(app: Any, rate: float, topic: str = DEMO_TOPIC) -> None:
    """Send the users table, then generated payments to `topic` at `rate` per second."""
    await _producer_ready(app)
    producer = app.producer
    for row in users_table():  # the lookup table the risk pipeline enriches from
        await producer.send(USERS_TOPIC, None, row, None, None, None)
    began = time.monotonic()
    log.info("demo traffic: %.0f payments/s to %r", rate, topic)
    lines = payments(10**12, start=datetime.now(UTC), events_per_second=rate)
    for sent, line in enumerate(lines, 1):
        try:
            await producer.send(topic, None, line, None, None, None)
        except NotReady:
            if app.should_stop:  # the producer stops before this task on Ctrl-C
                return
            raise
        ahead = sent / rate - (time.monotonic() - began)
        if ahead > 0.005:
            await asyncio.sleep(ahead)
