"""Demo traffic for `sluice run --demo`: sample payments at a steady rate."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from streams.demo import payments, users_table

log = logging.getLogger("sluice.demo")
DEMO_TOPIC = "payments"
USERS_TOPIC = "users"


async def produce_demo_traffic(app: Any, rate: float, topic: str = DEMO_TOPIC) -> None:
    """Send generated payments to `topic` at `rate` per second, forever."""
    from datetime import UTC, datetime

    producer = app.producer
    for row in users_table():  # the lookup table the risk pipeline enriches from
        await producer.send(USERS_TOPIC, None, row, None, None, None)
    began = time.monotonic()
    log.info("demo traffic: %.0f payments/s to %r", rate, topic)
    lines = payments(10**12, start=datetime.now(UTC), events_per_second=rate)
    for sent, line in enumerate(lines, 1):
        await producer.send(topic, None, line, None, None, None)
        ahead = sent / rate - (time.monotonic() - began)
        if ahead > 0.005:
            await asyncio.sleep(ahead)
