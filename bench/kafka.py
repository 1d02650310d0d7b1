"""`sluice bench kafka`: end-to-end throughput and latency on the embedded broker.

Two contenders, measured the same way in one run, on one broker: produce N sample
payments as fast as possible into a 4-partition topic, and time until the last result
is read back from the output topics.

- reference: raw aiokafka consume → produce pass-through (the practical limit);
- sluice: a real `sluice worker` subprocess running the demo pipeline.

Then latency: sluice at half its measured throughput, event produced → result consumed.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from bench.support import load_average, progress, save_result, unmeasured_environment
from streams.offline.demo_data import payments
from streams.runtime.broker import EmbeddedBroker, free_port

PARTITIONS = 4
ROOT = Path(__file__).resolve().parents[1]  # the checkout


async def _create(address: str, *topics: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=address)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics])
    finally:
        await admin.close()


async def _produce(
    address: str,
    topic: str,
    lines: list[bytes],
    rate: float | None = None,
    sent_at: dict[bytes, float] | None = None,
) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=address, linger_ms=5, max_batch_size=262_144)
    await producer.start()
    began = time.monotonic()
    try:
        pending = []
        for number, line in enumerate(lines, 1):
            if sent_at is not None:
                sent_at[orjson.loads(line)["payment_id"].encode()] = time.time()
            pending.append(await producer.send(topic, line))
            if rate:
                ahead = number / rate - (time.monotonic() - began)
                if ahead > 0.001:
                    await asyncio.sleep(ahead)
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return began


async def _drain(
    address: str,
    topics: list[str],
    expected: int,
    timeout: float,
    on_message: Callable[[Any], None] | None = None,
) -> float:
    """Read `topics` until `expected` messages; returns the time the last arrived."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=address,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=20,
    )
    await consumer.start()
    seen = 0
    last = time.monotonic()
    deadline = time.monotonic() + timeout
    try:
        while seen < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=100, max_records=10_000)
            for messages in batches.values():
                seen += len(messages)
                if on_message is not None:
                    for message in messages:
                        on_message(message)
                last = time.monotonic()
    finally:
        await consumer.stop()
    if seen < expected:
        raise RuntimeError(f"only {seen} of {expected} results arrived in {timeout}s")
    return last


async def _passthrough(
    address: str, source: str, target: str, stop: asyncio.Event, ready: asyncio.Event
) -> None:
    # partitions assigned by hand: no group join to wait for, as a fair start line
    consumer = AIOKafkaConsumer(
        bootstrap_servers=address, group_id=None, max_poll_records=10_000, fetch_max_wait_ms=20
    )
    producer = AIOKafkaProducer(bootstrap_servers=address, linger_ms=5, max_batch_size=262_144)
    await consumer.start()
    await producer.start()
    partitions = [TopicPartition(source, p) for p in range(PARTITIONS)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    ready.set()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=50, max_records=10_000)
            pending = [
                await producer.send(target, m.value, key=m.key)
                for messages in batches.values()
                for m in messages
            ]
            if pending:
                await asyncio.gather(*pending)
    finally:
        await producer.stop()
        await consumer.stop()


async def bench_reference(address: str, lines: list[bytes]) -> float:
    tag = uuid.uuid4().hex[:8]
    source, target = f"ref-in-{tag}", f"ref-out-{tag}"
    await _create(address, source, target)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(_passthrough(address, source, target, stop, ready))
    await ready.wait()
    drain = asyncio.create_task(_drain(address, [target], len(lines), 120))
    began = await _produce(address, source, lines)
    last = await drain
    stop.set()
    await task
    return len(lines) / (last - began)


class _Worker:
    def __init__(self, address: str, pipeline: str, tag: str, telemetry: bool = True) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
        (self.folder / "pipelines").mkdir()
        self.port = free_port()
        (self.folder / "sluice.yaml").write_text(
            f"app_id: bench_{tag}\nbrokers: ['kafka://{address}']\nweb: {{port: {self.port}}}\n"
            "log: {level: WARNING}\n"
            f"telemetry: {'true' if telemetry else 'false'}\n"
        )
        (self.folder / "pipelines" / "p.yaml").write_text(pipeline)
        command = [sys.executable, "-m", "streams.cli", "worker", "--config", str(self.folder)]
        self.process = subprocess.Popen(  # noqa: S603
            command,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=unmeasured_environment(PYTHONPATH=str(ROOT)),
        )

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"benchmark worker exited {self.process.returncode}")
            try:
                url = f"http://127.0.0.1:{self.port}/ready"
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("benchmark worker not ready")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _pipeline(tag: str) -> tuple[str, list[str]]:
    text = (ROOT / "config" / "pipelines" / "payments-clean.yaml").read_text()
    topics = [f"payments-clean-{tag}", f"payments-large-{tag}", f"payments-dlq-{tag}"]
    for topic in topics:
        text = text.replace(topic.rsplit("-", 1)[0], topic)
    return text.replace("topic: payments\n", f"topic: payments-{tag}\n"), topics


