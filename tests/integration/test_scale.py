"""Scale out and in under load (issue 14): on Apache Kafka with 8 partitions, a steady
stream through a windowed and a stateless pipeline while workers go 1 → 3 → 1 (two
started, then SIGTERM to both). Every result equals replay's — at-least-once as a set,
exactly-once exactly, read read_committed — and the longest pause in the stateless
output (the rebalances' cost) is measured."""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.brokers.apache_kafka import ApacheKafka
from tests.integration.conftest import unique
from tests.stress.takeover import closers, events, expected_results, identity
from tests.waiting import eventually

pytestmark = pytest.mark.integration

PARTITIONS = 8
RATE = 1000  # records a second
SECONDS = 36
WINDOWS = """
pipeline: scale-windows-{tag}
source: {{topic: events-{tag}, key: user, timestamp: ts}}
steps:
  - window:
      type: tumbling
      size: 1m
      grace: 30s
      key: user
      aggregates: {{n: count(), total: sum(amount), high: max(amount), kinds: count_distinct(kind)}}
sink: {{topic: windows-{tag}}}
"""
STATELESS = """
pipeline: scale-stateless-{tag}
source: {{topic: events-{tag}, timestamp: ts}}
steps:
  - filter: "amount > 20"
  - map: {{id: id, user: user, cents: "ROUND(amount * 100)", kind: kind}}
sink: {{topic: stateless-{tag}}}
"""


async def produce_steadily(address: str, topic: str, lines: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=address, linger_ms=5)
    await producer.start()
    began = time.monotonic()
    try:
        pending = []
        for sent, line in enumerate(lines, 1):
            user = orjson.loads(line)["user"].encode()
            pending.append(await producer.send(topic, line, key=user))
            ahead = sent / RATE - (time.monotonic() - began)
            if ahead > 0.002:
                await asyncio.sleep(ahead)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def read_with_arrival(
    address: str,
    topic: str,
    stop: asyncio.Event,
    committed: bool,
    got: list[tuple[float, dict[str, Any]]],
) -> None:
    """Every record of `topic` with the time it arrived, into `got`, until `stop`."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=address,
        auto_offset_reset="earliest",
        group_id=None,
        isolation_level="read_committed" if committed else "read_uncommitted",
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            now = time.monotonic()
            got += [(now, orjson.loads(m.value)) for ms in batches.values() for m in ms]
    finally:
        await consumer.stop()


def worked(worker: Any) -> bool:
    return bool(worker.metric("sluice_events_in_total") > 0)


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_workers_joining_and_leaving_under_load_keep_results_right(
    apache_kafka: ApacheKafka, make_worker: Any, tmp_path: Path, guarantee: str
) -> None:
    kafka = apache_kafka
    tag = unique("scale")
    texts = {"windows": WINDOWS.format(tag=tag), "stateless": STATELESS.format(tag=tag)}
    data = events(11, RATE * SECONDS, users=80)
    expected = {}
    for name, text in texts.items():
        (tmp_path / name).mkdir()
        expected[name] = await expected_results(
            text, [*data, *closers(len(data), PARTITIONS)], tmp_path / name
        )
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.address)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"events-{tag}", PARTITIONS, 1)])
    finally:
        await admin.close()
    exactly_once = guarantee == "exactly_once"
    options = {
        "app_id": "scale",
        "broker_url": kafka.url,
        "processing": f", guarantee: {guarantee}",
    }
    first = make_worker(texts, **options)
    first.wait_ready(90)

    stop = asyncio.Event()
    arrived: dict[str, list[tuple[float, dict[str, Any]]]] = {"windows": [], "stateless": []}
    readers = [
        asyncio.create_task(
            read_with_arrival(kafka.address, f"{name}-{tag}", stop, exactly_once, arrived[name])
        )
        for name in arrived
    ]
    producing = asyncio.create_task(produce_steadily(kafka.address, f"events-{tag}", data))
    began = time.monotonic()
    await asyncio.sleep(SECONDS * 0.25)
    more = [make_worker(texts, **options) for _ in range(2)]  # 1 -> 3
    for worker in more:  # each of them took partitions over and worked while records came
        # (not a fixed sleep: on a loaded machine a worker takes seconds to start)
        await eventually(
            functools.partial(worked, worker),
            SECONDS * 0.7,
            "a joining worker processed records",
            interval=1,
        )
    for worker in more:  # 3 -> 1
        assert worker.stop() == 0, worker.output()
    await producing
    closing = AIOKafkaProducer(bootstrap_servers=kafka.address)
    await closing.start()
    for line in closers(len(data), PARTITIONS):
        await closing.send_and_wait(f"events-{tag}", line, key=orjson.loads(line)["user"].encode())
    await closing.stop()

    def complete() -> bool:
        return all(
            set(want) <= {identity(value) for _, value in arrived[name]}
            for name, want in expected.items()
        )

    await eventually(complete, 90, "every result arrives", interval=1)
    await asyncio.sleep(3)  # anything sent twice would arrive by now
    stop.set()
    await asyncio.gather(*readers)
    assert first.stop() == 0

    for name, want in expected.items():
        got = [v for _, v in arrived[name] if not str(v.get("user")).startswith("closer")]
        seen = Counter(identity(value) for value in got)
        missing = set(want) - set(seen)
        assert not missing, (name, len(missing), sorted(missing)[:5])
        wrong = [v for v in got if v != want.get(identity(v))]
        assert not wrong, (name, wrong[:3])
        if exactly_once:
            assert max(seen.values()) == 1, (name, [k for k, n in seen.items() if n > 1][:5])
    times = sorted(t for t, _ in arrived["stateless"] if t < began + SECONDS)
    gap = max(b - a for a, b in itertools.pairwise(times))
    print(f"{guarantee}: longest pause in the stateless output {gap:.2f}s")
    assert gap < 30
