"""`sluice bench peers`: sluice side by side with the Python peers on one broker.

Three jobs over the same events — JSON payments of ~200 bytes keyed by 1,000 users
(streams.offline.demo_data, no malformed ones) in a 4-partition topic:

    filter   pass-through with a filter (`amount > 0`)
    count    per-key running count (sluice: the declarative `aggregate` step, before it a
             component with `ctx.state`;
             Quix: `State` in `sdf.apply(..., stateful=True)`)
    window   tumbling 1-minute count + sum per key on the event time, final results
             (sluice: a window step; Quix: `tumbling_window(...).agg(...).final()`)

Contenders, each a process of its own: `raw-send` (aiokafka: orjson decode, filter,
encode, one `send` per record; filter job only), `raw-batch` (the same with record batches
and `send_batch`), `quix` (Quix Streams, its defaults: RocksDB state with changelog topics,
commits every 5 s), `sluice` (a `sluice worker` with the shipped settings) and
`sluice-faust` ("sluice on Faust": the same pipeline as Faust agents with state in Faust
tables, `sluice worker --engine faust`).

Two regimes:
- catch-up: the topic is filled first; each contender reads it from the earliest offset.
  Rate = events / (time of the last result - time of the first result), so process start,
  group join and state recovery are left out (reported apart as `startup_seconds`).
- live: the contender is started and ready first, then the events are produced as fast as
  possible (librdkafka producer). Rate = events / (time of the last result - time of the
  first produce).

"The last result" is the last output record read back (filter: every record with
`amount > 0`; count: one per event) by a librdkafka consumer with a 50 ms fetch wait
(arrival times are up to that late on tansu, which holds a fetch for its whole wait); for
the windowed job it is the moment the contender has processed every input record (sluice:
`sluice_events_in_total` read every 0.05 s; Quix: a counter in the dataframe) — final window
results come out when windows close, which times the event clock, not the processing.

Every run also reports the CPU seconds the contender and the broker used while processing
(`cpu_us_per_event`): on a shared machine that moves less than events per second.
Contenders run interleaved (job by job, the order rotated each run); a contender that fails
is recorded as `{"failed": reason}` and the others still run.

The Avro variant (`--formats avro`, or both): the same records in the Confluent wire format
(bench.avro_payments: the demo payment as an Avro record), the schemas in an Apicurio
Registry 3.3.3 the bench starts on 127.0.0.1 (tests/brokers/registry.py, as the tests do).
Contenders: `raw-batch` with fastavro (the reference loop), `sluice` (`format: avro` on
source and sink; the count job's sink takes `schema:` {n: long}, what its `aggregate`
step emits, the others are derived) and `quix` (its AvroDeserializer/AvroSerializer
through SchemaRegistryClientConfig).
"sluice on Faust" reads JSON only, so it is not in the Avro variant. Results come under
`<regime> avro`, and `avro/json` ratios per contender next to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.avro_payments import format_ratios
from bench.contenders import JOBS
from bench.support import (
    PARTITIONS,
    ROOT,
    BenchError,
    Broker,
    Clocks,
    WorkerProcess,
    broker_result,
    create_topics,
    load_average,
    machine,
    on_each_broker,
    open_broker,
    progress,
    reader_from_start,
    take,
    unique,
)

USERS = 1000
# "sluice on Faust": the same pipeline as Faust agents (`sluice worker --engine faust`)
ON_FAUST = "sluice-faust"
CONTENDERS = {
    "filter": ("raw-send", "raw-batch", "quix", "sluice", ON_FAUST),
    "count": ("quix", "sluice", "sluice-component", ON_FAUST),
    "window": ("quix", "sluice", ON_FAUST),
}
# where the broker has transactions: sluice with processing.guarantee exactly_once too,
# for the cost of exactly-once (its rate over sluice's at-least-once one)
EXACTLY_ONCE = "sluice-eos"
# the per-key count as the component a user wrote before the `aggregate` step existed
COMPONENT = "sluice-component"
REGIMES = ("catch-up", "live")
FORMATS = ("json", "avro")
AVRO_CONTENDERS = {
    "filter": ("raw-batch", "quix", "sluice"),
    "count": ("quix", "sluice"),
    "window": ("quix", "sluice"),
}
# Quix Streams derives its changelog topics' settings from the source topic's retention
SOURCE_CONFIG = {"retention.ms": str(7 * 24 * 3600 * 1000)}
FETCH_WAIT_MS = 50
SETTLE_S = 1.0  # after the last expected result: duplicates or extras would show

SLUICE_PIPELINES = {
    "filter": """
