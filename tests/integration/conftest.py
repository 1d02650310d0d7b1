"""Real brokers for the session — tansu (the embedded broker) and Apache Kafka 3.9.1 —
and workers as real subprocesses.

`broker` is parametrised over both: a test that takes it runs once on each (ids `tansu`
and `kafka`). `tansu` alone is for what only concerns sluice's own side (the dashboard,
the embedded broker of `sluice run`); `apache_kafka` alone for what tansu cannot do
(security, transactions, a broker restarted with its data)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.runtime.broker import EmbeddedBroker, free_port

ROOT = Path(__file__).resolve().parents[2]
SLUICE = Path(sys.executable).parent / "sluice"


class Broker(Protocol):
    """What the tests need of a broker: its PLAINTEXT address."""

    @property
    def url(self) -> str: ...  # kafka://127.0.0.1:PORT

    @property
    def address(self) -> str: ...  # 127.0.0.1:PORT


@pytest.fixture(scope="session")
def tansu() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture(scope="session", params=["tansu", "kafka"])
def broker(request: pytest.FixtureRequest) -> Broker:
    """Each broker in turn (pytest groups the tests by it)."""
    name = "tansu" if request.param == "tansu" else "apache_kafka"
    found: Broker = request.getfixturevalue(name)
    return found


def http_get(port: int, path: str, token: str | None = None) -> tuple[int, Any]:
    """GET a worker endpoint: (status, JSON body or text)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            body, status = response.read(), response.status
    except urllib.error.HTTPError as error:
        body, status = error.read(), error.code
    try:
        return status, orjson.loads(body)
    except orjson.JSONDecodeError:
        return status, body.decode()


class Worker:
    """`sluice worker` in a subprocess, with its own config directory and web port."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log_path = log
        self.web_port = int(orjson.loads((config / "port.json").read_bytes()))
        self.process: subprocess.Popen[bytes] | None = None
        self.extra_path: str | None = None  # put first on the worker's PYTHONPATH

    def start(self) -> Worker:
        self.log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(SLUICE), "worker", "--config", str(self.config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=self.config.parent,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join(p for p in (self.extra_path, str(ROOT)) if p),
            },
        )
        return self

    def get(self, path: str) -> tuple[int, Any]:
        return http_get(self.web_port, path)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited {self.process.returncode}:\n{self.output()}")
            try:
                status, _ = self.get("/ready")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"worker not ready in {timeout}s:\n{self.output()}")

    def metric(self, name: str) -> float:
        _, text = self.get("/metrics")
        total = 0.0
        for line in str(text).splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(10)
        self.log.close()
        return code

    def output(self, limit: int | None = 5000) -> str:
        """The worker's log: its last `limit` characters (None: all of it)."""
        text = self.log_path.read_text(errors="replace")
        return text if limit is None else text[-limit:]


@pytest.fixture
def make_worker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """make_worker({name: pipeline_yaml}, app_id=...) -> a configured, started Worker."""
    started: list[Worker] = []
    app_ids: dict[str, str] = {}

    def make(
        pipelines: dict[str, str],
        app_id: str = "app",
        start: bool = True,
        extra: str = "",
        broker_url: str | None = None,
        token: str | None = None,
        processing: str = "",
    ) -> Worker:
        real_id = app_ids.setdefault(app_id, f"t{uuid.uuid4().hex[:10]}")
        config = tmp_path / f"config-{len(started)}"
        (config / "pipelines").mkdir(parents=True)
        port = free_port()
        (config / "port.json").write_text(str(port))
        (config / "sluice.yaml").write_text(
            f"app_id: {real_id}\nbrokers: ['{broker_url or _broker(request).url}']\n"
            f"web: {{port: {port}{f', token: {token}' if token else ''}}}\n"
            "log: {format: json, level: INFO}\n"
            f"processing: {{batch_max: 200, batch_within_ms: 20, partitions: 4{processing}}}\n"
            + extra
        )
        for name, text in pipelines.items():
            (config / "pipelines" / f"{name}.yaml").write_text(text)
        worker = Worker(config, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        if start:
            worker.start()
        return worker

    yield make
    for worker in started:
        if worker.process is not None and worker.process.poll() is None:
            worker.stop(signal.SIGKILL)


def _broker(request: pytest.FixtureRequest) -> Broker:
    """The test's `broker` (a test that starts workers without naming a broker URL takes
    the `broker` fixture, so it runs on each broker)."""
    found: Broker = request.getfixturevalue("broker")
    return found


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def create_topics(broker: Broker, *topics: str, partitions: int = 4) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.address)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
    finally:
        await admin.close()


async def produce_lines(broker: Broker, topic: str, lines: list[bytes], key: Any = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.address, linger_ms=5)
    await producer.start()
    try:
        futures = []
        for line in lines:
            futures.append(await producer.send(topic, line, key=key(line) if key else None))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def consume_all(
    broker: Broker,
    topic: str,
    expected: int,
    timeout: float = 60,
    settle: float = 1.0,
    *,
    committed: bool = False,
) -> list[Any]:
    """Messages of `topic` from the start until `expected` arrived (then `settle` more
    seconds, to catch duplicates or extras), or `timeout`. `committed`: only those of
    committed transactions (read_committed)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.address,
        auto_offset_reset="earliest",
        group_id=None,
        isolation_level="read_committed" if committed else "read_uncommitted",
    )
    await consumer.start()
    messages: list[Any] = []
    try:
        deadline = time.monotonic() + timeout
        settle_until = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                messages.extend(records)
            if len(messages) >= expected and settle_until is None:
                settle_until = time.monotonic() + settle
            if settle_until is not None and time.monotonic() >= settle_until:
                break
    finally:
        await consumer.stop()
    return messages
