"""One pipeline in a worker: the pure `Pipeline`, the topic it reads, its state stores,
what it reports.

A pipeline whose state is keyed by `source.key` reads its source in two stages: the
source records are re-keyed onto `<app_id>-<pipeline>-repartition` (value and headers
unchanged, the source position added as headers), and the pipeline reads that topic,
where each key's records meet the changelog partition holding the key's state. The
runner does the work of a stage; the engine decides when (batches, checkpoints,
rebalances).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import orjson

from models.pipeline_spec import PipelineSpec
from models.settings import Settings
from streams.core.records import BatchResult, Event
from streams.core.state import runtime_store_name, step_store_name
from streams.core.tracing import continue_trace, trace_id_in
from streams.core.watchdog import Watchdog
from streams.runtime.changelog import ChangelogStore, WorkerState
from streams.runtime.formats import RecordFormats
from streams.runtime.output import Output
from streams.runtime.pipeline_status import (
    event_time_lag,
    pipeline_status,
    split_tombstones,
    text_key,
)
from streams.runtime.prometheus import PrometheusPipelineMetrics
from streams.runtime.recovery import first_deliveries
from streams.runtime.seams import RecordLike
from streams.runtime.sender import (
    ResultSender,
    forward_rekeyed,
)
from streams.steps.keyed import AlertStep
from streams.steps.kinds import step_kind
from streams.steps.pipeline import SOURCE_STEP, Pipeline
from streams.steps.route import SINK_STEP

log = logging.getLogger("sluice.pipeline")

FORWARDED_STORE = "forwarded"  # per repartition partition: the last source offset applied
LOGGED_DEAD_LETTERS_PER_BATCH = 10  # a flood of bad records must not become a flood of logs


# what the runtime reads of an aiokafka ConsumerRecord
ConsumerRecordLike = RecordLike


def needs_repartition(spec: PipelineSpec) -> bool:
    return spec.source.key is not None and any(step_kind(s.kind).stateful for s in spec.steps)


def repartition_topic(app_id: str, pipeline: str) -> str:
    return f"{app_id}-{pipeline}-repartition"


def join_repartition_topic(app_id: str, pipeline: str) -> str:
    """The other stream of a pipeline's join, re-keyed by the join's `other_key`."""
    return f"{app_id}-{pipeline}-join-repartition"


def to_events(records: Sequence[ConsumerRecordLike], *, trace: bool) -> list[Event]:
    """Consumer records as pipeline input: raw value, key, Kafka time, headers (the W3C
    `traceparent` continued with a span of sluice's, or a new trace), position."""
    events = []
    for record in records:
        headers = list(record.headers) if record.headers else []
        events.append(
            Event(
                None,
                key=text_key(record.key),
                timestamp_ms=record.timestamp,
                headers=continue_trace(headers) if trace else headers,
                raw=record.value if record.value is not None else b"",
                partition=record.partition,
                offset=record.offset,
            )
        )
    return events


class PipelineRunner:
    """Owns one pipeline in a worker (see the module docstring)."""

    def __init__(
        self,
        spec: PipelineSpec,
        settings: Settings,
        state: WorkerState,
        metrics: PrometheusPipelineMetrics,
        watchdog: Watchdog | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec.pipeline
        self.metrics = metrics
        self.telemetry = settings.telemetry
        owned = state.for_pipeline(self.name)  # the stores it makes are this pipeline's
        self.pipeline = Pipeline(
            spec,
            state=owned,
            metrics=metrics,
            max_message_bytes=settings.processing.max_message_bytes,
            max_event_time_skew_ms=settings.processing.max_event_time_skew,
            watchdog=watchdog,
        )
        self.source_topic = spec.source.topic
        self.repartition_topic = (
            repartition_topic(settings.app_id, self.name) if needs_repartition(spec) else None
        )
        self.forwarded: ChangelogStore | None = None
        if self.repartition_topic is not None:
            self.forwarded = owned.store(runtime_store_name(self.name, FORWARDED_STORE))
        self.stores: list[ChangelogStore] = state.stores_of(self.name)
        self.lookups = state.lookups_of(self.name, spec.tables)
        self.stage_topic = self.repartition_topic or self.source_topic
        # a join: its other stream is re-keyed onto a second stage topic, co-partitioned
        # with the first; both stages feed this runner (see `stages`)
        join = spec.join
        self.join_stream = join.stream if join is not None else None
        self.join_topic = (
            join_repartition_topic(settings.app_id, self.name) if join is not None else None
        )
        self.sender = ResultSender(
            spec.dead_letter_topic,
            spec.source.topic,
            trace=self.telemetry,
            max_message_bytes=settings.processing.max_message_bytes,
        )
        self.alert_topics = sorted(
            {step.topic for step in self.pipeline.steps if isinstance(step, AlertStep)}
        )
        # registry formats: decoding sources, encoding Avro outputs (set by the worker)
        self.formats: RecordFormats | None = None
        self.latencies: deque[float] = deque(maxlen=2000)
        self.recent_dead_letters: deque[dict[str, Any]] = deque(maxlen=20)
        self.lag = 0
        self.watermarks: dict[int, int] = {}  # partition -> largest event time seen

    # --- stages ------------------------------------------------------------------------

    @property
    def stages(self) -> dict[str, str | None]:
        """The topics this runner processes, each with the stream `Pipeline.process` is
        told it holds (None: the pipeline's source)."""
        stages: dict[str, str | None] = {self.stage_topic: None}
        if self.join_topic is not None:
            stages[self.join_topic] = self.join_stream
        return stages

    @property
    def rekeyed(self) -> dict[str, str]:
        """The topics this runner re-keys, each to its repartition topic."""
        rekeyed = {}
        if self.repartition_topic is not None:
            rekeyed[self.source_topic] = self.repartition_topic
        if self.join_stream is not None and self.join_topic is not None:
            rekeyed[self.join_stream] = self.join_topic
        return rekeyed

    def rekey(self, records: Sequence[ConsumerRecordLike], output: Output) -> None:
        """Source records onto the repartition topic, keyed by `source.key`, with their
        source position in headers (a join's other stream: onto its own, by `other_key`)."""
        join = self.spec.join
        if join is not None and records and records[0].topic == self.join_stream:
            fields: tuple[str, ...] | None = join.right_key
            topic = self.join_topic
        else:
            fields = self.spec.source.key
            topic = self.repartition_topic
        assert fields is not None and topic is not None
        decode = orjson.loads if self.formats is None else self._peek
        forward_rekeyed(records, fields, topic, output, lambda r: list(r.headers or ()), decode)

    async def before_rekey(self, records: Sequence[ConsumerRecordLike]) -> None:
        """A registry-format source's schemas are fetched before `rekey` reads the key
        fields (it waits while the registry is down, like decoding does)."""
        source = self.spec.source
        if self.formats is not None and source.format != "json":
            await self.formats.fetch_for([r.value for r in records if r.value], source.format)

    def _peek(self, value: bytes) -> Any:
        formats, source = self.formats, self.spec.source
        assert formats is not None
        if source.format == "json":
            return orjson.loads(value)
        return formats.peek(value, source.format)

    def _tombstones_out(
        self, records: Sequence[ConsumerRecordLike], output: Output
    ) -> list[ConsumerRecordLike]:
        """Records without a value are not events: dead letters at the source that keep
        the null value, counted like any record read."""
        kept, letters = split_tombstones(
            records,
            lambda record: list(record.headers or ()),
            output,
            self.sender.dead_letter_topic,
            self.source_topic,
        )
        if letters:
            self.metrics.events_in(len(letters))
            self.metrics.dead_letters(SOURCE_STEP, "invalid_json", len(letters))
            self._note(BatchResult(dead_letters=letters))
        return kept

    async def process(
        self, records: Sequence[ConsumerRecordLike], output: Output, stream: str | None = None
    ) -> None:
        """Stage records through the pipeline (`stream`: those of a join's other stream);
        results onto the output."""
        if self.forwarded is not None:
            records = first_deliveries(self.forwarded, records, self.join_topic, self.join_stream)
            if not records:
                return
        if any(r.value is None for r in records):
            records = self._tombstones_out(records, output)
        events = to_events(records, trace=self.telemetry)
        if self.formats is not None and stream is None:  # a registry-format source
            await self.formats.decode_source(self.spec, [r.key for r in records], events)
        result = await self.pipeline.process(events, stream)
        self._note_event_times(events)
        letters = len(result.dead_letters)
        self.sender.send(result, output)
        self._count_oversize(result, letters)
        self._note(result)
        if self.telemetry:
            now_ms = time.time() * 1000
            seconds = [max(0.0, (now_ms - r.timestamp) / 1000) for r in records]
            self.metrics.latencies(seconds)
            self.latencies.extend(seconds[-200:])

    async def flush_idle(self, output: Output) -> None:
        """Windows of partitions idle by wall clock close (the engine calls it only when
        every assigned partition of the stage topic is processed to its end)."""
        result = await self.pipeline.flush(final=False)
        if result.outputs or result.dead_letters:
            letters = len(result.dead_letters)
            self.sender.send(result, output)
            self._count_oversize(result, letters)
            self._note(result)

    def _count_oversize(self, result: BatchResult, before: int) -> None:
        """Results the sender turned into dead letters (too large to send) are counted
        as such (they were counted as outputs by the pipeline already)."""
        for letter in result.dead_letters[before:]:  # oversize, or schema (an Avro output)
            self.metrics.dead_letters(SINK_STEP, letter.error_type, 1)

    def persist(self) -> None:
        self.pipeline.persist()

    def reset(self) -> None:
        """The stores changed under the steps (a rebalance): rebuild their caches."""
        self.pipeline.reset()
        self.watermarks.clear()

    def _note_event_times(self, events: list[Event]) -> None:
        marks = self.watermarks
        for event in events:
            t = event.timestamp_ms
            if t > marks.get(event.partition, -1):
                marks[event.partition] = t

    def event_time_lag(self, now_ms: float) -> float | None:
        """Seconds the slowest partition's watermark is behind the wall clock."""
        return event_time_lag(self.watermarks, now_ms)

    def _note(self, result: BatchResult) -> None:
        note_result(result, self.recent_dead_letters, self.alert_topics, self.telemetry, log)

    def status(self) -> dict[str, Any]:
        return pipeline_status(
            self.spec,
            self.metrics,
            self.latencies,
            self.event_time_lag(time.time() * 1000),
            self.lag,
            self.recent_dead_letters,
        )

    def state_of(self, step: str, key: str) -> Any:
        name = step_store_name(self.name, step)
        for store in self.stores:
            if store.name == name:
                return store.get(key)
        raise KeyError(step)


class Routes:
    """Which runners a topic's records go to: the stage topic's runners process them,
    the source topic of a re-keyed pipeline's runners forward them; the internal topics
    are those the worker both reads and writes (streams.runtime.backpressure)."""

    def __init__(self, runners: Sequence[PipelineRunner]) -> None:
        self.stage: dict[str, list[PipelineRunner]] = {}
        self.rekey: dict[str, list[PipelineRunner]] = {}
        for runner in runners:
            for stage in runner.stages:  # a join's runner has two
                self.stage.setdefault(stage, []).append(runner)
            for rekeyed in runner.rekeyed:
                self.rekey.setdefault(rekeyed, []).append(runner)
        self.topics = sorted({*self.stage, *self.rekey})
        written = {topic for runner in runners for topic in runner.spec.output_topics()}
        written |= {t for r in runners for t in r.rekeyed.values()}
        self.internal = [topic for topic in self.topics if topic in written]


def note_result(
    result: BatchResult,
    recent_dead_letters: deque[dict[str, Any]],
    alert_topics: Sequence[str],
    telemetry: bool,
    log: logging.Logger,
) -> None:
    """A batch's result noted (a worker's runner, a Faust agent): the latest dead letters
    for the dashboard and /api; a log line per dead letter and per alert
    transition, with the record's trace id."""
    letters = result.dead_letters
    for letter in letters[:20]:
        recent_dead_letters.appendleft(
            {
                "at": time.time(),
                "step": letter.step,
                "type": letter.error_type,
                "message": letter.message[:300],
                "trace_id": trace_id_in(letter.headers) if telemetry else None,
            }
        )
    if not telemetry:
        return
    for letter in letters[:LOGGED_DEAD_LETTERS_PER_BATCH]:
        log.warning(
            "dead letter at step %s: %s",
            letter.step,
            letter.message[:300],
            extra={
                "trace_id": trace_id_in(letter.headers),
                "step": letter.step,
                "error_type": letter.error_type,
                "partition": letter.partition,
                "offset": letter.offset,
            },
        )
    if len(letters) > LOGGED_DEAD_LETTERS_PER_BATCH:
        log.warning(
            "%d more dead letters in this batch (not logged one by one)",
            len(letters) - LOGGED_DEAD_LETTERS_PER_BATCH,
        )
    for topic in alert_topics:
        for alert in result.outputs.get(topic, ()):
            record = alert.value
            log.info(
                "alert %s %s",
                record.get("alert"),
                record.get("status"),
                extra={
                    "trace_id": trace_id_in(alert.headers),
                    "alert": record.get("alert"),
                    "status": record.get("status"),
                    "severity": record.get("severity"),
                    "key": alert.key,
                },
            )


# --- what the dashboard and the API show --------------------------------------------
