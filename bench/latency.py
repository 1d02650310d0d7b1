"""`sluice bench latency`: processing latency of a worker with the shipped defaults at
fixed rates, measured from outside, and every result counted.

One `sluice worker` with config/sluice.yaml's settings as shipped (only the brokers, app
id and web port are set) runs a filter pipeline that keeps every record. A producer in
this process sends payments (~230 bytes, keyed by 1,000 users) at a fixed rate, each
carrying its send time and a sequence number; a consumer here reads the output topic.
For each rate:

- `external`: receipt - send time, per result (p50/p90/p99/p99.9/max): what a user sees;
- `to_output`: the result's Kafka timestamp (set by the worker's producer when it builds
  the record batch) - send time: the same without the reading consumer's fetch wait;
- `worker_metric`: the worker's own `sluice_end_to_end_latency_seconds` histogram (the
  input record's Kafka timestamp to the send of its result), the change over this rate's
  run, its quantiles interpolated inside the buckets as PromQL does (coarse: the buckets
  are 5, 10, 25, 50, 100 ms…);
- results / sent, duplicates (a result seen twice) and missing ones: in a fault-free run
  every result must arrive exactly once.

The harness's own load on the broker is low and the same for every rate: the producer
batches with linger 5 ms (as `sluice produce`: records due are sent as one record batch per
partition every 5 ms), the consumer (librdkafka, in a thread) waits up to 20 ms per fetch
(on tansu a fetch is held for its whole wait, so `external` includes up to 20 ms of it;
`to_output` does not).

The rates: `--rates 1000,4000,half` by default, where `half` is half of the worker's
maximum, measured first on the same worker: a burst of 50,000 records produced as fast as
possible, rate = records / (last result - first send); `--max-rate N` takes N instead.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from bench.support import (
    BenchError,
    Broker,
    Clocks,
    Histogram,
    WorkerProcess,
    broker_result,
    create_topics,
    exact_quantiles_ms,
    load_average,
    machine,
    on_each_broker,
    open_broker,
    progress,
    reader_from_start,
    take,
    unique,
)

FETCH_WAIT_MS = 20
LINGER_MS = 5
BURST = 50_000
PIPELINE = """
pipeline: latency-filter
source: {{topic: {source}}}
steps:
  - filter: "amount > 0"