pipeline: peers-filter
source: {{topic: {source}}}
steps:
  - filter: "amount > 0"
sink: {{topic: {sink}}}
""",
    "count": """
pipeline: peers-count
source: {{topic: {source}}}
steps:
  - aggregate: {{aggregates: {{n: count()}}}}
sink: {{topic: {sink}}}
""",
    "count-component": """
pipeline: peers-count
source: {{topic: {source}}}
steps:
  - component: {{class: "bench.contenders:RunningCount"}}
sink: {{topic: {sink}}}
""",
    "window": """
pipeline: peers-window
source: {{topic: {source}, timestamp: ts}}
steps:
  - window:
      type: tumbling
      size: 1m
      grace: 10s
      key: user_id
      aggregates: {{n: count(), total: sum(amount)}}
sink: {{topic: {sink}}}
""",
}


@dataclass(frozen=True)
class Variant:
    """The record format of one run of the jobs: JSON, or Avro through a registry."""

    format: str = "json"
    registry_url: str = ""

    @property
    def label(self) -> str:
        return "" if self.format == "json" else f" {self.format}"

    def contenders(self, job: str, transactions: bool) -> list[str]:
        if self.format == "avro":
            return list(AVRO_CONTENDERS[job])
        return [*CONTENDERS[job], *([EXACTLY_ONCE] if transactions else [])]

    def register_source(self, topic: str) -> None:
        """The payment schema under `<topic>-value`: sluice derives its outputs from it."""
        if self.format == "avro":
            from bench.avro_payments import PAYMENT_SCHEMA, schema_text
            from bench.contenders import _registry

            _registry(
                self.registry_url,
                "POST",
                f"/subjects/{topic}-value/versions",
                {"schema": schema_text(PAYMENT_SCHEMA)},
            )


JSON = Variant()


@dataclass
class Events:
    """The benchmark's input: (key, value) pairs, and what each job must emit."""

    records: list[tuple[bytes, bytes]]
    kept: int  # records with amount > 0

    @classmethod
    def generate(cls, count: int, seed: int = 11) -> Events:
        from streams.offline.demo_data import payments

        records = []
        kept = 0
        for line in payments(count, seed=seed, users=USERS, malformed_ratio=0):
            value = orjson.loads(line)
            records.append((value["user_id"].encode(), line))
            kept += value["amount"] > 0
        return cls(records, kept)

    def expected(self, job: str) -> int:
        return self.kept if job == "filter" else len(self.records)

    def as_avro(self, variant: Variant) -> Events:
        """The same records in wire-format Avro, the schema registered as `bench-payments`."""
        from bench.avro_payments import PAYMENT_SCHEMA, encode_values, schema_text
        from bench.contenders import _registry

        schema_id = _registry(
            variant.registry_url,
            "POST",
            "/subjects/bench-payments-value/versions",
            {"schema": schema_text(PAYMENT_SCHEMA)},
        )["id"]
        values = encode_values([v for _, v in self.records], int(schema_id))
        return Events([(k, v) for (k, _), v in zip(self.records, values, strict=True)], self.kept)


def produce(address: str, topic: str, records: list[tuple[bytes, bytes]]) -> float:
    """Every record into `topic` as fast as librdkafka goes; returns when the first was
    handed over (epoch seconds)."""
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": address,
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 500_000,
            "log_level": 3,
        }
    )
    began = time.time()
    send = producer.produce
    for key, value in records:
        while True:
            try:
                send(topic, value, key)
                break
            except BufferError:
                producer.poll(0.005)
    remaining = producer.flush(120)
    if remaining:
        raise BenchError(f"{remaining} records not delivered to {topic}")
    return began


