"""One pipeline as Faust agents: batches in, the pure `Pipeline`, record batches out.

    stage topic ─► agent: noack_take(batch_max) ─► Pipeline.process(batch)
                   ─► results, dead letters and changed state keys as record batches
                   (one aiokafka producer: Faust's own) ─► all acknowledged ─► events acked
                   ─► Faust commits acked offsets (every commit_interval, on a rebalance, on stop)

Where `source.key` re-keys a stateful pipeline, a first agent forwards the source records
onto `<app id>-<pipeline>-repartition` keyed by it (value and headers unchanged, the source
position added as headers), so each key's records meet its table partition.

Why `noack_take` and not `take`/`take_events`: those ack a batch in a `finally` when the
loop moves on — also when the batch raised, so a failed batch's offsets would be committed
at the graceful stop that follows. Here events are acked only after their results and
state are on the broker.

At-least-once, and what a crash counts twice: a stateful pipeline keeps, per partition, the
last input offset its state includes (`<pipeline>.__offsets`, a Faust table written after
the batch's state is acknowledged); records at or below it are skipped after a restart, so
a batch whose state reached the changelog is not applied again even when its offsets were
not committed. Only a kill between the state writes and that marker applies a batch twice
(see docs/faust.md for the measured figures).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from models.pipeline_spec import PipelineSpec
from models.settings import Settings
from streams.core.jsonl import dumps
from streams.core.records import BatchResult, DeadLetter, Event, key_of
from streams.core.state import runtime_store_name
from streams.core.tracing import continue_trace, current_pipeline
from streams.runtime.output import Output
from streams.runtime.pipeline_runner import note_result
from streams.runtime.prometheus import PrometheusPipelineMetrics
from streams.runtime.sender import (
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
    ResultSender,
    dead_letter_headers,
    key_bytes,
)
from streams.steps.keyed import AlertStep
from streams.steps.kinds import step_kind
from streams.steps.pipeline import SOURCE_STEP, Pipeline
from streams.steps.route import SINK_STEP

from .table_stores import FaustState, FaustTableStore

log = logging.getLogger("sluice.faust")

# Results and state go out with each batch; every quarter second they are awaited, the
# offsets they include written, and the batches acked (as sluice's own engine commits).
# Awaiting them per batch instead made every batch wait two round trips: 700 records
# took 17 s to pass four pipelines on the embedded broker (measured).
CHECKPOINT_INTERVAL_S = 0.25
OFFSETS_STORE = "offsets"  # per partition (and source partition): the last input applied


def needs_repartition(spec: PipelineSpec) -> bool:
    return spec.source.key is not None and any(step_kind(s.kind).stateful for s in spec.steps)


def is_stateful(spec: PipelineSpec) -> bool:
    return any(step_kind(s.kind).stateful for s in spec.steps)


def _text_key(key: bytes | None) -> str | None:
    return None if key is None else key.decode("utf-8", errors="backslashreplace")


def _headers(message: Any) -> list[tuple[str, bytes]]:
    headers = message.headers
    if not headers:
        return []
    return list(headers.items() if isinstance(headers, dict) else headers)


def to_events(messages: Sequence[Any], *, trace: bool) -> list[Event]:
    """Faust messages as pipeline input: raw value, key, Kafka time (Faust's are seconds),
    headers (the W3C `traceparent` continued, or a new trace), position."""
    events = []
    for message in messages:
        headers = _headers(message)
        events.append(
            Event(
                None,
                _text_key(message.key),
                int(message.timestamp * 1000) if message.timestamp else 0,
                continue_trace(headers) if trace else headers,
                message.value,
                message.partition,
                message.offset,
            )
        )
    return events


class Batches:
    """What an agent's stream hands over, and acks: Faust's `noack_take`."""

    def __init__(self, stream: Any, batch_max: int, within_s: float) -> None:
        self.stream = stream
        self.batch_max = batch_max
        self.within_s = within_s

    def __aiter__(self) -> Any:
        return self.stream.noack_take(self.batch_max, within=self.within_s).__aiter__()

    async def ack(self, events: Sequence[Any]) -> None:
        ack = self.stream.ack
        for event in events:
            await ack(event)


class PipelineAgent:
    """One pipeline in a Faust app: its topics, tables, agents and what it reports."""

    def __init__(
        self,
        app: Any,
        spec: PipelineSpec,
        settings: Settings,
        metrics: PrometheusPipelineMetrics,
        on_crash: Callable[[str, BaseException], None],
    ) -> None:
        self.app = app
        self.spec = spec
        self.name = spec.pipeline
        self.settings = settings
        self.metrics = metrics
        self.on_crash = on_crash
        self.telemetry = settings.telemetry
        processing = settings.processing
        self.partitions = processing.partitions
        self.batch_max = processing.batch_max
        self.within_s = max(processing.batch_within_ms, 1) / 1000
        self.source_topic = spec.source.topic
        self.repartition_topic = (
            f"{app.conf.id}-{self.name}-repartition" if needs_repartition(spec) else None
        )
        self.stage_topic = self.repartition_topic or self.source_topic
        self.state = FaustState(app, self.partitions, self.active_partitions)
        self.pipeline = Pipeline(
            spec,
            state=self.state,
            metrics=metrics,
            max_message_bytes=processing.max_message_bytes,
            max_event_time_skew_ms=processing.max_event_time_skew,
        )
        self.offsets: FaustTableStore | None = None
        if is_stateful(spec):
            store = self.state.store(runtime_store_name(self.name, OFFSETS_STORE))
            assert isinstance(store, FaustTableStore)
            self.offsets = store
        self.sender = ResultSender(
            spec.dead_letter_topic,
            spec.source.topic,
            trace=self.telemetry,
            max_message_bytes=processing.max_message_bytes,
        )
        self.alert_topics = sorted(
            {step.topic for step in self.pipeline.steps if isinstance(step, AlertStep)}
        )
        self.lock = asyncio.Lock()  # a batch, a flush and a rebalance never interleave
        self.assigned = asyncio.Event()
        self.assigned.set()
        self.generation = 0  # bumped by every assignment and table recovery
        self.seen_generation = 0
        self.next_offset: dict[int, int] = {}  # stage partition -> next offset to process
        self.watermarks: dict[int, int] = {}
        self.latencies: deque[float] = deque(maxlen=2000)
        self.recent_dead_letters: deque[dict[str, Any]] = deque(maxlen=20)
        self.lag = 0
        self.last_batch = 0.0
        self._output: Output | None = None
        self._streams: list[Batches] = []
        # batches processed and sent, acked at the next checkpoint; the input offsets
        # they applied (per stage partition, or repartition and source partition)
        self._held: list[tuple[Batches, list[Any]]] = []
        self._applied: dict[str, tuple[int, int]] = {}
        self.last_checkpoint = time.monotonic()
        self._declared: set[str] = set()
        self.agents: list[Any] = []
        self._declare_agents()
        for table in self.state.tables():
            table.on_recover(self._recovered)

    # --- topics and agents --------------------------------------------------------------

    def _raw_topic(self, name: str, *, internal: bool = False) -> Any:
        """A topic of bytes: the pipeline decodes values itself, once per batch."""
        return self.app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=self.partitions,
            internal=internal,
        )

    def _declare_agents(self) -> None:
        app = self.app
        if self.repartition_topic is not None:
            source = self._raw_topic(self.source_topic)
            stage = self._raw_topic(self.repartition_topic, internal=True)
            self.agents.append(app.agent(source, name=f"sluice.{self.name}.rekey")(self._rekey))
        else:
            stage = self._raw_topic(self.source_topic)
        self.agents.append(app.agent(stage, name=f"sluice.{self.name}")(self._run))
        if self.offsets is not None:
            app.timer(interval=1.0, name=f"sluice.{self.name}.flush")(self._flush_idle)
        app.timer(interval=CHECKPOINT_INTERVAL_S, name=f"sluice.{self.name}.checkpoint")(
            self._checkpoint_timer
        )

    def active_partitions(self, topic: str | None = None) -> set[int]:
        """The stage topic's (or `topic`'s) partitions assigned to this worker now."""
        topic = topic or self.stage_topic
        try:
            assignment = self.app.consumer.assignment()
        except Exception:  # the consumer is not started yet
            return set()
        return {tp.partition for tp in assignment if tp.topic == topic}

    async def _recovered(self) -> None:
        self.generation += 1

    async def output(self) -> Output:
        """Record batches through the aiokafka producer inside Faust's producer."""
        if self._output is None:
            producer = await self.app.maybe_start_producer()
            # Patch: Faust's producer sends one record per `send`; sluice's outputs go as
            # whole record batches (create_batch/send_batch, ~5x less per record) through
            # the aiokafka producer it wraps (`_ensure_producer`, private in Faust 0.15).
            self._output = Output(producer._ensure_producer())
        return self._output

    async def _declare_outputs(self, topics: Sequence[str]) -> None:
        """Output topics are created like Faust creates the topics of its agents."""
        for topic in topics:
            if topic not in self._declared:
                await self.app.topic(topic, partitions=self.partitions).maybe_declare()
                self._declared.add(topic)

    # --- the agents ----------------------------------------------------------------------

    async def _rekey(self, stream: Any) -> None:
        batches = Batches(stream, self.batch_max, self.within_s)
        self._streams.append(batches)
        async for events in batches:
            await self.assigned.wait()
            try:
                async with self.lock:
                    active = self.active_partitions(self.source_topic)
                    mine = [e for e in events if e.message.partition in active]
                    output = await self.output()
                    self._forward([e.message for e in mine], output)
                    await output.send()
                    self._held.append((batches, mine))
                    await self._checkpoint_if_due()
            except Exception as exc:
                self.on_crash(f"{self.name} (re-key)", exc)
                await self._halt()

    def _forward(self, messages: Sequence[Any], output: Output) -> None:
        """Source records onto the repartition topic, keyed by `source.key`, with their
        source position in headers (as sluice's own engine re-keys)."""
        fields = self.spec.source.key
        topic = self.repartition_topic
        assert fields is not None and topic is not None
        add, loads = output.add, orjson.loads
        for message in messages:
            key, value = message.key, message.value
            if value is not None:
                try:
                    decoded = loads(value)
                except orjson.JSONDecodeError:
                    decoded = None  # the pipeline dead-letters it, with the original bytes
                if decoded.__class__ is dict:
                    key = key_bytes(key_of(decoded, fields)) or key
            headers = [
                *_headers(message),
                (SOURCE_TOPIC, message.topic.encode()),
                (SOURCE_PARTITION, str(message.partition).encode()),
                (SOURCE_OFFSET, str(message.offset).encode()),
            ]
            add(topic, key, value, headers)

    async def _run(self, stream: Any) -> None:
        await self._declare_outputs(self.spec.output_topics())
        batches = Batches(stream, self.batch_max, self.within_s)
        self._streams.append(batches)
        async for events in batches:
            await self.assigned.wait()  # between a revocation and the next assignment
            try:
                async with self.lock:
                    active = self.active_partitions()
                    # records of partitions revoked meanwhile are the new owner's: left
                    # unacked, so never committed by this worker
                    mine = [e for e in events if e.message.partition in active]
                    await self._process([e.message for e in mine])
                    self._held.append((batches, mine))
                    await self._checkpoint_if_due()
            except Exception as exc:
                self.on_crash(self.name, exc)
                await self._halt()

    async def _halt(self) -> None:
        """After a crash, until the worker has stopped: leaving the loop would close the
        take generator, and Faust's stream would then ack (and commit at the stop) the
        records still buffered for it, unprocessed (measured: 3 records committed)."""
        await asyncio.Event().wait()

    async def _checkpoint_if_due(self) -> None:
        if time.monotonic() - self.last_checkpoint >= CHECKPOINT_INTERVAL_S:
            await self._checkpoint()

    async def _checkpoint_timer(self) -> None:
        """A checkpoint for batches held when no next batch comes."""
        if self._held or self._applied:
            try:
                async with self.lock:
                    await self._checkpoint_if_due()
            except Exception as exc:
                self.on_crash(self.name, exc)

    async def on_revoked(self) -> None:
        """A rebalance begins: the batch in flight finishes and everything held is
        checkpointed (results, state, acks) before Faust goes on to commit and, after the
        assignment, to recover tables — never under a batch."""
        self.assigned.clear()
        async with self.lock:
            await self._checkpoint()
            self.generation += 1

    async def on_assigned(self) -> None:
        async with self.lock:
            self.generation += 1
        self.assigned.set()

    async def idle(self) -> None:
        """The worker stops: the batch in flight finishes, what is held is checkpointed
        and acked (the host commits it), and no batch starts after."""
        self.assigned.clear()
        async with self.lock:
            await self._checkpoint()

    # --- a batch ---------------------------------------------------------------------------

    def _catch_up_with_rebalances(self) -> None:
        if self.seen_generation != self.generation:
            self.seen_generation = self.generation
            self.pipeline.reset()
            self.watermarks.clear()
            active = self.active_partitions()
            self.next_offset = {p: o for p, o in self.next_offset.items() if p in active}

    async def _process(self, messages: list[Any]) -> None:
        current_pipeline.set(self.name)
        self._catch_up_with_rebalances()
        if self.offsets is None:
            # Faust seeks the partitions it keeps back to the committed offsets after a
            # table recovery or rebalance, and hands over records this process sent
            # results for already (measured on Apache Kafka: a stateless pipeline's last
            # records twice); a stateful pipeline's offsets table skips them itself
            done = self.next_offset
            messages = [m for m in messages if m.offset >= done.get(m.partition, -1)]
        for message in messages:
            self.next_offset[message.partition] = message.offset + 1
        self.last_batch = time.monotonic()
        if self.offsets is not None:
            messages, applied = self._first_deliveries(messages)
            self._applied.update(applied)
        output = await self.output()
        if messages:
            if any(m.value is None for m in messages):
                messages = self._tombstones_out(messages, output)
            events = to_events(messages, trace=self.telemetry)
            result = await self.pipeline.process(events)
            self._note_event_times(events)
            self._send(result, output)
            await output.send()
        if self.telemetry and messages:
            now = time.time()
            seconds = [max(0.0, now - m.timestamp) for m in messages if m.timestamp]
            self.metrics.latencies(seconds)
            self.latencies.extend(seconds[-200:])

    def _first_deliveries(
        self, messages: list[Any]
    ) -> tuple[list[Any], dict[str, tuple[int, int]]]:
        """Messages whose effects the state does not hold yet.

        Per stage partition (and, on a repartition topic, per source partition, whose
        records arrive in source order) the highest input offset applied is kept in the
        offsets table; a message at or below it was applied before a crash that kept its
        offset from being committed, or was forwarded twice by the re-key agent."""
        store = self.offsets
        assert store is not None
        first = []
        highest: dict[str, tuple[int, int]] = {}
        rekeyed = self.repartition_topic is not None
        for message in messages:
            position = None
            if rekeyed:
                source_partition = source_offset = None
                for name, value in _headers(message):
                    if name == SOURCE_PARTITION:
                        source_partition = value
                    elif name == SOURCE_OFFSET:
                        source_offset = value
                if source_partition is not None and source_offset is not None:
                    position = (
                        f"{message.partition}:{source_partition.decode()}",
                        int(source_offset),
                    )
            if position is None:
                position = (str(message.partition), message.offset)
            key, offset = position
            done = highest.get(key) or self._applied.get(key)
            if done is None:
                done = (store.get(key, -1), message.partition)
            if offset <= done[0]:
                continue
            highest[key] = (offset, message.partition)
            first.append(message)
        return first, highest

    def _tombstones_out(self, messages: list[Any], output: Output) -> list[Any]:
        """A message without a value (a tombstone) is no event: an `invalid_json` dead
        letter that keeps the null value, as in sluice's own engine."""
        kept, letters = [], []
        for message in messages:
            if message.value is not None:
                kept.append(message)
                continue
            letter = DeadLetter(
                raw=b"",
                step=SOURCE_STEP,
                error_type="invalid_json",
                message="the message has no value (a tombstone)",
                partition=message.partition,
                offset=message.offset,
                key=_text_key(message.key),
                headers=_headers(message),
            )
            letters.append(letter)
            output.add(
                self.sender.dead_letter_topic,
                message.key,
                None,
                dead_letter_headers(letter, self.source_topic),
            )
        self.metrics.events_in(len(letters))
        self.metrics.dead_letters(SOURCE_STEP, "invalid_json", len(letters))
        self._note(BatchResult(dead_letters=letters))
        return kept

    def _send(self, result: BatchResult, output: Output) -> None:
        letters = len(result.dead_letters)
        self.sender.send(result, output)
        added = len(result.dead_letters) - letters
        if added:  # results too large to send became dead letters
            self.metrics.dead_letters(SINK_STEP, "oversize", added)
        self._note(result)

    async def _checkpoint(self) -> None:
        """Outputs and state changes acknowledged, then the input offsets they include,
        then the held events acked: a kill in between applies a batch again only when
        its state had reached the broker and its offsets had not."""
        self.last_checkpoint = time.monotonic()
        output = await self.output()
        self.pipeline.persist()
        for store in self.state.stores.values():
            if store is not self.offsets:
                self._queue_writes(store, output)
        await output.drain()
        if self.offsets is not None and self._applied:
            applied, self._applied = self._applied, {}
            for key, (offset, partition) in applied.items():
                self.offsets.set(key, offset, partition)
            self._queue_writes(self.offsets, output)
            await output.drain()
        held, self._held = self._held, []
        for batches, events in held:
            await batches.ack(events)

    def _queue_writes(self, store: FaustTableStore, output: Output) -> None:
        topic = store.table.changelog_topic.get_topic_name()
        add = output.add
        for key, value, partition in store.take_writes():
            # the table's json serializers read these (orjson, as sluice's changelogs)
            add(topic, dumps(key), None if value is None else dumps(value), [], partition)

    async def _flush_idle(self) -> None:
        """Windows of partitions idle by wall clock close, once every assigned partition
        of the stage topic is processed to its end (one behind may be slow, not idle)."""
        app = self.app
        if app.rebalancing or app.in_recovery or not await self._caught_up():
            log.debug("%s: not closing idle windows (behind, or rebalancing)", self.name)
            return
        try:
            async with self.lock:
                current_pipeline.set(self.name)
                self._catch_up_with_rebalances()
                result = await self.pipeline.flush(final=False)
                output = await self.output()
                if result.outputs or result.dead_letters:
                    self._send(result, output)
                await self._checkpoint()
        except Exception as exc:
            self.on_crash(f"{self.name} (closing idle windows)", exc)

    async def _caught_up(self) -> bool:
        consumer = self.app.consumer
        active = self.active_partitions()
        if not active or time.monotonic() - self.last_batch < 1.0:
            return False
        for partition in active:
            tp = _tp(self.stage_topic, partition)
            end = consumer.highwater(tp)
            done = self.next_offset.get(partition)
            if done is None:  # nothing of it processed since the assignment: where the
                done = await consumer.position(tp)  # consumer reads (the commit, or later)
            if end is None or done is None or done < end:
                return False
        return True

    def lags(self) -> dict[tuple[str, int], int]:
        """Records behind the log end per assigned stage partition."""
        consumer = self.app.consumer
        found = {}
        for partition in self.active_partitions():
            end = consumer.highwater(_tp(self.stage_topic, partition))
            if end is not None:
                done = self.next_offset.get(partition, end)
                found[(self.stage_topic, partition)] = max(0, end - done)
        return found

    # --- what it reports ------------------------------------------------------------------

    def _note_event_times(self, events: list[Event]) -> None:
        marks = self.watermarks
        for event in events:
            if event.timestamp_ms > marks.get(event.partition, -1):
                marks[event.partition] = event.timestamp_ms

    def event_time_lag(self, now_ms: float) -> float | None:
        if not self.watermarks:
            return None
        return max(0.0, (now_ms - min(self.watermarks.values())) / 1000)

    def _note(self, result: BatchResult) -> None:
        note_result(result, self.recent_dead_letters, self.alert_topics, self.telemetry, log)

    def status(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def percentile(q: float) -> float | None:
            return round(ordered[int(q * (len(ordered) - 1))] * 1000, 1) if ordered else None

        metrics = self.metrics
        return {
            "pipeline": self.name,
            "engine": "faust",
            "source": self.source_topic,
            "outputs": self.spec.output_topics(),
            "tables": sorted(self.state.stores),
            "steps": [{"name": name, "kind": step.kind} for name, step in self.spec.named_steps()],
            "events_in": metrics.events_in_total,
            "events_out": metrics.events_out_total,
            "dead_letters": metrics.dead_letters_total,
            "dropped": metrics.dropped_total,
            "late": metrics.late_total,
            "windows_open": metrics.windows_open_now,
            "alerts_firing": dict(metrics.firing_now),
            "latency_ms": {"p50": percentile(0.5), "p99": percentile(0.99)},
            "event_time_lag_s": self.event_time_lag(time.time() * 1000),
            "lag": self.lag,
            "recent_dead_letters": list(self.recent_dead_letters),
            "spec": self.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        }


def _tp(topic: str, partition: int) -> Any:
    from faust.types import TP

    return TP(topic, partition)
