"""Takeover after SIGKILL, repeated: two workers of one group run a windowed pipeline while
a steady stream is produced; one of them is killed at a random moment (or while a third
joins, mid-rebalance); the survivors finish. The final windows must equal replay's on
the same input — identical re-sent results are allowed (at-least-once), a window with
other values is not (issue 19).

A round is described by its seed; `python -m tests.stress` runs many rounds and prints
the seed of every round that was not exact, so it can be run again alone.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import murmur2

from streams.config.loader import load_pipeline
from streams.offline import replay
from streams.runtime.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
SLUICE = Path(sys.executable).parent / "sluice"
PARTITIONS = 4
BASE_MS = 1_764_000_000_000
STEP_MS = 80  # 30,000 events span 40 minutes of event time

PIPELINE = """
pipeline: takeover-{tag}
source: {{topic: events-{tag}, timestamp: ts{key}}}
steps:
  - window:
      type: tumbling
      size: 1m
      grace: 30s
      key: user
      emit: final
      aggregates:
        n: count()
        total: sum(amount)
        mean: avg(amount)
        low: min(amount)
        high: max(amount)
        p90: "percentile(amount, 0.9)"
        kinds: count_distinct(kind)
sink: {{topic: windows-{tag}}}
"""
STATELESS = """
pipeline: takeover-{tag}
source: {{topic: events-{tag}, timestamp: ts{key}}}
steps:
  - filter: "amount > 20"
  - map: {{id: id, user: user, cents: "ROUND(amount * 100)", kind: kind}}
sink: {{topic: windows-{tag}}}
"""


@dataclass
class Plan:
    """What happens in one round."""

    seed: int
    keyed: bool  # source.key: user (a repartition stage) or not (messages keyed by user)
    events: int
    victim: int  # which of the two workers is killed
    kill_after_s: float  # after produce starts
    mid_rebalance: bool  # a third worker joins just before the kill
    stateless: bool = False  # a filter and a map instead of the window
    exactly_once: bool = False  # processing.guarantee; results read read_committed

    @classmethod
    def from_seed(
        cls,
        seed: int,
        keyed: bool,
        events: int = 30_000,
        *,
        stateless: bool = False,
        exactly_once: bool = False,
    ) -> Plan:
        rng = random.Random(seed)
        return cls(
            seed=seed,
            keyed=keyed,
            events=events,
            victim=rng.randrange(2),
            kill_after_s=round(rng.uniform(1.0, events / 2500 * 0.8), 2),
            mid_rebalance=rng.random() < 0.3,
            stateless=stateless,
            exactly_once=exactly_once,
        )

    @property
    def text(self) -> str:
        return STATELESS if self.stateless else PIPELINE


@dataclass
class Report:
    plan: Plan
    windows: int = 0
    missing: list[Any] = field(default_factory=list)
    extra: list[Any] = field(default_factory=list)
    wrong: list[Any] = field(default_factory=list)
    resent: int = 0
    seconds: float = 0.0
    error: str | None = None
    logs: str | None = None  # kept when the round was not exact
    fenced: bool = False  # zombie rounds, exactly_once: the zombie logged that it was fenced

    @property
    def exact(self) -> bool:
        return self.error is None and not (self.missing or self.extra or self.wrong)

    def line(self) -> str:
        plan = self.plan
        kind = "stateless" if plan.stateless else "windows"
        what = (
            f"seed {plan.seed} {kind} {'keyed' if plan.keyed else 'unkeyed'}"
            f"{' exactly_once' if plan.exactly_once else ''}: kill worker "
            f"{plan.victim} at {plan.kill_after_s}s{' mid-rebalance' if plan.mid_rebalance else ''}"
        )
        logs = f" (logs in {self.logs})" if self.logs else ""
        if self.error:
            return f"{what}: ERROR {self.error}{logs}"
        verdict = "exact" if self.exact else "NOT EXACT"
        detail = (
            f"; missing {len(self.missing)}, extra {len(self.extra)}, wrong {len(self.wrong)}"
            f" e.g. {(self.wrong or self.missing or self.extra)[:2]}"
            if not self.exact
            else ""
        )
        return (
            f"{what}: {verdict} — {self.windows} results, {self.resent} re-sent identically, "
            f"{self.seconds:.0f}s{detail}{logs}"
        )


def events(seed: int, count: int, users: int = 60) -> list[bytes]:
    """`count` events of `users` users, event time advancing 80 ms a record with up to
    20 s of disorder (less than the 30 s grace: nothing is late, in replay or Kafka)."""
    rng = random.Random(seed)
    lines = []
    for i in range(count):
        ts = BASE_MS + i * STEP_MS - rng.randrange(0, 19_900)
        lines.append(
            orjson.dumps(
                {
                    "id": i,
                    "user": f"user{rng.randrange(users):02d}",
                    "amount": round(rng.uniform(1, 200), 2),
                    "kind": rng.choice("abcdefgh"),
                    "ts": ts,
                }
            )
        )
    return lines


def closers(count: int, partitions: int = PARTITIONS) -> list[bytes]:
    """One record per partition far ahead in event time: every partition's watermark
    passes every window of the data, so the last windows close without waiting for the
    wall clock. Their own windows are left out of the comparison."""
    ts = BASE_MS + count * STEP_MS + 10 * 60_000
    found: dict[int, bytes] = {}
    n = 0
    while len(found) < partitions:
        user = f"closer{n}"
        partition = (murmur2(user.encode()) & 0x7FFFFFFF) % partitions
        found.setdefault(
            partition,
            orjson.dumps({"id": -1, "user": user, "amount": 0, "kind": "z", "ts": ts}),
        )
        n += 1
    return list(found.values())


def identity(record: dict[str, Any]) -> Any:
    """What names one result: a window, or an input record's id (stateless)."""
    if "window_start" in record:
        return (record["user"], record["window_start"])
    return record["id"]