class OutputCounter(threading.Thread):
    """Reads a topic from its start and counts records: when the first and the latest
    arrived."""

    def __init__(self, address: str, topic: str) -> None:
        super().__init__(daemon=True, name=f"count {topic}")
        self.address = address
        self.topic = topic
        self.count = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.error: str | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        consumer = None
        try:
            consumer = reader_from_start(self.address, self.topic, FETCH_WAIT_MS, "bench-counter")
            while not self._halt.is_set():
                messages = take(consumer, 10_000)
                if not messages:
                    continue
                now = time.time()
                good = sum(1 for m in messages if m.error() is None)
                if good:
                    self.count += good
                    self.first_at = self.first_at or now
                    self.last_at = now
        except Exception as exc:  # reported with the contender's result
            self.error = repr(exc)
        finally:
            if consumer is not None:
                consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


class Contender(ABC):
    """One contender process: start, readiness, progress, CPU, stop (and clean up)."""

    name: str
    ready_at: float | None = None
    processed_first: float | None = None  # windowed job: first input record processed
    processed_all: float | None = None  # … and the last one

    @property
    @abstractmethod
    def pid(self) -> int | None: ...

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def check(self) -> None:
        """Raises BenchError when the contender died."""

    @abstractmethod
    def stop(self) -> None: ...


