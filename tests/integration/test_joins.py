"""A join of two streams on real workers: the joined records equal `sluice replay` of the
same two inputs, on both brokers; on Apache Kafka with exactly_once, a worker killed with
SIGKILL mid-join and a second one taking over give each pair once.

The grace is wider than the input, so no record is late however the worker interleaves
the two topics (replay merges them by event time; a worker reads them as they come)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.config.loader import load_pipeline
from streams.offline import replay
from tests.brokers.apache_kafka import ApacheKafka
from tests.integration.conftest import Broker, consume_all, create_topics, produce_lines, unique

pytestmark = pytest.mark.integration

BASE_MS = 1_795_600_000_000
PIPELINE = """
pipeline: join-{tag}
source: {{topic: orders-{tag}, key: k, timestamp: ts}}
steps:
  - join:
      stream: pay-{tag}
      key: k
      other_key: pk
      within: 3s
      grace: 1h
      fields: {{o: i, p: other.i, k: k}}
sink: {{topic: out-{tag}}}
"""


def streams(count: int) -> tuple[list[bytes], list[bytes]]:
    """Orders and payments over 30 keys; payments up to 5 s after or 2 s before."""
    orders, payments = [], []
    for i in range(count):
        orders.append(orjson.dumps({"i": i, "k": f"k{i % 30}", "ts": BASE_MS + i * 50}))
        shift = ((i * 7919) % 7000) - 2000
        payments.append(
            orjson.dumps(
                {"i": 10_000 + i, "pk": f"k{(i * 3) % 30}", "ts": BASE_MS + i * 50 + shift}
            )
        )
    return orders, payments


async def expected_pairs(text: str, data: dict[str, list[bytes]], tmp_path: Path) -> Counter[Any]:
    (tmp_path / "p.yaml").write_text(text)
    spec = load_pipeline(tmp_path / "p.yaml")
    inputs = {}
    for topic, lines in data.items():
        path = tmp_path / f"{topic}.jsonl"
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        inputs[topic] = str(path)
    await replay(spec, inputs, tmp_path / "replay", max_event_time_skew_ms=10**13)
    out = tmp_path / "replay" / f"{spec.sink.topic}.jsonl"
    return Counter((r["o"], r["p"]) for r in map(orjson.loads, out.read_bytes().splitlines()))


def by_key(field: str) -> Any:
    return lambda line: str(orjson.loads(line)[field]).encode()


async def pairs_until(
    broker: Broker, topic: str, count: int, *, committed: bool = False
) -> Counter[Any]:
    got = await consume_all(broker, topic, count, timeout=90, settle=2, committed=committed)
    return Counter((r["o"], r["p"]) for r in (orjson.loads(m.value) for m in got))


async def until_processed(worker: Any, count: int) -> None:
    deadline = time.monotonic() + 60
    while worker.metric("sluice_events_in_total") < count and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


async def scenario(broker: Broker, tmp_path: Path, prefix: str, count: int) -> tuple[Any, ...]:
    tag = unique(prefix)
    text = PIPELINE.format(tag=tag)
    orders, payments = streams(count)
    expected = await expected_pairs(
        text, {f"orders-{tag}": orders, f"pay-{tag}": payments}, tmp_path
    )
    await create_topics(broker, f"orders-{tag}", f"pay-{tag}")
    return tag, text, orders, payments, expected


async def test_one_worker_gives_replay_joins(
    broker: Broker, make_worker: Any, tmp_path: Path
) -> None:
    tag, text, orders, payments, expected = await scenario(broker, tmp_path, "j1", 600)
    assert sum(expected.values()) > 300  # the scenario joins plenty
    worker = make_worker({"join": text})
    worker.wait_ready()
    await produce_lines(broker, f"orders-{tag}", orders, key=by_key("k"))
    await produce_lines(broker, f"pay-{tag}", payments, key=by_key("pk"))
    got = await pairs_until(broker, f"out-{tag}", sum(expected.values()))
    assert got == expected
    assert worker.stop() == 0


async def test_sigkill_takeover_mid_join_gives_each_pair_once(
    apache_kafka: ApacheKafka, make_worker: Any, tmp_path: Path
) -> None:
    tag, text, orders, payments, expected = await scenario(apache_kafka, tmp_path, "jk", 1000)
    eos = ", guarantee: exactly_once"
    first = make_worker({"join": text}, broker_url=apache_kafka.url, processing=eos)
    first.wait_ready()
    await produce_lines(apache_kafka, f"orders-{tag}", orders[:500], key=by_key("k"))
    await produce_lines(apache_kafka, f"pay-{tag}", payments[:500], key=by_key("pk"))
    await until_processed(first, 900)  # re-keyed and joined records count
    first.stop(signal.SIGKILL)
    await produce_lines(apache_kafka, f"orders-{tag}", orders[500:], key=by_key("k"))
    await produce_lines(apache_kafka, f"pay-{tag}", payments[500:], key=by_key("pk"))
    second = make_worker({"join": text}, broker_url=apache_kafka.url, processing=eos)
    second.wait_ready()
    got = await pairs_until(apache_kafka, f"out-{tag}", sum(expected.values()), committed=True)
    assert got == expected  # every pair, none twice
    assert second.stop() == 0


AGGREGATE = """
pipeline: agg-{tag}
source: {{topic: spend-{tag}, key: user, timestamp: ts}}
steps:
  - aggregate: {{key: user, aggregates: {{n: count(), total: sum(v), top: max(v)}}}}
