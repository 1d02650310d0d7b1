"""`sluice bench soak`: a worker under steady load for minutes, sampled every 10 s.

The worker runs the shipped demo pipelines of config/pipelines/ (payments-clean,
payments-risk with the users table loaded, the .sql file's pipelines) and the windowed
benchmark pipeline of `sluice bench windows`, all with the shipped settings. A producer
here sends `streams.offline.demo_data` payments (2% malformed, keyed by user) to `payments`
at a fixed rate; their event time starts now and runs 20 times as fast as the clock, so that state
kept for a span of event time (dedupe: 10 minutes) reaches its steady size within the
warm-up. Every sample holds: records produced, `sluice_events_in_total` per pipeline, the
source lag (`sluice_consumer_lag` of the `payments` topic, and of every topic), the
worker's RSS (/proc), its CPU and its time waiting for a CPU (schedstat: a busy machine),
the broker's CPU, load average, and the processing latency quantiles of the interval (the
change of `sluice_end_to_end_latency_seconds`).

The broker is Apache Kafka by default: tansu's fetches slow down, then stop, as a partition
fills with small record batches (bench/tansu_small_batches.py), and a paced producer makes
small batches — on tansu the worker stalls after a minute or two waiting for the broker.

Phases, each on a fresh broker and worker:
- `max`: the worker's maximum, catch-up: 100,000 payments pre-filled, rate = records /
  (time every pipeline reading `payments` has read them all - time the first was read).
  `--max-rate` takes a figure instead.
- a percentage of it (`--phases 50,120`), for `--minutes` each. Checks at or below 100%:
  RSS after warm-up within 5% of its first value, the source lag near zero (at most one
  second of records, or two batches), the processing rate of every 10 s interval at least
  90% of the produced rate. Above 100%: the processing rate stays near the maximum and
  does not collapse (the last third's rate at least 80% of the first third's) and the lag
  grows linearly (R² of a straight line at least 0.9).

"The processing rate" is that of the slowest pipeline reading `payments` (each counts the
records it reads). Warm-up: the first fifth of a phase, at least 60 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.support import (
    ROOT,
    BenchError,
    Broker,
    Clocks,
    Histogram,
    Metrics,
    WorkerProcess,
    broker_result,
    create_topics,
    load_average,
    machine,
    on_each_broker,
    open_broker,
    progress,
    rss_bytes,
)

SOURCE = "payments"
USERS_TOPIC = "users"
MAX_EVENTS = 100_000
LATENCY_METRIC = "sluice_end_to_end_latency_seconds"
BENCH_PIPELINE_FILE = "bench-windows.yaml"
# State kept for a span of event time (dedupe 10 minutes, windows 1 minute + grace) reaches
# its steady size within the warm-up when event time runs this much faster than the clock
EVENT_TIME_SPEED = 20


def soak_pipelines() -> dict[str, str]:
    """The shipped demo pipelines (every file of config/pipelines/) and the benchmark
    pipeline, as file name -> text."""
    from bench.windows import WINDOW_PIPELINE

    files = {
        path.name: path.read_text()
        for path in sorted((ROOT / "config" / "pipelines").iterdir())
        if path.suffix in (".yaml", ".yml", ".sql")
    }
    files[BENCH_PIPELINE_FILE] = WINDOW_PIPELINE.replace("topic: windows}", "topic: bench-windows}")
    return files


def source_pipelines(worker: WorkerProcess) -> list[str]:
    """Names of the worker's pipelines that read the `payments` topic."""
    from streams.config.loader import load_config

    _, pipelines = load_config(worker.folder).require()
    return sorted(name for name, spec in pipelines.items() if spec.source.topic == SOURCE)