class PeerProcess(Contender):
    """raw-send, raw-batch or quix: bench.contenders in a subprocess."""

    def __init__(
        self,
        kind: str,
        job: str,
        broker: Broker,
        source: str,
        sink: str,
        events: int,
        variant: Variant = JSON,
    ) -> None:
        self.name = kind
        self.folder = Path(tempfile.mkdtemp(prefix=f"sluice-bench-{kind}-"))
        self.command = [
            sys.executable,
            "-m",
            "bench.contenders",
            kind,
            "--job",
            job,
            "--broker",
            broker.address,
            "--source",
            source,
            "--sink",
            sink,
            "--group",
            unique(f"bench-{kind}"),
            "--events",
            str(events),
            "--partitions",
            str(PARTITIONS),
            "--state-dir",
            str(self.folder / "state"),
            "--format",
            variant.format,
            "--registry",
            variant.registry_url,
        ]
        self.log_path = self.folder / "stderr.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our interpreter, our module
                self.command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log
            )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            try:
                said = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if "ready" in said:
                self.ready_at = self.ready_at or said["ready"]
            elif said.get("processed") == 1:
                self.processed_first = said["at"]
            elif "processed" in said:
                self.processed_all = said["at"]

    def check(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise BenchError(f"exited {self.process.returncode}: {' | '.join(tail)[-600:]}")

    def stop(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)


class SluiceContender(Contender):
    """A `sluice worker` with the shipped settings running the job's pipeline."""

    def __init__(
        self,
        job: str,
        broker: Broker,
        source: str,
        sink: str,
        events: int,
        *,
        exactly_once: bool = False,
        component: bool = False,
        on_faust: bool = False,
        variant: Variant = JSON,
    ) -> None:
        self.name = (
            EXACTLY_ONCE
            if exactly_once
            else COMPONENT
            if component
            else ON_FAUST
            if on_faust
            else "sluice"
        )
        self.job = job
        self.events = events
        template = SLUICE_PIPELINES[f"{job}-component" if component else job]
        files: dict[str, str] = {}
        overrides: dict[str, Any] = {}
        if variant.format == "avro":
            overrides["schema_registry"] = {"url": variant.registry_url}
            sink_format = "format: avro"
            if job == "count":  # the aggregate step's result schema is not derived
                from bench.avro_payments import SLUICE_COUNT_SCHEMA, schema_text

                files["count.avsc"] = schema_text(SLUICE_COUNT_SCHEMA)
                sink_format += ", schema: count.avsc"
            source, sink = f"{source}, format: avro", f"{sink}, {sink_format}"
        pipeline = template.format(source=source, sink=sink)
        if exactly_once:
            overrides["processing"] = {"guarantee": "exactly_once"}
        if on_faust:
            overrides["engine"] = "faust"
        files[f"peers-{job}.yaml"] = pipeline
        self.worker = WorkerProcess(broker, files, overrides=overrides)
        self._halt = threading.Event()

    @property
    def pid(self) -> int | None:
        return self.worker.pid

    def start(self) -> None:
        self.worker.start()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        """Readiness, and for the windowed job the records processed (every 0.05 s)."""
        worker = self.worker
        while not self._halt.is_set() and worker.alive():
            try:
                if self.ready_at is None:
                    if worker.get("/ready", timeout=1)[0] == 200:
                        self.ready_at = time.time()
                elif self.job == "window":
                    done = worker.metrics().total("sluice_events_in_total")
                    now = time.time()
                    if done > 0 and self.processed_first is None:
                        self.processed_first = now
                    if done >= self.events:
                        self.processed_all = now
                        return
            except (OSError, BenchError):
                pass
            time.sleep(0.05)

    def check(self) -> None:
        if not self.worker.alive():
            raise BenchError(
                f"the worker exited {self.worker.exit_code()}: {self.worker.log_tail(5)[-600:]}"
            )

    def stop(self) -> None:
        self._halt.set()
        self.worker.stop()
        shutil.rmtree(self.worker.folder, ignore_errors=True)


def _contender(
    kind: str, job: str, broker: Broker, source: str, sink: str, events: int, variant: Variant
) -> Contender:
    if kind in ("sluice", EXACTLY_ONCE, ON_FAUST):
        return SluiceContender(
            job,
            broker,
            source,
            sink,
            events,
            exactly_once=kind == EXACTLY_ONCE,
            on_faust=kind == ON_FAUST,
            variant=variant,
        )
    if kind == COMPONENT:
        return SluiceContender(job, broker, source, sink, events, component=True)
    return PeerProcess(kind, job, broker, source, sink, events, variant)


def run_one(
    broker: Broker,
    job: str,
    kind: str,
    regime: str,
    events: Events,
    source: str | None,
    variant: Variant = JSON,
) -> dict[str, Any]:
    """One contender on one job in one regime; `source` is the pre-filled topic (catch-up)
    or None (live: a fresh topic, filled once the contender is ready)."""
    count = len(events.records)
    expected = events.expected(job)
    timeout = 90 + count / 2000
    live = source is None
    if source is None:
        source = unique(f"peers-live-{job}")
        asyncio.run(create_topics(broker.address, [source], config=SOURCE_CONFIG))
        variant.register_source(source)
    sink = unique(f"peers-{job}-{kind}")
    asyncio.run(create_topics(broker.address, [sink]))
    counter = OutputCounter(broker.address, sink)
    counter.start()
    contender = _contender(kind, job, broker, source, sink, count, variant)
    loads = load_average()
    contender.start()
    started = time.time()
    try:
        produced_at = None
        if live:
            while contender.ready_at is None:
                contender.check()
                if time.time() - started > 120:
                    raise BenchError("not ready in 120 s")
                time.sleep(0.05)
            time.sleep(0.5)  # the consumer's first fetch is in flight
            clocks_began = Clocks.of(contender.pid, broker.pid)
            produced_at = produce(broker.address, source, events.records)
        began, ended, clocks = _wait(contender, counter, broker, job, expected, started + timeout)
        clocks_ended = Clocks.of(contender.pid, broker.pid)
        if live:
            clocks = clocks_began
            began = produced_at
        assert began is not None and clocks is not None
        if job != "window":
            time.sleep(SETTLE_S)
    finally:
        contender.stop()
        counter.stop()
    seconds = ended - began
    if seconds <= 0.05:
        raise BenchError(f"done in {seconds:.3f} s, too fast to time: use more --events")
    result: dict[str, Any] = {
        "events_per_second": round(count / seconds),
        "seconds": round(seconds, 3),
        "results": counter.count,
        "startup_seconds": None if live else round(began - started, 2),
        "load_average_before": loads,
        "load_average_after": load_average(),
    }
    if job != "window":
        result["expected_results"] = expected
        result["extra_results"] = counter.count - expected
    cpu = clocks.delta(clocks_ended, "cpu")
    if cpu is not None:
        result["cpu_seconds"] = round(cpu, 2)
        result["cpu_us_per_event"] = round(cpu / count * 1e6, 2)
    result["run_queue_percent"] = clocks.percent(clocks_ended, "waiting")
    broker_cpu = clocks.delta(clocks_ended, "broker_cpu")
    if broker_cpu is not None:
        result["broker_cpu_seconds"] = round(broker_cpu, 2)
    return result


def _wait(
    contender: Contender,
    counter: OutputCounter,
    broker: Broker,
    job: str,
    expected: int,
    deadline: float,
) -> tuple[float | None, float, Clocks | None]:
    """Until the job is done: (first result or first processed, last, the contender's and
    the broker's clocks when the first result was seen)."""
    clocks = None
    while True:
        contender.check()
        if counter.error:
            raise BenchError(f"reading the results: {counter.error}")
        if job == "window":
            first, last = contender.processed_first, contender.processed_all
            done = last is not None
        else:
            first, last = counter.first_at, counter.last_at
            done = counter.count >= expected
        if first is not None and clocks is None:
            clocks = Clocks.of(contender.pid, broker.pid)
        if done:
            assert last is not None
            return first, last, clocks
        if time.time() > deadline:
            got = counter.count if job != "window" else "not all"
            raise BenchError(f"only {got} of {expected} results before the deadline")
        time.sleep(0.02)


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["events_per_second"] for r in runs if "events_per_second" in r]
    failed = [r["failed"] for r in runs if "failed" in r]
    summary: dict[str, Any] = {"runs": runs}
    if rates:
        summary["median_events_per_second"] = round(statistics.median(rates))
        summary["best_events_per_second"] = max(rates)
        cpu = [r["cpu_us_per_event"] for r in runs if "cpu_us_per_event" in r]
        if cpu:
            summary["median_cpu_us_per_event"] = round(statistics.median(cpu), 2)
    if failed and not rates:
        summary["failed"] = failed[-1]
    return summary