sink: {{topic: totals-{tag}}}
"""


async def test_running_aggregates_in_a_worker_equal_replay(
    broker: Broker, make_worker: Any, tmp_path: Path
) -> None:
    """Keyed by user (compacted-topic ready): each user's last update equals replay's, and
    there is one update per record."""

    tag = unique("agg")
    text = AGGREGATE.format(tag=tag)
    data = [
        orjson.dumps({"user": f"u{i % 17}", "v": (i * 13) % 97, "ts": BASE_MS + i})
        for i in range(800)
    ]
    (tmp_path / "a.yaml").write_text(text)
    (tmp_path / "a.jsonl").write_bytes(b"".join(line + b"\n" for line in data))
    await replay(load_pipeline(tmp_path / "a.yaml"), str(tmp_path / "a.jsonl"), tmp_path / "ra")
    replayed = [
        orjson.loads(x) for x in (tmp_path / "ra" / f"totals-{tag}.jsonl").read_bytes().splitlines()
    ]
    expected = {r["user"]: r for r in replayed}
    await create_topics(broker, f"spend-{tag}")
    worker = make_worker({"agg": text})
    worker.wait_ready()
    await produce_lines(broker, f"spend-{tag}", data, key=by_key("user"))
    got = await consume_all(broker, f"totals-{tag}", len(data), timeout=90, settle=2)
    assert len(got) == len(data)
    last = {}
    for message in got:  # per partition in order: a key's updates are in order
        record = orjson.loads(message.value)
        assert message.key == record["user"].encode()
        last[record["user"]] = record
    assert last == expected
    assert worker.stop() == 0


async def test_two_workers_share_the_join_and_one_takes_over(
    broker: Broker, make_worker: Any, tmp_path: Path
) -> None:
    """Two members split the partitions of both stage topics (co-partitioned: the range
    assignor); one killed mid-stream, the survivor's output has every pair replay has and
    no other (at-least-once: some may come twice)."""
    tag, text, orders, payments, expected = await scenario(broker, tmp_path, "j2", 800)
    one = make_worker({"join": text}, app_id="pair")
    two = make_worker({"join": text}, app_id="pair")
    one.wait_ready()
    two.wait_ready()
    await produce_lines(broker, f"orders-{tag}", orders[:400], key=by_key("k"))
    await produce_lines(broker, f"pay-{tag}", payments[:400], key=by_key("pk"))
    deadline = time.monotonic() + 60
    while (
        one.metric("sluice_events_in_total") + two.metric("sluice_events_in_total") < 700
        and time.monotonic() < deadline
    ):
        await asyncio.sleep(0.1)
    assert one.metric("sluice_events_in_total") > 0 < two.metric("sluice_events_in_total")
    one.stop(signal.SIGKILL)
    await produce_lines(broker, f"orders-{tag}", orders[400:], key=by_key("k"))
    await produce_lines(broker, f"pay-{tag}", payments[400:], key=by_key("pk"))
    got = await pairs_until(broker, f"out-{tag}", sum(expected.values()))
    assert set(got) == set(expected)
    assert two.stop() == 0
