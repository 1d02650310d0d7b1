"""Partitions added to a running worker's source topic (issue 22 case 5), on Apache Kafka:
a stateless pipeline reads the new partitions within seconds and reports their lag; a
stateful one, whose state can no longer be co-partitioned with its input, stops with one
line naming the topics, their counts and what to do, and exit 70 (before: new partitions
unread for 5 minutes; after a restart, exit 0 after 40 s with the cause never logged)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from tests.integration.conftest import Broker, consume_all, create_topics, unique
from tests.waiting import eventually

pytestmark = pytest.mark.integration

STATELESS = """
pipeline: pass
source: {{topic: {source}}}
steps:
  - filter: "n >= 0"
sink: {{topic: {sink}}}
"""

STATEFUL = """
pipeline: count
source: {{topic: {source}, timestamp: ts}}
steps:
  - window: {{type: tumbling, size: 10s, key: user, aggregates: {{n: count()}}}}
sink: {{topic: {sink}}}
"""


async def add_partitions(broker: Broker, topic: str, total: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.address)
    await admin.start()
    try:
        await admin.create_partitions({topic: NewPartitions(total_count=total)})
    finally:
        await admin.close()


async def produce_to(broker: Broker, topic: str, records: list[tuple[int, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.address)
    await producer.start()
    try:
        for partition, value in records:
            await producer.send_and_wait(topic, value, key=b"k", partition=partition)
    finally:
        await producer.stop()


async def test_a_stateless_pipeline_reads_partitions_added_while_it_runs(
    apache_kafka: Broker, make_worker: Any
) -> None:
    tag = unique("grow")
    source, sink = f"in-{tag}", f"out-{tag}"
    await create_topics(apache_kafka, source, partitions=2)
    worker = make_worker(
        {"pass": STATELESS.format(source=source, sink=sink)}, broker_url=apache_kafka.url
    )
    worker.wait_ready()
    await add_partitions(apache_kafka, source, 4)
    # new partitions' lag is reported once they are assigned (metadata refresh 5 s)
    picked_up = await eventually(
        lambda: (
            f'sluice_consumer_lag{{partition="3",topic="{source}"}}'
            in str(worker.get("/metrics")[1])
        ),
        30,
        "partition 3 of the source in sluice_consumer_lag",
    )
    await produce_to(apache_kafka, source, [(p, orjson.dumps({"n": p})) for p in (0, 1, 2, 3)])
    got = await consume_all(apache_kafka, sink, 4, timeout=30)
    assert sorted(orjson.loads(m.value)["n"] for m in got) == [0, 1, 2, 3]
    print(f"new partitions assigned {picked_up:.1f}s after they were added")
    assert worker.get("/ready")[0] == 200
    assert worker.stop() == 0


async def test_a_stateful_pipeline_stops_when_its_input_outgrows_its_state(
    apache_kafka: Broker, make_worker: Any
) -> None:
    tag = unique("grows")
    source, sink = f"in-{tag}", f"out-{tag}"
    await create_topics(apache_kafka, source, partitions=2)
    worker = make_worker(
        {"count": STATEFUL.format(source=source, sink=sink)}, broker_url=apache_kafka.url
    )
    worker.wait_ready()
    await add_partitions(apache_kafka, source, 3)
    assert worker.process is not None
    code = await asyncio.to_thread(worker.process.wait, 60)
    output = worker.output(None)
    assert code == 70, output
    line = f"its input {source} has 3 partitions, but its state's changelog "
    assert output.count(line) == 1, output  # once, with the counts and what to do
    assert "-count.window-changelog has 2: " in output and "reset-offsets" in output, output
    assert "Traceback" not in output
    # restarted, it says the same at start instead of waiting on partitions that do not exist
    again = make_worker(
        {"count": STATEFUL.format(source=source, sink=sink)},
        start=False,
        broker_url=apache_kafka.url,
    )
    again.config = worker.config
    again.start()
    assert again.process is not None
    assert await asyncio.to_thread(again.process.wait, 60) == 70
    assert f"its input {source} has 3 partitions" in again.output(None)