def _ratios(jobs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ratios: dict[str, Any] = {}
    for job, contenders in jobs.items():
        sluice = contenders.get("sluice", {}).get("median_events_per_second")
        for other in ("quix", "raw-send", "raw-batch", ON_FAUST):
            theirs = contenders.get(other, {}).get("median_events_per_second")
            if sluice and theirs:
                ratios[f"{job}: sluice/{other}"] = round(sluice / theirs, 3)
        on_faust = contenders.get(ON_FAUST, {}).get("median_events_per_second")
        theirs = contenders.get("quix", {}).get("median_events_per_second")
        if on_faust and theirs:
            ratios[f"{job}: {ON_FAUST}/quix"] = round(on_faust / theirs, 3)
        exactly_once = contenders.get(EXACTLY_ONCE, {}).get("median_events_per_second")
        if sluice and exactly_once:
            ratios[f"{job}: exactly_once/at_least_once"] = round(exactly_once / sluice, 3)
    return ratios


def bench_broker(
    kind: str,
    variants: list[tuple[Variant, Events]],
    runs: int,
    jobs: list[str],
    regimes: list[str],
) -> dict[str, Any]:
    """Every regime, then every format: results under `regime` (JSON) or `regime avro`."""
    found: dict[str, Any] = {}
    with open_broker(kind) as broker:
        for regime in regimes:
            for variant, events in variants:
                label = regime + variant.label
                source = None
                if regime == "catch-up":
                    source = unique("peers-source")
                    asyncio.run(create_topics(broker.address, [source], config=SOURCE_CONFIG))
                    variant.register_source(source)
                    progress(f"{kind}: filling {source} with {len(events.records):,} events…")
                    produce(broker.address, source, events.records)
                contenders_of = {job: variant.contenders(job, broker.transactions) for job in jobs}
                results: dict[str, dict[str, list[dict[str, Any]]]] = {
                    job: {c: [] for c in contenders_of[job]} for job in jobs
                }
                for run in range(runs):
                    for job in jobs:
                        order = contenders_of[job]
                        shift = run % len(order)
                        for contender in order[shift:] + order[:shift]:
                            progress(f"{kind} {label} run {run + 1}/{runs}: {job} x {contender}…")
                            try:
                                outcome = run_one(
                                    broker, job, contender, regime, events, source, variant
                                )
                            except Exception as exc:  # recorded; the other contenders go on
                                outcome = {"failed": f"{type(exc).__name__}: {exc}"[:1000]}
                            results[job][contender].append(outcome)
                            progress(f"  {contender}: {_describe(outcome)}")
                summaries = {
                    job: {c: _summary(r) for c, r in contenders.items()}
                    for job, contenders in results.items()
                }
                found[label] = {"jobs": summaries, "ratios": _ratios(summaries)}
    return found


def _describe(outcome: dict[str, Any]) -> str:
    if "failed" in outcome:
        return f"FAILED: {outcome['failed'][:300]}"
    text = f"{outcome['events_per_second']:,} events/s"
    if "cpu_us_per_event" in outcome:
        text += f", {outcome['cpu_us_per_event']} µs CPU/event"
    if outcome.get("extra_results"):
        text += f", {outcome['extra_results']} extra results"
    return text + f" (load {outcome['load_average_before'][0]})"


def bench_peers(
    events: int = 200_000,
    runs: int = 1,
    broker: str = "tansu",
    jobs: list[str] | None = None,
    regimes: list[str] | None = None,
    results_dir: Path | None = None,
    formats: list[str] | None = None,
) -> dict[str, Any]:
    jobs = jobs or list(JOBS)
    regimes = regimes or list(REGIMES)
    formats = formats or list(FORMATS)
    progress(f"generating {events:,} events…")
    generated = Events.generate(events)
    began = machine()
    details: dict[str, Any] = {
        "events": events,
        "event_bytes": round(sum(len(v) for _, v in generated.records) / events),
        "users": USERS,
        "partitions": PARTITIONS,
        "runs": runs,
        "formats": formats,
        "versions": _versions(),
    }
    with contextlib.ExitStack() as stack:
        variants = [(JSON, generated)] if "json" in formats else []
        if "avro" in formats:
            try:
                variant, encoded = _avro_variant(stack, generated)
            except Exception as exc:  # reported; the JSON variant still runs
                details["avro_failed"] = f"{type(exc).__name__}: {exc}"[:1000]
                progress(f"the Avro variant cannot run: {details['avro_failed']}")
            else:
                variants.append((variant, encoded))
                details["avro_event_bytes"] = round(
                    sum(len(v) for _, v in encoded.records) / events
                )
        brokers = on_each_broker(
            broker, lambda kind: bench_broker(kind, variants, runs, jobs, regimes)
        )
    for found in brokers.values():
        if isinstance(found, dict) and "failed" not in found:
            found["avro/json"] = format_ratios(found, formats)
    return broker_result("peers", details, brokers, began, results_dir)


def _avro_variant(stack: contextlib.ExitStack, generated: Events) -> tuple[Variant, Events]:
    """An Apicurio Registry for the run (stopped when `stack` closes) and the input
    encoded through it. The registry's starter is the checkout's (tests/brokers), as
    Apache Kafka's is (bench.support.open_broker): put on the path for the installed
    `sluice` command, which does not run from the checkout."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.brokers.registry import ApicurioRegistry

    progress("starting Apicurio Registry for the Avro variant…")
    registry = stack.enter_context(ApicurioRegistry())
    variant = Variant("avro", registry.url)
    return variant, generated.as_avro(variant)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("sluice", "aiokafka", "quixstreams", "confluent-kafka", "faust-streaming"):
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    return found


def describe(result: dict[str, Any]) -> str:
    """The figures as a plain table; then, with both formats, each contender's Avro rate
    over its JSON rate (the Avro variant's sluice/quix is among its own ratios)."""
    lines = []
    if "avro_failed" in result:
        lines.append(f"avro: FAILED: {result['avro_failed']}")
    for kind, regimes in result["brokers"].items():
        if "failed" in regimes:
            lines.append(f"{kind}: FAILED: {regimes['failed']}")
            continue
        for regime, found in regimes.items():
            if regime == "avro/json":
                continue
            lines.append(f"{kind}, {regime} (events/s, median of runs):")
            for job, contenders in found["jobs"].items():
                cells = []
                for name, summary in contenders.items():
                    if "median_events_per_second" in summary:
                        cells.append(f"{name} {summary['median_events_per_second']:,}")
                    else:
                        cells.append(f"{name} FAILED")
                lines.append(f"  {job:<7} " + " | ".join(cells))
            for name, ratio in found["ratios"].items():
                lines.append(f"  {name} = {ratio:.2f}")
        if regimes.get("avro/json"):
            lines.append(f"{kind}, Avro over JSON (events/s of each contender):")
            for name, ratio in regimes["avro/json"].items():
                lines.append(f"  {name} = {ratio:.2f}")
    return "\n".join(lines)
