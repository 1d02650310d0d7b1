"""Steady state without a fault (issue 18): minutes of traffic at a steady 2,000/s through a
worker with the shipped settings, and every result arrives exactly once — at-least-once
allows a second copy after a failure, never in a fault-free run.

On tansu the run is 30 s (60,000 records; it was 60 s until the suite neared 20 minutes):
its fetches stop once partitions hold a few hundred thousand records in small batches
(bench/tansu_small_batches.py; at 2,000/s that is after ~100 s), which would be the
broker's failure, not the worker's. Apache Kafka, the production broker, takes a minute
(120,000 records); `sluice bench soak` runs 10-minute phases on Apache Kafka."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench.latency import PIPELINE, Results, payload_pool, send_at_rate
from bench.support import Broker, WorkerProcess, create_topics, unique
from streams.runtime.broker import EmbeddedBroker
from tests.brokers.apache_kafka import ApacheKafka

pytestmark = pytest.mark.integration

RATE = 2_000.0


@pytest.mark.timeout(240)
def test_half_a_minute_at_2000_per_second_on_tansu_gives_every_result_exactly_once(
    tansu: EmbeddedBroker,
) -> None:
    assert tansu.process is not None
    _check(Broker("tansu", tansu.address, tansu.process.pid), seconds=30)


@pytest.mark.timeout(240)
def test_a_minute_at_2000_per_second_on_apache_kafka_give_every_result_exactly_once(
    apache_kafka: ApacheKafka,
) -> None:
    _check(Broker("apache-kafka", apache_kafka.address, apache_kafka.pid), seconds=60)


def _check(broker: Broker, seconds: float) -> None:
    count = round(RATE * seconds)
    found = asyncio.run(_run(broker, count))
    assert found["exit_code"] == 0, found["log"]
    assert found["duplicates"] == 0, found
    assert found["results"] == count, found
    assert not found["reassigned"], found["reassigned"]


async def _run(broker: Broker, count: int) -> dict[str, Any]:
    source, sink = unique("steady-in"), unique("steady-out")
    await create_topics(broker.address, [source, sink])
    worker = WorkerProcess(broker, {"steady.yaml": PIPELINE.format(source=source, sink=sink)})
    worker.start()
    results = Results(broker.address, sink)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.to_thread(worker.wait_ready)
        results.start()
        await send_at_rate(broker.address, source, payload_pool(), 1, count, RATE)
        deadline = loop.time() + 60
        while results.count(1) < count and loop.time() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(3)  # a late second copy would show
    finally:
        results.stop()
        exit_code = worker.stop()
    return {
        "results": results.count(1),
        "duplicates": results.duplicates.get(1, 0),
        "exit_code": exit_code,
        # a rebalance or a refused commit would explain a duplicate: there must be none
        "reassigned": worker.log_lines_matching("assigned", "refused", "revoked")[1:],
        "log": worker.log_tail(20),
    }