async def expected_results(text: str, lines: list[bytes], folder: Path) -> dict[Any, Any]:
    (folder / "p.yaml").write_text(text)
    source = folder / "in.jsonl"
    source.write_bytes(b"".join(line + b"\n" for line in lines))
    spec = load_pipeline(folder / "p.yaml")
    await replay(spec, str(source), folder / "replay")
    assert spec.sink.topic is not None
    results = (folder / "replay" / f"{spec.sink.topic}.jsonl").read_bytes().splitlines()
    found = {}
    for line in results:
        record = orjson.loads(line)
        if not record["user"].startswith("closer"):
            found[identity(record)] = record
    return found


class _Worker:
    def __init__(
        self,
        folder: Path,
        broker_url: str,
        app_id: str,
        text: str,
        name: str,
        guarantee: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.folder = folder / name
        (self.folder / "pipelines").mkdir(parents=True)
        self.port = free_port()
        (self.folder / "sluice.yaml").write_text(
            f"app_id: {app_id}\nbrokers: ['{broker_url}']\nweb: {{port: {self.port}}}\n"
            f"log: {{format: json, level: INFO}}\nprocessing: {{guarantee: {guarantee}}}\n"
        )
        (self.folder / "pipelines" / "p.yaml").write_text(text)
        self.log = (folder / f"{name}.log").open("wb")
        self.process = subprocess.Popen(
            [str(SLUICE), "worker", "--config", str(self.folder)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            start_new_session=True,
        )

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


async def _ready(worker: _Worker, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            raise RuntimeError(f"worker exited {worker.process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError("worker not ready in time")


async def _collect(
    address: str, topic: str, expected: dict[Any, Any], timeout: float, *, committed: bool
) -> list[dict[str, Any]]:
    """Every result on `topic` until each expected one has arrived and 3 s passed
    without anything new, or `timeout`; `committed`: results of committed transactions
    only (read_committed)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=address,
        auto_offset_reset="earliest",
        group_id=None,
        isolation_level="read_committed" if committed else "read_uncommitted",
    )
    await consumer.start()
    got: list[dict[str, Any]] = []
    seen: set[Any] = set()
    quiet_since = time.monotonic()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for records in batches.values():
                for record in records:
                    value = orjson.loads(record.value)
                    got.append(value)
                    seen.add(identity(value))
                quiet_since = time.monotonic()
            if seen >= set(expected) and time.monotonic() - quiet_since > 3:
                break
    finally:
        await consumer.stop()
    return got


def compare(report: Report, got: list[dict[str, Any]], expected: dict[Any, Any]) -> None:
    by_window: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for record in got:
        if not record["user"].startswith("closer"):
            by_window[identity(record)].append(record)
    report.windows = len(expected)
    report.missing = sorted(set(expected) - set(by_window))
    report.extra = sorted(set(by_window) - set(expected))
    for window, records in by_window.items():
        if window not in expected:
            continue
        for record in records:
            if record != expected[window]:
                report.wrong.append({"window": window, "got": record, "want": expected[window]})
                break
        report.resent += len(records) - 1


async def run_round(broker_url: str, plan: Plan, folder: Path | None = None) -> Report:
    """One round on a fresh topic with fresh workers; never raises (errors are reported)."""
    report = Report(plan)
    began = time.monotonic()
    address = broker_url.removeprefix("kafka://")
    tag = uuid.uuid4().hex[:8]
    text = plan.text.format(tag=tag, key=", key: user" if plan.keyed else "")
    guarantee = "exactly_once" if plan.exactly_once else "at_least_once"
    workdir = folder or Path(tempfile.mkdtemp(prefix="sluice-stress-"))
    workers: list[_Worker] = []
    try:
        data = events(plan.seed, plan.events)
        expected = await expected_results(text, [*data, *closers(plan.events)], workdir)
        admin = AIOKafkaAdminClient(bootstrap_servers=address)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(f"events-{tag}", PARTITIONS, 1)])
        finally:
            await admin.close()
        app_id = f"stress_{tag}"
        workers = [_Worker(workdir, broker_url, app_id, text, f"w{i}", guarantee) for i in range(2)]
        for worker in workers:
            await _ready(worker)
        source = workdir / "events.jsonl"
        source.write_bytes(b"".join(line + b"\n" for line in data))
        producer = subprocess.Popen(  # the real client path
            [
                str(SLUICE),
                "produce",
                f"events-{tag}",
                "--input",
                str(source),
                "--key",
                "user",
                "--rate",
                "2500",
            ],
            env={**os.environ, "SLUICE_BROKERS": broker_url},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if plan.mid_rebalance:
            await asyncio.sleep(max(0.0, plan.kill_after_s - 1.0))
            workers.append(_Worker(workdir, broker_url, app_id, text, "w2", guarantee))
            await asyncio.sleep(min(1.0, plan.kill_after_s))
        else:
            await asyncio.sleep(plan.kill_after_s)
        workers[plan.victim].kill()
        code = await asyncio.to_thread(producer.wait, 120)
        if code != 0:
            raise RuntimeError(f"sluice produce exited {code}")
        closing = workdir / "closers.jsonl"
        closing.write_bytes(b"".join(line + b"\n" for line in closers(plan.events)))
        for attempt in range(3):  # closers only move watermarks: sending one twice is harmless
            command = ["produce", f"events-{tag}", "--input", str(closing), "--key", "user"]
            closed = subprocess.run(
                [str(SLUICE), *command],
                env={**os.environ, "SLUICE_BROKERS": broker_url},
                capture_output=True,
                check=False,
            )
            if closed.returncode == 0:
                break
            if attempt == 2:
                raise RuntimeError(f"sluice produce (closers): {closed.stderr.decode()[-500:]}")
        got = await _collect(
            address, f"windows-{tag}", expected, timeout=120, committed=plan.exactly_once
        )
        compare(report, got, expected)
        if plan.exactly_once and report.resent:
            report.error = f"{report.resent} results seen twice with exactly_once"
    except Exception as exc:
        report.error = f"{type(exc).__name__}: {exc}"
    finally:
        for worker in workers:
            worker.stop()
        report.seconds = time.monotonic() - began
    if not report.exact:
        report.logs = str(workdir)
    return report
