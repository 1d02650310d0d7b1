"""What the Kafka benchmarks share: the broker (tansu or Apache Kafka), a `sluice worker`
subprocess with a generated config directory, /metrics read back, CPU and memory of a
process, the machine a figure was measured on, and progress lines.

The machine is small and shared (2 cores), so every figure travels with the load average
at the time (`machine()`), and contenders report the CPU seconds they used: CPU per event
moves less with a neighbour's load than events per second do.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml

from streams.runtime.broker import EmbeddedBroker, free_port

ROOT = Path(__file__).resolve().parents[1]  # the checkout

# What coverage.py's subprocess measurement (pyproject.toml: [tool.coverage.run] patch =
# ["subprocess"]) and pytest-cov hand on to a child process so that it is traced too.
COVERAGE_VARIABLES = (
    "COVERAGE_PROCESS_CONFIG",
    "COVERAGE_PROCESS_START",
    "COV_CORE_SOURCE",
    "COV_CORE_CONFIG",
    "COV_CORE_DATAFILE",
)


def unmeasured_environment(**extra: str) -> dict[str, str]:
    """This process's environment for a worker whose speed or memory is measured: without
    the variables that make coverage.py trace it (`make test` runs under coverage), plus
    `extra`. Traced, the soak's worker (tests/integration/test_soak.py) kept up with 0.59 to
    0.73 of 800 events/s in a CI run, and alone on a quiet machine its RSS grew 15.7% after
    the warm-up (132.7 to 153.6 MB: coverage's own data), where untraced it stayed flat.
    What the worker runs is measured by the tests that check its behaviour."""
    environment = {k: v for k, v in os.environ.items() if k not in COVERAGE_VARIABLES}
    return {**environment, **extra}


PARTITIONS = 4
BROKERS = ("tansu", "apache-kafka")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class BenchError(RuntimeError):
    """A benchmark step that cannot go on; the contender it concerns is recorded as failed."""


def progress(message: str) -> None:
    """One progress line on stderr, also when stderr is not a terminal."""
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    """Where and when a figure was measured."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": load_average(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def brokers_for(choice: str) -> list[str]:
    """`--broker tansu|apache-kafka|both` as a list of broker kinds."""
    return list(BROKERS) if choice == "both" else [choice]


def on_each_broker(choice: str, measure: Callable[[str], Any]) -> dict[str, Any]:
    """`measure(kind)` on each broker `--broker` names. A broker whose run fails (BenchError
    is a RuntimeError) is recorded as `{"failed": reason}` and the other still runs."""
    found: dict[str, Any] = {}
    for kind in brokers_for(choice):
        try:
            found[kind] = measure(kind)
        except (OSError, RuntimeError) as exc:
            found[kind] = {"failed": str(exc)[:1000]}
            progress(f"{kind}: FAILED: {exc}")
    return found


def save_result(results_dir: Path, name: str, result: dict[str, Any]) -> Path:
    """Write a benchmark's figures to `results_dir/<name>-<UTC time>.json`."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = results_dir / f"{name}-{stamp}.json"
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    return path


def broker_result(
    benchmark: str,
    details: dict[str, Any],
    brokers: dict[str, Any],
    began: dict[str, Any],
    results_dir: Path | None,
) -> dict[str, Any]:
    """A per-broker benchmark's figures with the machine before and the load after; saved
    under `results_dir` when one is given."""
    result = {
        "benchmark": benchmark,
        **details,
        "brokers": brokers,
        "machine": began,
        "load_average_at_end": load_average(),
    }
    if results_dir is not None:
        save_result(results_dir, benchmark, result)
    return result


@dataclass
class Broker:
    kind: str
    address: str  # host:port
    pid: int | None

    @property
    def url(self) -> str:
        return f"kafka://{self.address}"

    @property
    def transactions(self) -> bool:
        """Whether exactly_once can run here (tansu has no transactions)."""
        return self.kind != "tansu"


@contextlib.contextmanager
def open_broker(kind: str) -> Iterator[Broker]:
    """The embedded tansu broker, or Apache Kafka 3.9.1 (tests/brokers: needs the source
    tree, Java, and the jars from `make kafka-jars`)."""
    if kind == "tansu":
        with EmbeddedBroker() as tansu:
            assert tansu.process is not None
            yield Broker("tansu", tansu.address, tansu.process.pid)
        return
    if kind != "apache-kafka":
        raise BenchError(f"unknown broker {kind!r}: tansu or apache-kafka")
    sys.path.insert(0, str(ROOT))
    try:
        from tests.brokers.apache_kafka import ApacheKafka
    except ImportError as exc:
        raise BenchError(
            f"Apache Kafka needs the source tree's tests/brokers ({exc}); run from a checkout"
        ) from None
    progress("starting Apache Kafka 3.9.1…")
    with ApacheKafka() as kafka:
        yield Broker("apache-kafka", kafka.address, kafka.pid)


async def create_topics(
    address: str,
    topics: list[str],
    partitions: int = PARTITIONS,
    config: Mapping[str, str] | None = None,
) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=address)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(t, partitions, 1, topic_configs=dict(config or {})) for t in topics]
        )
    finally:
        await admin.close()
    await asyncio.sleep(0.2)  # metadata settles on every broker thread


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


# --- processes ---------------------------------------------------------------------------


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds a process has used so far (Linux /proc), None if gone."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def run_queue_seconds(pid: int | None) -> float | None:
    """Seconds the process's threads have waited, runnable, for a CPU (Linux schedstat):
    time a busy machine took from it. None if unknown."""
    if pid is None:
        return None
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, IndexError, ValueError):
                total += int((task / "schedstat").read_text().split()[1])
    except OSError:
        return None
    return total / 1e9


@dataclass
class Clocks:
    """At a moment: CPU seconds of a process, its seconds waiting for a CPU (a busy
    machine), and the broker's CPU seconds."""

    at: float
    cpu: float | None
    waiting: float | None
    broker_cpu: float | None

    @classmethod
    def of(cls, pid: int | None, broker_pid: int | None) -> Clocks:
        return cls(
            time.monotonic(), cpu_seconds(pid), run_queue_seconds(pid), cpu_seconds(broker_pid)
        )

    def delta(self, later: Clocks, name: str) -> float | None:
        before: float | None = getattr(self, name)
        after: float | None = getattr(later, name)
        return None if before is None or after is None else after - before

    def percent(self, later: Clocks, name: str) -> float | None:
        """Of the wall time between the two moments."""
        spent = self.delta(later, name)
        if spent is None or later.at <= self.at:
            return None
        return round(spent / (later.at - self.at) * 100, 1)


def rss_bytes(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def shipped_settings() -> dict[str, Any]:
    """config/sluice.yaml as shipped: the settings users get."""
    loaded = yaml.safe_load((ROOT / "config" / "sluice.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


class WorkerProcess:
    """`sluice worker` in a subprocess on a config directory of its own: the shipped
    settings (config/sluice.yaml) with only the brokers, app id, web port and the
    `overrides` changed, and the given pipeline files. Output goes to `worker.log`."""

    def __init__(
        self,
        broker: Broker,
        pipelines: Mapping[str, str],
        *,
        app_id: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        extra_path: Path | None = None,
    ) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
        (self.folder / "pipelines").mkdir()
        self.port = free_port()
        self.app_id = app_id or f"bench_{uuid.uuid4().hex[:8]}"  # app ids hold no "-"
        settings = shipped_settings()
        settings.update(
            {
                "app_id": self.app_id,
                "brokers": [broker.url],
                "pipelines_dir": "pipelines",
                "web": {**settings.get("web", {}), "port": self.port},
            }
        )
        for key, value in (overrides or {}).items():
            if isinstance(value, dict) and isinstance(settings.get(key), dict):
                settings[key] = {**settings[key], **value}
            else:
                settings[key] = value
        self.settings = settings
        (self.folder / "sluice.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
        for name, text in pipelines.items():
            (self.folder / "pipelines" / name).write_text(text)
        self.log_path = self.folder / "worker.log"
        self.extra_path = extra_path
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> WorkerProcess:
        paths = [str(p) for p in (self.extra_path, ROOT) if p is not None]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "streams.cli", "worker", "--config", str(self.folder)],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=unmeasured_environment(PYTHONPATH=os.pathsep.join(paths)),
            )
        self.started_at = time.time()
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def get(self, path: str, timeout: float = 3.0) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def wait_ready(self, timeout: float = 90.0) -> float:
        """Blocks until /ready answers 200; returns the time (epoch seconds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise BenchError(f"the worker exited {self.exit_code()}: {self.log_tail()}")
            with contextlib.suppress(OSError):
                if self.get("/ready", timeout=1)[0] == 200:
                    return time.time()
            time.sleep(0.1)
        raise BenchError(f"the worker was not ready in {timeout:.0f}s: {self.log_tail()}")

    def metrics(self) -> Metrics:
        status, body = self.get("/metrics")
        if status != 200:
            raise BenchError(f"/metrics answered {status}")
        return Metrics.parse(body.decode())

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def log_lines_matching(self, *words: str) -> list[str]:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if any(w in line for w in words)]

    def stop(self, timeout: float = 30.0) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        return process.returncode


def reader_from_start(address: str, topic: str, fetch_wait_ms: int, purpose: str) -> Any:
    """A librdkafka consumer assigned every partition of `topic` from its start, in a group
    of its own that never commits; small fetches go out at once (no Nagle: else they wait
    for delayed ACKs)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": address,
            "group.id": unique(purpose),
            "enable.auto.commit": False,
            "fetch.wait.max.ms": fetch_wait_ms,
            "socket.nagle.disable": True,
            "log_level": 3,
        }
    )
    consumer.assign([TopicPartition(topic, p, -2) for p in range(PARTITIONS)])
    return consumer


def take(consumer: Any, most: int = 5_000) -> list[Any]:
    """The messages a librdkafka consumer has, as soon as there is one (`consume(n, t)`
    alone waits for n messages or the whole timeout: up to 100 ms late at low rates)."""
    first = consumer.poll(0.1)
    if first is None:
        return []
    return [first, *consumer.consume(most - 1, 0)]


# --- metrics -----------------------------------------------------------------------------


@dataclass
class Metrics:
    """One /metrics scrape: samples by name, each a list of (labels, value)."""

    samples: dict[str, list[tuple[dict[str, str], float]]]

    @classmethod
    def parse(cls, text: str) -> Metrics:
        from prometheus_client.parser import text_string_to_metric_families

        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return cls(samples)

    def total(self, name: str, **labels: str) -> float:
        return sum(
            value
            for found, value in self.samples.get(name, [])
            if all(found.get(k) == v for k, v in labels.items())
        )

    def by_label(self, name: str, label: str) -> dict[str, float]:
        result: dict[str, float] = {}
        for found, value in self.samples.get(name, []):
            key = found.get(label, "")
            result[key] = result.get(key, 0.0) + value
        return result

    def histogram(self, name: str, **labels: str) -> Histogram:
        """Cumulative buckets of a histogram, summed over the series matching `labels`."""
        buckets: dict[float, float] = {}
        for found, value in self.samples.get(f"{name}_bucket", []):
            if all(found.get(k) == v for k, v in labels.items()):
                bound = float(found["le"])
                buckets[bound] = buckets.get(bound, 0.0) + value
        return Histogram(sorted(buckets.items()), self.total(f"{name}_sum", **labels))


@dataclass
class Histogram:
    """Cumulative (upper bound, count) pairs, as Prometheus exports them."""

    buckets: list[tuple[float, float]]
    sum: float = 0.0

    @property
    def count(self) -> float:
        return self.buckets[-1][1] if self.buckets else 0.0

    def __sub__(self, earlier: Histogram) -> Histogram:
        before = dict(earlier.buckets)
        return Histogram(
            [(bound, count - before.get(bound, 0.0)) for bound, count in self.buckets],
            self.sum - earlier.sum,
        )

    def quantile(self, q: float) -> float | None:
        """As PromQL's histogram_quantile: linear inside the bucket; the highest finite
        bound when the quantile falls in +Inf."""
        total = self.count
        if total <= 0:
            return None
        rank = q * total
        lower_bound, lower_count = 0.0, 0.0
        for bound, count in self.buckets:
            if count >= rank:
                if math.isinf(bound):
                    return lower_bound
                if count == lower_count:
                    return bound
                return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                    count - lower_count
                )
            lower_bound, lower_count = bound, count
        return lower_bound

    def quantiles_ms(self, qs: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999)) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for q in qs:
            value = self.quantile(q)
            found[_quantile_name(q)] = None if value is None else round(value * 1000, 1)
        found["count"] = int(self.count)
        return found


def _quantile_name(q: float) -> str:
    return "p" + f"{q * 100:g}".replace(".", "")


def exact_quantiles_ms(
    values: list[float], qs: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999)
) -> dict[str, Any]:
    """Quantiles (nearest rank) and max of latencies in seconds, in milliseconds."""
    if not values:
        return {**{_quantile_name(q): None for q in qs}, "max": None}
    ordered = sorted(values)
    found: dict[str, Any] = {
        _quantile_name(q): round(
            ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] * 1000, 1
        )
        for q in qs
    }
    found["max"] = round(ordered[-1] * 1000, 1)
    return found
