"""Windows on real workers: killed with SIGKILL mid-stream and restarted, or taken over
by a second worker, the final window results equal `sluice replay` on the same input."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.config import load_pipeline
from streams.replay import replay
from streams.runtime.broker import EmbeddedBroker
from tests.integration.conftest import consume_all, create_topics, produce_lines, unique

pytestmark = pytest.mark.integration

BASE_S = 1_795_600_000
PIPELINE = """
pipeline: win-{tag}
source: {{topic: in-{tag}, key: user, timestamp: ts}}
steps:
  - dedupe: {{key: id, within: 1m}}
  - window:
      type: tumbling
      size: 10s
      grace: 2s
      key: user
      aggregates: {{n: count(), total: sum(v), top: max(v), p50: "percentile(v, 0.5)"}}
sink: {{topic: out-{tag}}}
"""


def user_key(line: bytes) -> bytes:
    # produced keyed by user, as a real feed would be: each user's records stay in order
    # in one partition, so per-partition watermarks see no disorder
    return str(orjson.loads(line)["user"]).encode()


def lines(count: int) -> list[bytes]:
    # event time advances 20 ms a record, in order: no late events, in replay or Kafka
    out = []
    for i in range(count):
        out.append(
            orjson.dumps(
                {"id": i, "user": f"u{i % 12}", "v": (i * 7) % 101, "ts": (BASE_S * 1000 + i * 20)}
            )
        )
    out.append(out[5])  # a duplicate the dedupe drops
    return out


async def expected_windows(
    text: str, data: list[bytes], tmp_path: Path
) -> dict[tuple[str, str], Any]:
    (tmp_path / "p.yaml").write_text(text)
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(line + b"\n" for line in data))
    spec = load_pipeline(tmp_path / "p.yaml")
    await replay(spec, str(source), tmp_path / "replay")
    results = [
        orjson.loads(x)
        for x in (tmp_path / "replay" / f"{spec.sink.topic}.jsonl").read_bytes().splitlines()
    ]
    return {(r["user"], r["window_start"]): r for r in results}


async def windows_until(
    broker: EmbeddedBroker, topic: str, expected: dict[Any, Any], timeout: float = 90
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        got = [orjson.loads(m.value) for m in await consume_all(broker, topic, 10**9, timeout=2)]
        if {(r["user"], r["window_start"]) for r in got} >= set(
            expected
        ) or time.monotonic() > deadline:
            return got
        await asyncio.sleep(1)


def check(got: list[dict[str, Any]], expected: dict[tuple[str, str], Any]) -> int:
    """Every window's result equals replay's; returns how many were re-emitted."""
    by_window: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in got:
        by_window[(record["user"], record["window_start"])].append(record)
    assert set(by_window) == set(expected), (
        sorted(set(expected) - set(by_window))[:5],
        sorted(set(by_window) - set(expected))[:5],
    )
    for window, records in by_window.items():
        for record in records:
            assert record == expected[window], (window, record, expected[window])
    return sum(len(r) - 1 for r in by_window.values())


async def test_sigkill_mid_stream_then_restart_gives_replay_results(
    broker: EmbeddedBroker, make_worker: Any, tmp_path: Path
) -> None:
    tag = unique("wk")
    text = PIPELINE.format(tag=tag)
    data = lines(3000)
    expected = await expected_windows(text, data, tmp_path)
    await create_topics(broker, f"in-{tag}")
    first = make_worker({"win": text})
    first.wait_ready()
    await produce_lines(broker, f"in-{tag}", data[:1500], key=user_key)
    # let it process part of the stream, then kill it without warning
    deadline = time.monotonic() + 30
    while first.metric("sluice_events_in_total") < 600 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    first.stop(signal.SIGKILL)
    await produce_lines(broker, f"in-{tag}", data[1500:], key=user_key)
    second = make_worker({"win": text})
    second.wait_ready()
    got = await windows_until(broker, f"out-{tag}", expected)
    reemitted = check(got, expected)
    print(f"windows: {len(expected)}, re-emitted after the kill: {reemitted}")
    assert reemitted <= len(expected)
    assert second.stop() == 0


async def test_two_workers_one_killed_survivor_finishes_the_windows(
    broker: EmbeddedBroker, make_worker: Any, tmp_path: Path
) -> None:
    tag = unique("wt")
    text = PIPELINE.format(tag=tag)
    data = lines(3000)
    expected = await expected_windows(text, data, tmp_path)
    await create_topics(broker, f"in-{tag}")
    one = make_worker({"win": text}, app_id="pair")
    two = make_worker({"win": text}, app_id="pair")
    one.wait_ready()
    two.wait_ready()
    await produce_lines(broker, f"in-{tag}", data[:1500], key=user_key)
    deadline = time.monotonic() + 30
    while (
        one.metric("sluice_events_in_total") + two.metric("sluice_events_in_total") < 1000
        and time.monotonic() < deadline
    ):
        await asyncio.sleep(0.1)
    one.stop(signal.SIGKILL)
    await produce_lines(broker, f"in-{tag}", data[1500:], key=user_key)
    got = await windows_until(broker, f"out-{tag}", expected)
    reemitted = check(got, expected)
    print(f"windows: {len(expected)}, re-emitted after the kill: {reemitted}")
    assert two.stop() == 0


async def test_one_worker_gives_replay_results(
    broker: EmbeddedBroker, make_worker: Any, tmp_path: Path
) -> None:
    tag = unique("w1")
    text = PIPELINE.format(tag=tag)
    data = lines(3000)
    expected = await expected_windows(text, data, tmp_path)
    await create_topics(broker, f"in-{tag}")
    worker = make_worker({"win": text})
    worker.wait_ready()
    await produce_lines(broker, f"in-{tag}", data, key=user_key)
    got = await windows_until(broker, f"out-{tag}", expected)
    assert check(got, expected) == 0
    assert worker.stop() == 0