class PaymentFeed:
    """`streams.offline.demo_data` payments keyed by user, event time from now on, running
    EVENT_TIME_SPEED times as fast as the wall clock at a producer pacing `rate`."""

    def __init__(self, rate: float, seed: int = 17) -> None:
        from streams.offline.demo_data import payments

        self.lines = payments(
            10**12,
            seed=seed,
            start=datetime.now(UTC),
            events_per_second=rate / EVENT_TIME_SPEED,
        )

    def next(self) -> tuple[bytes | None, bytes]:
        line = next(self.lines)
        try:
            record = orjson.loads(line)
            key = record.get("user_id") if isinstance(record, dict) else None
        except orjson.JSONDecodeError:
            key = None
        return (key.encode() if isinstance(key, str) else None), line


class Producer:
    """Sends the feed at a fixed rate until stopped; counts what it sent."""

    def __init__(self, address: str, feed: PaymentFeed, rate: float) -> None:
        self.address = address
        self.feed = feed
        self.rate = rate
        self.sent = 0
        self.failed = 0
        self._task: asyncio.Task[None] | None = None
        self._halt = asyncio.Event()

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=self.address, linger_ms=5, max_batch_size=262_144
        )
        await producer.start()
        self._task = asyncio.create_task(self._send(producer))

    async def _send(self, producer: Any) -> None:
        pending: list[asyncio.Future[Any]] = []
        began = time.monotonic()
        try:
            while not self._halt.is_set():
                key, line = self.feed.next()
                pending.append(await producer.send(SOURCE, line, key=key))
                self.sent += 1
                ahead = self.sent / self.rate - (time.monotonic() - began)
                if ahead > 0.001:
                    await asyncio.sleep(ahead)
                if len(pending) >= 2_000:
                    await self._settle(pending)
            await self._settle(pending)
        finally:
            await producer.stop()

    async def _settle(self, pending: list[asyncio.Future[Any]]) -> None:
        results = await asyncio.gather(*pending, return_exceptions=True)
        self.failed += sum(1 for r in results if isinstance(r, BaseException))
        pending.clear()

    async def stop(self) -> None:
        self._halt.set()
        if self._task is not None:
            await self._task