async def _expected_results(lines: list[bytes]) -> int:
    """How many records the demo pipeline emits (sink + routes + dead letters), by replay."""
    from streams.config.loader import load_pipeline
    from streams.offline import replay

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = folder / "in.jsonl"
        source.write_bytes(b"".join(line + b"\n" for line in lines))
        summary = await replay(
            load_pipeline(ROOT / "config" / "pipelines" / "payments-clean.yaml"),
            str(source),
            folder / "out",
        )
    return sum(summary.only.outputs.values()) + summary.only.dead_letters


async def bench_worker(
    address: str, lines: list[bytes], expected: int, telemetry: bool = True
) -> float:
    tag = uuid.uuid4().hex[:8]
    pipeline, topics = _pipeline(tag)
    await _create(address, f"payments-{tag}", *topics)
    worker = _Worker(address, pipeline, tag, telemetry=telemetry)
    try:
        await asyncio.to_thread(worker.wait_ready)
        drain = asyncio.create_task(_drain(address, topics, expected, 300))
        began = await _produce(address, f"payments-{tag}", lines)
        last = await drain
    finally:
        worker.stop()
    return len(lines) / (last - began)


def _events_in(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("sluice_events_in_total{")
    )


async def bench_windowed_worker(address: str, lines: list[bytes]) -> float:
    """The windowed pipeline of `sluice bench windows` on a worker: records/s until the
    worker has processed every record (window results come out as windows close, so
    counting them would time the wall-clock close, not the processing)."""
    from bench.windows import WINDOW_PIPELINE

    tag = uuid.uuid4().hex[:8]
    source, sink = f"payments-{tag}", f"windows-{tag}"
    pipeline = WINDOW_PIPELINE.replace("pipeline: bench-windows", f"pipeline: windows-{tag}")
    pipeline = pipeline.replace("{topic: payments,", f"{{topic: {source},")
    assert source in pipeline and sink in pipeline.replace("topic: windows}", sink)
    pipeline = pipeline.replace("topic: windows}", f"topic: {sink}}}")
    await _create(address, source, sink)
    worker = _Worker(address, pipeline, tag)
    try:
        await asyncio.to_thread(worker.wait_ready)
        began = await _produce(address, source, lines)
        deadline = time.monotonic() + 300
        while await asyncio.to_thread(_events_in, worker.port) < len(lines):
            if time.monotonic() > deadline:
                raise RuntimeError("the windowed worker did not process every record in 300s")
            await asyncio.sleep(0.02)
        return len(lines) / (time.monotonic() - began)
    finally:
        worker.stop()


async def bench_latency(address: str, rate: float, seconds: float) -> dict[str, float]:
    tag = uuid.uuid4().hex[:8]
    pipeline, topics = _pipeline(tag)
    await _create(address, f"payments-{tag}", *topics)
    lines = list(payments(int(rate * seconds), seed=5, malformed_ratio=0))
    expected = await _expected_results(lines)
    sent_at: dict[bytes, float] = {}
    latencies: list[float] = []

    def measure(message: Any) -> None:
        try:
            key = orjson.loads(message.value)["payment_id"].encode()
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return
        if key in sent_at:
            latencies.append(time.time() - sent_at[key])

    worker = _Worker(address, pipeline, tag)
    try:
        await asyncio.to_thread(worker.wait_ready)
        drain = asyncio.create_task(_drain(address, topics, expected, seconds + 120, measure))
        await _produce(address, f"payments-{tag}", lines, rate=rate, sent_at=sent_at)
        await drain
    finally:
        worker.stop()
    latencies.sort()
    return {
        "rate": round(rate),
        "events": len(lines),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1),
    }


async def _attempt(name: str, work: Any) -> Any:
    """A contender's figure, or `{"failed": reason}`: one failing contender does not end
    the benchmark."""
    progress(f"kafka: {name}…")
    try:
        found = await work
    except (RuntimeError, OSError, KafkaError) as exc:
        progress(f"  {name}: FAILED: {exc}")
        return {"failed": str(exc)[:1000]}
    progress(f"  {name}: {found}" if isinstance(found, dict) else f"  {name}: {found:,.0f}/s")
    return found


