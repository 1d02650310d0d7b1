"""Windows on real workers: killed with SIGKILL mid-stream and restarted, or taken over
by a second worker, the final window results equal `sluice replay` on the same input."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.config.loader import load_pipeline
from streams.offline import replay
from tests.integration.conftest import Broker, consume_all, create_topics, produce_lines, unique

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
    broker: Broker, topic: str, expected: dict[Any, Any], timeout: float = 90
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


@dataclass
class Scenario:
    """3,000 records of 12 users (and a duplicate) on a fresh topic, with the windows
    `sluice replay` computes from them."""

    tag: str
    text: str
    data: list[bytes]
    expected: dict[tuple[str, str], Any]

    @property
    def source(self) -> str:
        return f"in-{self.tag}"

    async def produce(self, broker: Broker, part: slice) -> None:
        await produce_lines(broker, self.source, self.data[part], key=user_key)

    async def check_results(self, broker: Broker) -> int:
        """The sink's windows equal replay's; returns how many were re-emitted."""
        got = await windows_until(broker, f"out-{self.tag}", self.expected)
        reemitted = check(got, self.expected)
        print(f"windows: {len(self.expected)}, re-emitted: {reemitted}")
        return reemitted


async def scenario(broker: Broker, tmp_path: Path, prefix: str) -> Scenario:
    tag = unique(prefix)
    text = PIPELINE.format(tag=tag)
    data = lines(3000)
    expected = await expected_windows(text, data, tmp_path)
    await create_topics(broker, f"in-{tag}")
    return Scenario(tag, text, data, expected)


async def until_processed(workers: list[Any], count: int) -> None:
    deadline = time.monotonic() + 30
    while (
        sum(w.metric("sluice_events_in_total") for w in workers) < count
        and time.monotonic() < deadline
    ):
        await asyncio.sleep(0.1)


async def test_sigkill_mid_stream_then_restart_gives_replay_results(
    broker: Broker, make_worker: Any, tmp_path: Path
) -> None:
    run = await scenario(broker, tmp_path, "wk")
    first = make_worker({"win": run.text})
    first.wait_ready()
    await run.produce(broker, slice(0, 1500))
    # let it process part of the stream, then kill it without warning
    await until_processed([first], 600)
    first.stop(signal.SIGKILL)
    await run.produce(broker, slice(1500, None))
    second = make_worker({"win": run.text})
    second.wait_ready()
    assert await run.check_results(broker) <= len(run.expected)
    assert second.stop() == 0


async def test_two_workers_one_killed_survivor_finishes_the_windows(
    broker: Broker, make_worker: Any, tmp_path: Path
) -> None:
    run = await scenario(broker, tmp_path, "wt")
    one = make_worker({"win": run.text}, app_id="pair")
    two = make_worker({"win": run.text}, app_id="pair")
    one.wait_ready()
    two.wait_ready()
    await run.produce(broker, slice(0, 1500))
    await until_processed([one, two], 1000)
    one.stop(signal.SIGKILL)
    await run.produce(broker, slice(1500, None))
    await run.check_results(broker)  # every window right; re-emitted ones are reported
    assert two.stop() == 0


async def test_one_worker_gives_replay_results(
    broker: Broker, make_worker: Any, tmp_path: Path
) -> None:
    run = await scenario(broker, tmp_path, "w1")
    worker = make_worker({"win": run.text})
    worker.wait_ready()
    await run.produce(broker, slice(None))
    assert await run.check_results(broker) == 0
    assert worker.stop() == 0