sink: {{topic: {sink}}}
"""
LATENCY_METRIC = "sluice_end_to_end_latency_seconds"


def payload_pool(size: int = 10_000) -> list[tuple[bytes, dict[str, Any]]]:
    """Payments to send, (key, record), amounts positive so that every record passes."""
    from streams.offline.demo_data import payments

    pool = []
    for line in payments(size, seed=3, users=1000, malformed_ratio=0):
        record = orjson.loads(line)
        record["amount"] = abs(record["amount"]) or 1.0
        pool.append((record["user_id"].encode(), record))
    return pool


class Results(threading.Thread):
    """The output topic read from its start (a librdkafka consumer in a thread: its
    fetching and parsing run outside the GIL, so the harness does not become the
    bottleneck): per (run, seq) when the result arrived."""

    def __init__(self, address: str, topic: str) -> None:
        super().__init__(daemon=True, name=f"results of {topic}")
        self.address = address
        self.topic = topic
        self.seen: set[tuple[int, int]] = set()
        self.external: dict[int, list[float]] = {}
        self.to_output: dict[int, list[float]] = {}
        self.duplicates: dict[int, int] = {}
        self.last_at: dict[int, float] = {}
        self.error: str | None = None
        self._halt = threading.Event()

    def count(self, run: int) -> int:
        return len(self.external.get(run, ()))

    def run(self) -> None:
        consumer = None
        loads, seen = orjson.loads, self.seen
        try:
            consumer = reader_from_start(self.address, self.topic, FETCH_WAIT_MS, "bench-latency")
            while not self._halt.is_set():
                messages = take(consumer)
                now = time.time()
                for message in messages:
                    if message.error() is not None:
                        continue
                    record = loads(message.value())
                    run, sent = record["run"], record["sent_at"]
                    key = (run, record["seq"])
                    if key in seen:
                        self.duplicates[run] = self.duplicates.get(run, 0) + 1
                        continue
                    seen.add(key)
                    self.external.setdefault(run, []).append(now - sent)
                    self.to_output.setdefault(run, []).append(message.timestamp()[1] / 1000 - sent)
                    self.last_at[run] = now
        except Exception as exc:  # reported by the waiting side
            self.error = repr(exc)
        finally:
            if consumer is not None:
                consumer.close()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(10)


async def send_at_rate(
    address: str,
    topic: str,
    pool: list[tuple[bytes, dict[str, Any]]],
    run: int,
    count: int,
    rate: float | None,
) -> tuple[float, float]:
    """`count` records at `rate` per second (None: as fast as possible), each with the
    time it was handed to the producer; returns (first, last) in epoch seconds.

    Records due are appended to one record batch per partition every LINGER_MS (what a
    producer with that linger does) and sent with `send_batch`: ~2 µs a record instead
    of ~10 µs for `send`, so the harness keeps its rate on a busy machine."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import murmur2

    producer = AIOKafkaProducer(
        bootstrap_servers=address, linger_ms=LINGER_MS, max_batch_size=262_144
    )
    await producer.start()
    dumps, size = orjson.dumps, len(pool)
    partitions = len(await producer.partitions_for(topic))
    partition_of = [(murmur2(key) & 0x7FFFFFFF) % partitions for key, _ in pool]
    inflight: list[asyncio.Future[Any]] = []
    sent = 0
    try:
        began = time.monotonic()
        first = time.time()
        while sent < count:
            if rate is None:
                due = min(count, sent + 5_000)
            else:
                due = min(count, int((time.monotonic() - began) * rate) + 1)
            if due > sent:
                now = time.time()
                batches: dict[int, Any] = {}
                for seq in range(sent, due):
                    key, record = pool[seq % size]
                    value = dumps({**record, "run": run, "seq": seq, "sent_at": now})
                    partition = partition_of[seq % size]
                    batch = batches.get(partition)
                    if batch is None:
                        batch = batches[partition] = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        inflight.append(
                            await producer.send_batch(batch, topic, partition=partition)
                        )
                        batch = batches[partition] = producer.create_batch()
                        batch.append(key=key, value=value, timestamp=None)
                for partition, batch in batches.items():
                    inflight.append(await producer.send_batch(batch, topic, partition=partition))
                sent = due
            if len(inflight) >= 200:
                await asyncio.gather(*inflight)
                inflight.clear()
            if rate is not None and sent < count:
                await asyncio.sleep(LINGER_MS / 1000)
        last = time.time()
        await asyncio.gather(*inflight)
    finally:
        await producer.stop()
    return first, last


