"""Steady state without a fault (issue 18): minutes of traffic at a steady rate through a
worker with the shipped settings, and every result arrives exactly once — at-least-once
allows a second copy after a failure, never in a fault-free run."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.runtime.bench_latency import PIPELINE, Results, payload_pool, send_at_rate
from streams.runtime.bench_support import Broker, WorkerProcess, create_topics, unique
from streams.runtime.broker import EmbeddedBroker

pytestmark = pytest.mark.integration

RATE = 2_000.0
SECONDS = 150.0


@pytest.mark.timeout(420)
def test_minutes_of_fault_free_traffic_give_every_result_exactly_once(
    broker: EmbeddedBroker,
) -> None:
    assert broker.process is not None
    target = Broker("tansu", broker.address, broker.process.pid)
    found = asyncio.run(_run(target))
    count = round(RATE * SECONDS)
    assert found["exit_code"] == 0, found["log"]
    assert found["duplicates"] == 0, found
    assert found["results"] == count, found
    assert not found["restarts"], found["restarts"]


async def _run(broker: Broker) -> dict[str, Any]:
    source, sink = unique("steady-in"), unique("steady-out")
    await create_topics(broker.address, [source, sink])
    worker = WorkerProcess(broker, {"steady.yaml": PIPELINE.format(source=source, sink=sink)})
    worker.start()
    results = Results(broker.address, sink)
    count = round(RATE * SECONDS)
    try:
        await asyncio.to_thread(worker.wait_ready)
        results.start()
        await send_at_rate(broker.address, source, payload_pool(), 1, count, RATE)
        deadline = asyncio.get_running_loop().time() + 60
        while results.count(1) < count and asyncio.get_running_loop().time() < deadline:
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
        "restarts": worker.log_lines_matching("assigned", "refused", "rebalanc")[1:],
        "log": worker.log_tail(20),
    }
