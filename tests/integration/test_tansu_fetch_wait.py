"""The worker keeps reading a partition of many record batches on the embedded broker
(issue 22, case 9: why `make run` stopped for good).

tansu lists every batch of a partition on each fetch and stops listing once the fetch's
max wait has passed; a consumer at the tail then gets no records, on every retry
(bench/tansu_fetch_wait.py). The worker fetched with a 10 ms wait. Here a worker reads a
one-partition topic while single-record batches pile up in it, until the broker is seen
answering a 10 ms fetch at the tail with nothing (the condition, checked, whatever the
machine's speed), and then to twice that; the worker must still read every record.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest
from confluent_kafka import Producer

from streams.runtime.broker import EmbeddedBroker
from tests.integration.conftest import create_topics, unique
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

PIPELINE = """
pipeline: tail-{tag}
source: {{topic: src-{tag}}}
steps:
  - filter: "n >= 0"
sink: {{topic: out-{tag}}}
"""
MOST = 40_000  # single-record batches; listing them takes far more than 10 ms anywhere


async def tail_answers(address: str, topic: str, wait_ms: int) -> bool:
    """Whether a fetch of the partition's last record, with this max wait, returns it."""
    client = AIOKafkaClient(bootstrap_servers=address, request_timeout_ms=30_000)
    try:
        await client.bootstrap()
        await client.force_metadata_update()
        node = next(iter(client.cluster.brokers())).nodeId
        probe = await client.send(node, FetchRequest(10, 1, 1, 0, [(topic, [(0, 0, 1)])]))
        end = int(probe.topics[0][1][0][2])
        wanted = [(topic, [(0, end - 1, 1 << 20)])]
        response = await client.send(node, FetchRequest(wait_ms, 1, 1 << 20, 1, wanted))
        return bool(response.topics and response.topics[0][1][0][-1])
    finally:
        await client.close()


@pytest.mark.timeout(240)
def test_the_worker_reads_the_tail_of_a_partition_the_broker_lists_slowly(
    tansu: EmbeddedBroker, make_worker: Any
) -> None:
    tag = unique("tail")
    source = f"src-{tag}"
    asyncio.run(create_topics(tansu, source, partitions=1))
    worker = make_worker({"tail": PIPELINE.format(tag=tag)}, broker_url=tansu.url)
    worker.wait_ready()
    producer = Producer(
        {"bootstrap.servers": tansu.address, "linger.ms": 0, "batch.num.messages": 1}
    )
    sent = 0
    began = time.monotonic()

    def more(count: int) -> None:
        nonlocal sent
        for _ in range(count):
            producer.produce(source, orjson.dumps({"n": sent}), partition=0)
            sent += 1
        producer.flush()

    # a batch per record, until a 10 ms fetch at the tail comes back empty 3 times running
    while sent < MOST:
        more(2_000)
        if not any(asyncio.run(tail_answers(tansu.address, source, 10)) for _ in range(3)):
            break
    else:
        raise AssertionError(f"a 10 ms fetch still answered at {sent} batches")
    empty_from = sent
    # then twice as many: a 10 ms wait (the worker's before) then does not list to the
    # tail, whatever the machine's load does meanwhile; 100 ms has 10 times the time
    more(empty_from)
    seconds = time.monotonic() - began
    print(f"10 ms fetches at the tail empty from {empty_from} batches; {sent} in {seconds:.0f}s")
    wait_until(
        lambda: worker.metric("sluice_events_in_total") >= sent,
        90,
        f"the worker reads all {sent} records (read {worker.metric('sluice_events_in_total')})",
    )
    assert worker.metric("sluice_events_in_total") == sent
    assert worker.stop() == 0
