"""Demo traffic for `sluice run --demo`: the users table, then sample payments at a
steady rate, with a producer of its own."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaProducer

from models.settings import Settings
from streams.offline.demo_data import payments, settlements, users_table
from streams.runtime.kafka import connection_options, start_client

log = logging.getLogger("sluice.demo")
DEMO_TOPIC = "payments"
USERS_TOPIC = "users"
SETTLEMENTS_TOPIC = "settlements"

# The demo sends a step's payments together, all to one partition, the next step to the
# next partition (Kafka's sticky partitioner for keyless records): one record batch a
# second in all. The embedded broker (tansu, memory storage) never deletes a batch, lists
# every batch of a partition on each fetch and stops listing at the fetch's max wait: past
# some thousands of batches a fetch at the tail comes back empty (engine_clients.FETCH_MAX_WAIT_MS).
# In 0.1 s steps spread over the 4 partitions the demo made ~38 batches/s on payments, and
# the worker ~10/s in each partition of the topics it writes and reads back (payments-eur,
# both repartitions): `make run` stopped after 26 minutes (issue 22, case 9). Now: 1/s on
# payments, ~1.0-1.2/s a partition on the others.
DEMO_STEP_SECONDS = 1.0
# a step's records for one partition must fit in one batch: 200 records/s of ~200 B are
# ~40 KB a step, aiokafka's default (16 KB) would split them
MAX_BATCH_BYTES = 1_048_576


async def produce_demo_traffic(
    settings: Settings,
    rate: float,
    topic: str = DEMO_TOPIC,
    step: float = DEMO_STEP_SECONDS,
) -> None:
    """Send the users table, then generated payments to `topic` at `rate` per second in
    steps of `step` seconds, until cancelled."""
    producer = AIOKafkaProducer(
        **connection_options(settings), linger_ms=5, max_batch_size=MAX_BATCH_BYTES
    )
    await start_client(producer, settings)
    try:
        for row in users_table():  # the lookup table the risk pipeline enriches from
            await producer.send(USERS_TOPIC, row)
        partitions = itertools.cycle(sorted(await producer.partitions_for(topic)))
        began = time.monotonic()
        log.info("demo traffic: %.0f payments/s to %r", rate, topic)
        lines = payments(10**12, start=datetime.now(UTC), events_per_second=rate)
        sent = 0
        for number in itertools.count(1):
            due = int(number * step * rate) - sent  # the step's share, rounding carried over
            partition = next(partitions)
            # sends that find room in the open batch never yield, so the sender task
            # cannot split the step; every 1,000 records the loop lets others run (a
            # high --rate), at the cost of a batch more
            for count, line in enumerate(itertools.islice(lines, due), 1):
                await producer.send(topic, line, partition=partition)
                if count % 1_000 == 0:
                    await asyncio.sleep(0)
            sent += due
            ahead = number * step - (time.monotonic() - began)
            if ahead > 0:
                await asyncio.sleep(ahead)
    finally:
        await asyncio.shield(producer.stop())


async def produce_settlement_traffic(
    settings: Settings, rate: float, step: float = DEMO_STEP_SECONDS
) -> None:
    """The demo's second stream (for the payments-settled join): each demo payment's
    settlement, sent when its event time comes, until cancelled. It regenerates the
    payments `produce_demo_traffic` sends (same seed and rate, from now) to answer them.
    Sent like the payments (see DEMO_STEP_SECONDS): a step's settlements together, to
    one partition, the next step to the next."""
    producer = AIOKafkaProducer(
        **connection_options(settings), linger_ms=5, max_batch_size=MAX_BATCH_BYTES
    )
    await start_client(producer, settings)
    try:
        partitions = itertools.cycle(sorted(await producer.partitions_for(SETTLEMENTS_TOPIC)))
        start = datetime.now(UTC)
        began = time.monotonic()
        lines = settlements(10**12, start=start, events_per_second=rate)
        pending = next(lines, None)
        for number in itertools.count(1):
            horizon = number * step
            ahead = horizon - (time.monotonic() - began)
            if ahead > 0:
                await asyncio.sleep(ahead)
            partition = next(partitions)
            while pending is not None:
                due = datetime.fromisoformat(orjson.loads(pending)["ts"]) - start
                if due.total_seconds() > horizon:
                    break
                await producer.send(SETTLEMENTS_TOPIC, pending, partition=partition)
                pending = next(lines, None)
    finally:
        await asyncio.shield(producer.stop())