def _rate(value: Any) -> int | None:
    return round(value) if isinstance(value, int | float) else None


async def bench_kafka_async(events: int, latency_seconds: float) -> dict[str, Any]:
    lines = list(payments(events, seed=11))
    expected = await _expected_results(lines)
    loads = load_average()
    with EmbeddedBroker() as broker:
        address = broker.address
        reference = await _attempt("raw aiokafka pass-through", bench_reference(address, lines))
        # telemetry on and off alternately, twice: what metrics, logs and tracing cost
        runs: dict[bool, list[Any]] = {True: [], False: []}
        for telemetry in (True, False, True, False):
            runs[telemetry].append(
                await _attempt(
                    f"sluice worker, telemetry {'on' if telemetry else 'off'}",
                    bench_worker(address, lines, expected, telemetry=telemetry),
                )
            )
        measured = {k: [x for x in v if _rate(x) is not None] for k, v in runs.items()}
        sluice = statistics.mean(measured[True]) if measured[True] else None
        bare = statistics.mean(measured[False]) if measured[False] else None
        windowed_lines = list(payments(events, seed=13, malformed_ratio=0))
        windowed = await _attempt(
            "windowed pipeline worker", bench_windowed_worker(address, windowed_lines)
        )
        if sluice is not None:
            latency = await _attempt(
                "latency at half rate", bench_latency(address, sluice / 2, latency_seconds)
            )
        else:
            latency = {"failed": "no throughput measured to take half of"}

    def ratio(a: Any, b: Any) -> float | None:
        return round(a / b, 3) if _rate(a) and _rate(b) else None

    return {
        "benchmark": "kafka",
        "pipeline": "payments-clean (validate model + filter + map + route), 2% malformed",
        "events": events,
        "partitions": PARTITIONS,
        "reference_events_per_second": _rate(reference) or reference,
        "sluice_events_per_second": _rate(sluice),
        "sluice_runs_events_per_second": [_rate(x) or x for x in runs[True]],
        "sluice_telemetry_off_events_per_second": _rate(bare),
        "sluice_telemetry_off_runs_events_per_second": [_rate(x) or x for x in runs[False]],
        "telemetry_cost": round(1 - sluice / bare, 3) if sluice and bare else None,
        "windowed_pipeline": "per-user 1-minute tumbling windows: count, sum, avg, max, p95, "
        "count_distinct (as `sluice bench windows`)",
        "windowed_events_per_second": _rate(windowed) or windowed,
        "ratio_windowed_to_reference": ratio(windowed, reference),
        "ratio_sluice_to_reference": ratio(sluice, reference),
        "latency_at_half_rate": latency,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average": loads,
        },
        "load_average_at_end": load_average(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def bench_kafka(
    events: int = 50_000, latency_seconds: float = 10.0, results_dir: Path | None = None
) -> dict[str, Any]:
    result = asyncio.run(bench_kafka_async(events, latency_seconds))
    if results_dir is not None:
        save_result(results_dir, "kafka", result)
    return result


def describe(result: dict[str, Any]) -> str:
    """The figures as lines; a failed contender says why."""

    def rate(value: Any) -> str:
        if isinstance(value, int | float):
            return f"{value:>10,.0f} events/s"
        if isinstance(value, dict) and "failed" in value:
            return f"FAILED: {value['failed'][:300]}"
        return "not measured"

    def times(value: Any) -> str:
        return f"  ({value:.3f}x of raw)" if isinstance(value, float) else ""

    lines = [
        f"raw aiokafka pass-through {rate(result['reference_events_per_second'])}",
        f"sluice worker             {rate(result['sluice_events_per_second'])}"
        + times(result["ratio_sluice_to_reference"]),
        f"  with telemetry off      {rate(result['sluice_telemetry_off_events_per_second'])}"
        + (
            f"  (metrics, logs and tracing cost {result['telemetry_cost']:.1%})"
            if isinstance(result["telemetry_cost"], float)
            else ""
        ),
        f"windowed pipeline worker  {rate(result['windowed_events_per_second'])}"
        + times(result["ratio_windowed_to_reference"]),
    ]
    latency = result["latency_at_half_rate"]
    if "failed" in latency:
        lines.append(f"latency at half rate: FAILED: {latency['failed'][:300]}")
    else:
        lines.append(
            f"latency at {latency['rate']:,}/s: p50 {latency['p50_ms']} ms, "
            f"p99 {latency['p99_ms']} ms"
        )
    return "\n".join(lines)