async def _wait_for(results: Results, run: int, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while results.count(run) < count and time.monotonic() < deadline:
        if results.error:
            raise BenchError(f"reading the results: {results.error}")
        await asyncio.sleep(0.05)


def _worker_histogram(worker: WorkerProcess) -> Histogram:
    return worker.metrics().histogram(LATENCY_METRIC)


async def measure_max(
    broker: Broker, worker: WorkerProcess, source: str, results: Results, pool: list[Any]
) -> dict[str, Any]:
    """A burst as fast as possible: the worker's maximum rate on this pipeline (live)."""
    run = 0
    first, _ = await send_at_rate(broker.address, source, pool, run, BURST, None)
    await _wait_for(results, run, BURST, 120)
    got = results.count(run)
    if got < BURST:
        raise BenchError(f"the burst: only {got} of {BURST} results in 120 s")
    seconds = results.last_at[run] - first
    return {
        "events": BURST,
        "seconds": round(seconds, 3),
        "events_per_second": round(BURST / seconds),
    }


async def measure_rate(
    broker: Broker,
    worker: WorkerProcess,
    source: str,
    results: Results,
    pool: list[Any],
    run: int,
    rate: float,
    seconds: float,
) -> dict[str, Any]:
    count = max(1, round(rate * seconds))
    before = await asyncio.to_thread(_worker_histogram, worker)
    clocks = Clocks.of(worker.pid, broker.pid)
    loads = load_average()
    first, last = await send_at_rate(broker.address, source, pool, run, count, rate)
    sending = last - first
    await _wait_for(results, run, count, 30)
    await asyncio.sleep(2.0)  # late duplicates would show
    after = await asyncio.to_thread(_worker_histogram, worker)
    now = Clocks.of(worker.pid, broker.pid)
    got = results.count(run)
    found: dict[str, Any] = {
        "rate": round(rate),
        "sent": count,
        "achieved_send_rate": round(count / sending) if sending > 0 else None,
        "results": got,
        "missing": count - got,
        "duplicates": results.duplicates.get(run, 0),
        "external_ms": exact_quantiles_ms(results.external.get(run, [])),
        "to_output_ms": exact_quantiles_ms(results.to_output.get(run, [])),
        "worker_metric_ms": (after - before).quantiles_ms(),
        "load_average_before": loads,
        "load_average_after": load_average(),
    }
    found["worker_cpu_percent"] = clocks.percent(now, "cpu")
    found["worker_run_queue_percent"] = clocks.percent(now, "waiting")
    found["broker_cpu_percent"] = clocks.percent(now, "broker_cpu")
    return found


async def bench_broker(
    kind: str, rates: list[str], seconds: float, max_rate: float | None
) -> dict[str, Any]:
    pool = payload_pool()
    with open_broker(kind) as broker:
        source, sink = unique("latency-in"), unique("latency-out")
        await create_topics(broker.address, [source, sink])
        worker = WorkerProcess(
            broker, {"latency.yaml": PIPELINE.format(source=source, sink=sink)}
        ).start()
        results = Results(broker.address, sink)
        found: dict[str, Any] = {"worker_settings": worker.settings["processing"]}
        try:
            await asyncio.to_thread(worker.wait_ready)
            results.start()
            await asyncio.sleep(1.0)
            if max_rate is None and "half" in rates:
                progress(f"{kind}: the worker's maximum, a burst of {BURST:,}…")
                found["max"] = await measure_max(broker, worker, source, results, pool)
                max_rate = found["max"]["events_per_second"]
                progress(f"  {max_rate:,} events/s")
            elif max_rate is not None:
                found["max"] = {"events_per_second": round(max_rate), "given": True}
            runs = []
            for number, name in enumerate(rates, 1):
                if name == "half":
                    if max_rate is None:
                        raise BenchError("`half` needs the maximum (measured or --max-rate)")
                    rate = max_rate / 2
                else:
                    rate = float(name)
                progress(f"{kind}: {rate:,.0f}/s for {seconds:g} s…")
                outcome = await measure_rate(
                    broker, worker, source, results, pool, number, rate, seconds
                )
                if name == "half":
                    outcome["half_of_max"] = True
                runs.append(outcome)
                progress("  " + describe_rate(outcome))
            found["rates"] = runs
        finally:
            results.stop()
            found["worker_exit_code"] = worker.stop()
            found["worker_log_warnings"] = worker.log_lines_matching('"WARNING"', '"ERROR"')[-20:]
            shutil.rmtree(worker.folder, ignore_errors=True)
    return found


def describe_rate(found: dict[str, Any]) -> str:
    external, metric = found["external_ms"], found["worker_metric_ms"]
    return (
        f"{found['rate']:,}/s: {found['results']:,}/{found['sent']:,} results, "
        f"{found['duplicates']} duplicates; external p50 {external['p50']} p99 {external['p99']} "
        f"p99.9 {external['p999']} max {external['max']} ms; worker metric p50 {metric['p50']} "
        f"p99 {metric['p99']} ms (load {found['load_average_before'][0]})"
    )


def bench_latency(
    broker: str = "tansu",
    rates: list[str] | None = None,
    seconds: float = 20.0,
    max_rate: float | None = None,
    results_dir: Path | None = None,
) -> dict[str, Any]:
    rates = rates or ["1000", "4000", "half"]
    began = machine()
    brokers = on_each_broker(
        broker, lambda kind: asyncio.run(bench_broker(kind, rates, seconds, max_rate))
    )
    details = {
        "pipeline": "filter (amount > 0, every record passes), shipped settings",
        "seconds_per_rate": seconds,
        "harness": {
            "producer_linger_ms": LINGER_MS,
            "consumer_fetch_max_wait_ms": FETCH_WAIT_MS,
        },
    }
    return broker_result("latency", details, brokers, began, results_dir)


def describe(result: dict[str, Any]) -> str:
    lines = []
    for kind, found in result["brokers"].items():
        if "failed" in found:
            lines.append(f"{kind}: FAILED: {found['failed']}")
            continue
        if "max" in found:
            lines.append(f"{kind}: max {found['max']['events_per_second']:,} events/s")
        for run in found.get("rates", []):
            lines.append(f"{kind}: " + describe_rate(run))
    return "\n".join(lines)