async def produce_all(address: str, topic: str, lines: list[tuple[bytes | None, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=address, linger_ms=5, max_batch_size=262_144)
    await producer.start()
    try:
        pending = []
        for key, line in lines:
            pending.append(await producer.send(topic, line, key=key))
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def load_users(address: str) -> int:
    from streams.offline.demo_data import users_table

    rows = [(orjson.loads(line)["user_id"].encode(), line) for line in users_table()]
    await produce_all(address, USERS_TOPIC, rows)
    return len(rows)


@dataclass
class Sample:
    t: float  # seconds since the phase started
    produced: int
    events_in: dict[str, float]
    source_lag: float
    total_lag: float
    rss_mb: float | None
    worker_cpu_percent: float | None
    worker_run_queue_percent: float | None
    broker_cpu_percent: float | None
    latency_ms: dict[str, Any]
    load_average: list[float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "t": round(self.t, 1),
            "produced": self.produced,
            "events_in": {k: int(v) for k, v in self.events_in.items()},
            "source_lag": int(self.source_lag),
            "total_lag": int(self.total_lag),
            "rss_mb": self.rss_mb,
            "worker_cpu_percent": self.worker_cpu_percent,
            "worker_run_queue_percent": self.worker_run_queue_percent,
            "broker_cpu_percent": self.broker_cpu_percent,
            "latency_ms": self.latency_ms,
            "load_average": self.load_average,
        }


@dataclass
class Soak:
    """A worker with the soak pipelines on `broker`, started and ready, the users loaded."""

    broker: Broker
    worker: WorkerProcess = field(init=False)
    sources: list[str] = field(init=False)
    samples: list[Sample] = field(default_factory=list)

    async def start(self, prefill: list[tuple[bytes | None, bytes]] | None = None) -> float:
        """Topics, users, the pre-filled payments if any, then the worker; returns the time
        it was ready."""
        await create_topics(self.broker.address, [SOURCE, USERS_TOPIC])
        await load_users(self.broker.address)
        if prefill:
            await produce_all(self.broker.address, SOURCE, prefill)
        self.worker = WorkerProcess(self.broker, soak_pipelines())
        self.sources = source_pipelines(self.worker)
        self.worker.start()
        return await asyncio.to_thread(self.worker.wait_ready, 120)

    def stop(self) -> int | None:
        return self.worker.stop()

    def discard(self) -> None:
        shutil.rmtree(self.worker.folder, ignore_errors=True)

    def metrics(self) -> Metrics:
        return self.worker.metrics()

    def processed(self, metrics: Metrics) -> float:
        """Records of `payments` read by the slowest pipeline that reads it."""
        found = metrics.by_label("sluice_events_in_total", "pipeline")
        return min(found.get(name, 0.0) for name in self.sources)

    def _clocks(self) -> Clocks:
        return Clocks.of(self.worker.pid, self.broker.pid)

    async def sample_every(
        self, interval: float, seconds: float, producer: Producer | None, began: float
    ) -> None:
        """Samples every `interval` seconds for `seconds`."""
        previous = await asyncio.to_thread(self.metrics)
        clocks = self._clocks()
        next_at = time.monotonic() + interval
        end = time.monotonic() + seconds
        while time.monotonic() < end - interval / 2:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            if not self.worker.alive():
                raise BenchError(
                    f"the worker exited {self.worker.exit_code()}: {self.worker.log_tail(5)}"
                )
            current = await asyncio.to_thread(self.metrics)
            now = self._clocks()
            self.samples.append(self._sample(previous, current, clocks, now, producer, began))
            previous, clocks = current, now
            if len(self.samples) % max(1, round(60 / interval)) == 0:
                progress(f"  {minute_line(self.samples, self.sources, interval)}")

    def _sample(
        self,
        previous: Metrics,
        current: Metrics,
        clocks: Clocks,
        now: Clocks,
        producer: Producer | None,
        began: float,
    ) -> Sample:
        lags = current.samples.get("sluice_consumer_lag", [])
        latency: Histogram = current.histogram(LATENCY_METRIC) - previous.histogram(LATENCY_METRIC)
        rss = rss_bytes(self.worker.pid)
        return Sample(
            t=now.at - began,
            produced=producer.sent if producer is not None else 0,
            events_in=current.by_label("sluice_events_in_total", "pipeline"),
            source_lag=sum(v for labels, v in lags if labels.get("topic") == SOURCE),
            total_lag=sum(v for _, v in lags),
            rss_mb=None if rss is None else round(rss / 2**20, 1),
            worker_cpu_percent=clocks.percent(now, "cpu"),
            worker_run_queue_percent=clocks.percent(now, "waiting"),
            broker_cpu_percent=clocks.percent(now, "broker_cpu"),
            latency_ms=latency.quantiles_ms((0.5, 0.99)),
            load_average=load_average(),
        )

    async def drain(self, produced: int, timeout: float) -> float | None:
        """Waits until every pipeline reading `payments` has read `produced` records;
        returns how long it took (None: not in `timeout`)."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if self.processed(await asyncio.to_thread(self.metrics)) >= produced:
                return time.monotonic() - began
            await asyncio.sleep(0.5)
        return None


# --- analysis ----------------------------------------------------------------------------
def minute_line(samples: list[Sample], sources: list[str], interval: float) -> str:
    """The last minute of samples in a line: a long phase says how it goes."""
    last = samples[-1]
    span = samples[-max(1, round(60 / interval)) - 1 :]
    first = span[0] if len(span) > 1 else None
    seconds = last.t - (first.t if first is not None else 0.0)

    def processed(sample: Sample) -> float:
        return min(sample.events_in.get(name, 0.0) for name in sources)

    produced = last.produced - (first.produced if first is not None else 0)
    done = processed(last) - (processed(first) if first is not None else 0.0)
    rss = "?" if last.rss_mb is None else f"{last.rss_mb:.0f} MB"
    p99 = last.latency_ms.get("p99")
    return (
        f"{last.t / 60:4.1f} min: produced {produced / seconds:,.0f}/s, "
        f"processed {done / seconds:,.0f}/s, source lag {last.source_lag:,.0f}, RSS {rss}, "
        f"p99 {'?' if p99 is None else p99} ms"
    )


def warm_up_seconds(phase_seconds: float) -> float:
    """The first fifth of a phase, at least a minute: 20 minutes of event time, twice the
    longest retention of the demo pipelines' state (dedupe within 10 minutes)."""
    return max(60.0, phase_seconds / 5)


def _rate(samples: list[Sample], sources: list[str], start: int, end: int) -> float | None:
    """Records/s read by the slowest source pipeline between samples[start] and samples[end]."""
    if end <= start:
        return None
    first, last = samples[start], samples[end]
    seconds = last.t - first.t
    if seconds <= 0:
        return None
    return min(last.events_in.get(p, 0) - first.events_in.get(p, 0) for p in sources) / seconds


def interval_ratios(samples: list[Sample], sources: list[str]) -> list[float]:
    """Per sample interval: records processed / records produced."""
    ratios = []
    for before, after in itertools.pairwise(samples):
        produced = after.produced - before.produced
        if produced <= 0:
            continue
        processed = min(after.events_in.get(p, 0) - before.events_in.get(p, 0) for p in sources)
        ratios.append(processed / produced)
    return ratios


def linear_fit_r2(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(slope, R²) of the least-squares line."""
    if len(xs) < 3:
        return 0.0, 0.0
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    syy = sum((y - mean_y) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return 0.0, 0.0
    slope = sxy / sxx
    return slope, (sxy * sxy) / (sxx * syy)


def keep_up_checks(
    samples: list[Sample], sources: list[str], rate: float, batch_max: int, warm_up: float
) -> dict[str, Any]:
    """The checks of a phase the worker should keep up with (see the module)."""
    after = [s for s in samples if s.t >= warm_up]
    if len(after) < 2:
        return {"samples_after_warm_up": {"count": len(after), "ok": False}}
    checks: dict[str, Any] = {}
    rss = [s.rss_mb for s in after if s.rss_mb is not None]
    if rss:
        growth = max(rss) / rss[0] - 1
        checks["rss_flat_within_5_percent"] = {
            "first_mb": rss[0],
            "max_mb": max(rss),
            "last_mb": rss[-1],
            "growth": round(growth, 4),
            "ok": growth <= 0.05,
        }
    lag_bound = max(rate * 1.0, 2 * batch_max)
    lags = [s.source_lag for s in after]
    if lags:
        checks["source_lag_near_zero"] = {
            "max": int(max(lags)),
            "last": int(lags[-1]),
            "bound": int(lag_bound),
            "ok": max(lags) <= lag_bound,
        }
    ratios = interval_ratios(after, sources)
    if ratios:
        checks["processing_at_least_90_percent_of_produced"] = {
            "min_interval_ratio": round(min(ratios), 3),
            "mean_interval_ratio": round(statistics.fmean(ratios), 3),
            "ok": min(ratios) >= 0.9,
        }
    return checks


def overload_checks(
    samples: list[Sample], sources: list[str], max_rate: float, warm_up: float
) -> dict[str, Any]:
    """The checks of a phase above the maximum (see the module)."""
    after = [s for s in samples if s.t >= warm_up]
    checks: dict[str, Any] = {}
    if len(after) < 4:
        return {"samples_after_warm_up": {"count": len(after), "ok": False}}
    third = len(after) // 3
    first_rate = _rate(after, sources, 0, third)
    last_rate = _rate(after, sources, len(after) - 1 - third, len(after) - 1)
    mean_rate = _rate(after, sources, 0, len(after) - 1)
    if first_rate and last_rate is not None:
        checks["no_collapse_last_third_at_least_80_percent_of_first"] = {
            "first_third_per_second": round(first_rate),
            "last_third_per_second": round(last_rate),
            "ok": last_rate >= 0.8 * first_rate,
        }
    if mean_rate is not None:
        checks["processing_rate_near_max"] = {
            "per_second": round(mean_rate),
            "of_max": round(mean_rate / max_rate, 3),
            "ok": mean_rate >= 0.75 * max_rate,
        }
    slope, r2 = linear_fit_r2([s.t for s in after], [s.source_lag for s in after])
    checks["lag_grows_linearly"] = {
        "slope_per_second": round(slope),
        "r2": round(r2, 4),
        "ok": slope > 0 and r2 >= 0.9,
    }
    return checks


# --- phases ------------------------------------------------------------------------------


async def measure_max(broker: Broker, events: int = MAX_EVENTS) -> dict[str, Any]:
    """Catch-up: `events` payments pre-filled, then the worker reads them all."""
    from streams.offline.demo_data import payments

    span = 600.0  # event time: the last ten minutes
    start = datetime.fromtimestamp(time.time() - span, UTC)
    lines = []
    for line in payments(events, seed=19, start=start, events_per_second=events / span):
        try:
            key = orjson.loads(line).get("user_id")
        except (orjson.JSONDecodeError, AttributeError):
            key = None
        lines.append((key.encode() if isinstance(key, str) else None, line))
    soak = Soak(broker)
    await soak.start(prefill=lines)
    try:
        first = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            metrics = await asyncio.to_thread(soak.metrics)
            done = soak.processed(metrics)
            now = time.time()
            if first is None and metrics.total("sluice_events_in_total") > 0:
                first = now
            if done >= events:
                assert first is not None
                seconds = now - first
                return {
                    "events": events,
                    "seconds": round(seconds, 2),
                    "events_per_second": round(events / seconds),
                    "pipelines": soak.sources,
                    "rss_mb": round((rss_bytes(soak.worker.pid) or 0) / 2**20, 1),
                }
            await asyncio.sleep(0.1)
        raise BenchError(f"the worker did not read {events} records in 300 s")
    finally:
        soak.stop()
        soak.discard()


async def run_phase(
    broker: Broker,
    rate: float,
    seconds: float,
    interval: float = 10.0,
    drain_timeout: float = 60.0,
) -> tuple[Soak, dict[str, Any]]:
    """The worker fed at `rate` for `seconds`, sampled every `interval`; then the producer
    stops and the worker reads what is left (up to `drain_timeout`). Returns the soak
    (stopped) and its figures."""
    soak = Soak(broker)
    await soak.start()
    feed = PaymentFeed(rate)
    producer = Producer(broker.address, feed, rate)
    began = time.monotonic()
    found: dict[str, Any] = {"rate": round(rate), "seconds": seconds}
    try:
        await producer.start()
        await soak.sample_every(interval, seconds, producer, began)
        await producer.stop()
        found["produced"] = producer.sent
        found["produce_failures"] = producer.failed
        found["achieved_produce_rate"] = round(producer.sent / (time.monotonic() - began))
        found["drain_seconds"] = await soak.drain(producer.sent, drain_timeout)
        metrics = await asyncio.to_thread(soak.metrics)
        found["final"] = {
            "events_in": {
                k: int(v) for k, v in metrics.by_label("sluice_events_in_total", "pipeline").items()
            },
            "events_out": {
                k: int(v)
                for k, v in metrics.by_label("sluice_events_out_total", "pipeline").items()
            },
            "dropped": {
                k: int(v)
                for k, v in metrics.by_label("sluice_events_dropped_total", "pipeline").items()
            },
            "dead_letters": {
                k: int(v)
                for k, v in metrics.by_label("sluice_dead_letters_total", "pipeline").items()
            },
        }
        found["pipelines_reading_payments"] = soak.sources
    finally:
        with contextlib.suppress(Exception):
            await producer.stop()
        found["worker_exit_code"] = soak.stop()
        found["worker_log_errors"] = soak.worker.log_lines_matching('"ERROR"', '"CRITICAL"')[-20:]
        found["worker_log_warnings"] = soak.worker.log_lines_matching('"WARNING"')[-20:]
    found["samples"] = [s.as_dict() for s in soak.samples]
    return soak, found


async def bench_broker(
    kind: str, minutes: float, phases: list[int], max_rate: float | None, interval: float
) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if max_rate is None:
        with open_broker(kind) as broker:
            progress(f"{kind}: the worker's maximum (catch-up over {MAX_EVENTS:,} payments)…")
            found["max"] = await measure_max(broker)
        max_rate = float(found["max"]["events_per_second"])
        progress(f"  {max_rate:,.0f} payments/s")
    else:
        found["max"] = {"events_per_second": round(max_rate), "given": True}
    seconds = minutes * 60
    warm_up = warm_up_seconds(seconds)
    batch_max = _batch_max()
    for percent in phases:
        rate = max_rate * percent / 100
        progress(f"{kind}: {percent}% of the maximum = {rate:,.0f}/s for {minutes:g} min…")
        with open_broker(kind) as broker:
            soak, phase = await run_phase(broker, rate, seconds, interval)
        if percent <= 100:
            phase["checks"] = keep_up_checks(soak.samples, soak.sources, rate, batch_max, warm_up)
        else:
            phase["checks"] = overload_checks(soak.samples, soak.sources, max_rate, warm_up)
        phase["percent_of_max"] = percent
        phase["warm_up_seconds"] = warm_up
        phase["ok"] = all(c.get("ok", True) for c in phase["checks"].values())
        if phase["ok"]:
            soak.discard()
        else:  # its log and config stay for a look
            phase["worker_folder"] = str(soak.worker.folder)
        found[f"{percent}%"] = phase
        progress(f"  {describe_phase(phase)}")
    return found


def _batch_max() -> int:
    from bench.support import shipped_settings

    processing = shipped_settings().get("processing", {})
    return int(processing.get("batch_max", 1000))


def describe_phase(phase: dict[str, Any]) -> str:
    parts = [
        f"{phase['percent_of_max']}% ({phase['rate']:,}/s): produced {phase.get('produced', 0):,}"
    ]
    for name, check in phase["checks"].items():
        value = {k: v for k, v in check.items() if k != "ok"}
        parts.append(f"{name} {'ok' if check.get('ok') else 'FAILED'} {value}")
    return "; ".join(parts)


def bench_soak(
    broker: str = "apache-kafka",
    minutes: float = 10.0,
    phases: list[int] | None = None,
    max_rate: float | None = None,
    interval: float = 10.0,
    results_dir: Path | None = None,
) -> dict[str, Any]:
    phases = phases or [50, 120]
    began = machine()
    brokers = on_each_broker(
        broker,
        lambda kind: asyncio.run(bench_broker(kind, minutes, phases, max_rate, interval)),
    )
    details = {
        "pipelines": sorted(soak_pipelines()),
        "minutes_per_phase": minutes,
        "sample_interval_seconds": interval,
    }
    return broker_result("soak", details, brokers, began, results_dir)


def describe(result: dict[str, Any]) -> str:
    lines = []
    for kind, found in result["brokers"].items():
        if "failed" in found:
            lines.append(f"{kind}: FAILED: {found['failed']}")
            continue
        lines.append(f"{kind}: max {found['max']['events_per_second']:,} payments/s")
        for name, phase in found.items():
            if name != "max":
                lines.append(f"{kind}: {describe_phase(phase)}")
    return "\n".join(lines)
