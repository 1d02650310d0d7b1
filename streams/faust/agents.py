"""One pipeline as Faust agents: batches in, the pure `Pipeline`, record batches out.

    stage topic ─► agent: noack_take(batch_max) ─► records already applied skipped
                   ─► Pipeline.process(batch) ─► results, dead letters and changed state
                   keys as record batches (one aiokafka producer: Faust's own)
                   ─► checkpoint (streams.faust.applied_offsets) ─► events acked ─► Faust commits

Where `source.key` re-keys a stateful pipeline, a first agent forwards the source records
onto `<app id>-<pipeline>-repartition` keyed by it (value and headers unchanged, the source
position added as headers), so each key's records meet its table partition.

When the agent processes: after the assignment, once its tables are recovered and every
lookup table (`enrich`) is read to its end offsets — as sluice's own engine, and Kafka
Streams for global tables. Faust resumes the streams after its table recovery, but the
lookup tables are read by a task of their own: a worker restarted onto waiting records
enriched them before the table was read (measured: windows keyed by tier "unknown" beside
the right ones, on both brokers). At a revocation and at stop the batch in flight finishes
and is checkpointed; nothing is processed after the stop began, and windows of idle
partitions close only while the agent runs (never during a rebalance or the stop).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from models.pipeline_spec import PipelineSpec
from models.settings import Settings
from streams.core.records import BatchResult
from streams.core.state import runtime_store_name
from streams.core.tracing import current_pipeline
from streams.runtime import faults
from streams.runtime.output import Output
from streams.runtime.pipeline_runner import needs_repartition, note_result
from streams.runtime.pipeline_status import split_tombstones
from streams.runtime.prometheus import PrometheusPipelineMetrics
from streams.runtime.sender import ResultSender
from streams.steps.keyed import AlertStep
from streams.steps.kinds import step_kind
from streams.steps.pipeline import SOURCE_STEP, Pipeline
from streams.steps.route import SINK_STEP

from .applied_offsets import AgentCheckpoint
from .lag import caught_up, lags
from .messages import Batches, forward, headers_of, to_events
from .reporting import AgentReport
from .table_stores import FaustState, FaustTableStore

log = logging.getLogger("sluice.faust")

# Results and state go out with each batch; every quarter second they are awaited, the
# offsets they include written, and the batches acked (as sluice's own engine commits).
# Awaiting them per batch instead made every batch wait two round trips: 700 records
# took 17 s to pass four pipelines on the embedded broker (measured).
CHECKPOINT_INTERVAL_S = 0.25
# a held batch (a test's fault) waits for a rebalance at most HOLD_LIMIT_S, then on into it
HOLD_LIMIT_S = 120.0
HOLD_INTO_REBALANCE_S = 8.0
OFFSETS_STORE = "offsets"  # per partition (and source partition): the last input applied


def is_stateful(spec: PipelineSpec) -> bool:
    return any(step_kind(s.kind).stateful for s in spec.steps)


class PipelineAgent:
    """One pipeline in a Faust app: its topics, tables, agents and what it reports."""

    def __init__(
        self,
        app: Any,
        spec: PipelineSpec,
        settings: Settings,
        metrics: PrometheusPipelineMetrics,
        on_crash: Callable[[str, BaseException], None],
        lookups_loaded: asyncio.Event,
    ) -> None:
        self.app = app
        self.spec = spec
        self.name = spec.pipeline
        self.metrics = metrics
        self.on_crash = on_crash
        self.lookups_loaded = lookups_loaded
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
        offsets = self.state.store(runtime_store_name(self.name, OFFSETS_STORE))
        assert isinstance(offsets, FaustTableStore)
        self.checkpoints = AgentCheckpoint(
            self.name, self.state, offsets, rekeyed=self.repartition_topic is not None
        )
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
        self.assigned = asyncio.Event()  # clear from a revocation to the next assignment
        self.recovered = asyncio.Event()  # this assignment's tables are recovered
        self.stopping = False
        self.generation = 0  # bumped by every assignment and table recovery
        self.seen_generation = 0
        self.next_offset: dict[int, int] = {}  # stage partition -> next offset to process
        self.rekey_next: dict[int, int] = {}  # source partition -> next offset to forward
        self.report = AgentReport(metrics, telemetry=self.telemetry)
        self.recent_dead_letters: deque[dict[str, Any]] = deque(maxlen=20)
        self.last_batch = 0.0
        self._output: Output | None = None
        self._declared: set[str] = set()
        self.agents: list[Any] = []
        self._declare_agents()
        for table in self.state.tables():
            table.on_recover(self._recovered)

    @property
    def lag(self) -> int:
        return self.report.lag

    @lag.setter
    def lag(self, value: int) -> None:
        self.report.lag = value

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
        # `internal=True` on the source too: Faust creates only internal topics (when it
        # subscribes, before the group assigns), and leaves a missing source unassigned
        # ("Ignoring missing topic") until the next metadata refresh, 5 minutes later by
        # default: a worker started before its input topic existed read nothing for a minute
        # in a test. `sluice worker` creates missing sources with `processing.partitions`
        # (streams.runtime.topics); so does this. `internal` means nothing else to Faust.
        source = self._raw_topic(self.source_topic, internal=True)
        if self.repartition_topic is not None:
            stage = self._raw_topic(self.repartition_topic, internal=True)
            self.agents.append(app.agent(source, name=f"sluice.{self.name}.rekey")(self._rekey))
        else:
            stage = source
        self.agents.append(app.agent(stage, name=f"sluice.{self.name}")(self._run))
        if is_stateful(self.spec):
            app.timer(interval=1.0, name=f"sluice.{self.name}.flush")(self._flush_idle)
        app.timer(interval=CHECKPOINT_INTERVAL_S, name=f"sluice.{self.name}.checkpoint")(
            self._checkpoint_timer
        )

    def resize(self, partitions: int) -> None:
        """The stage topic has `partitions`: so have the state's tables and the topics
        this agent creates (streams.faust.host, before the tables start)."""
        self.partitions = partitions
        self.state.resize(partitions)

    def active_partitions(self, topic: str | None = None) -> set[int]:
        """The stage topic's (or `topic`'s) partitions assigned to this worker now."""
        topic = topic or self.stage_topic
        try:
            assignment = self.app.consumer.assignment()
        except Exception:  # the consumer is not started yet
            return set()
        return {tp.partition for tp in assignment if tp.topic == topic}

    async def _recovered(self) -> None:
        """Faust recovered the tables (called by each table after every assignment,
        before Faust resumes the streams)."""
        self.generation += 1
        self.recovered.set()

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
        fields, topic = self.spec.source.key, self.repartition_topic
        assert fields is not None and topic is not None
        async for events in batches:
            await self.assigned.wait()
            try:
                async with self.lock:
                    if self.stopping:
                        continue
                    active = self.active_partitions(self.source_topic)
                    mine = [e for e in events if e.message.partition in active]
                    for event in mine:
                        self.rekey_next[event.message.partition] = event.message.offset + 1
                    output = await self.output()
                    forward([e.message for e in mine], fields, topic, output, self.partitions)
                    await output.send()
                    self.checkpoints.hold(batches, mine)
                    await self._checkpoint_if_due()
            except Exception as exc:
                self.on_crash(f"{self.name} (re-key)", exc)
                await self._halt()

    async def _run(self, stream: Any) -> None:
        await self._declare_outputs(self.spec.output_topics())
        batches = Batches(stream, self.batch_max, self.within_s)
        async for events in batches:
            await self._until_ready()
            try:
                async with self.lock:
                    if self.stopping:
                        continue  # not acked: the next worker reads them
                    active = self.active_partitions()
                    # records of partitions revoked meanwhile are the new owner's: left
                    # unacked, so never committed by this worker
                    mine = [e for e in events if e.message.partition in active]
                    if faults.holds("faust.batch.taken", self.name):
                        await self._held_until_a_rebalance()
                    await self._process([e.message for e in mine])
                    self.checkpoints.hold(batches, mine)
                    await self._checkpoint_if_due()
            except Exception as exc:
                self.on_crash(self.name, exc)
                await self._halt()

    async def _until_ready(self) -> None:
        """Assigned, this assignment's tables recovered, the lookup tables read (see the
        module docstring)."""
        for ready in (self.assigned, self.recovered, self.lookups_loaded):
            if not ready.is_set():
                await ready.wait()

    async def _held_until_a_rebalance(self) -> None:
        """Fault `faust.batch.taken:hold` (tests only): this batch waits until a rebalance
        begins (the revocation clears `assigned`, then waits for this batch's lock), then
        until the next assignment's tables are recovered — which cannot happen while the
        revocation waits for the batch — or HOLD_INTO_REBALANCE_S. At most HOLD_LIMIT_S
        for the rebalance to begin."""
        deadline = time.monotonic() + HOLD_LIMIT_S
        while self.assigned.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        try:
            await asyncio.wait_for(self.recovered.wait(), HOLD_INTO_REBALANCE_S)
            how = "tables recovered meanwhile"
        except TimeoutError:
            how = "the rebalance waits for it"
        log.warning("pipeline %s: the held batch goes on (%s)", self.name, how)

    async def _halt(self) -> None:
        """After a crash, until the worker has stopped: leaving the loop would close the
        take generator, and Faust's stream would then ack (and commit at the stop) the
        records still buffered for it, unprocessed (measured: 3 records committed)."""
        await asyncio.Event().wait()

    async def _checkpoint_if_due(self) -> None:
        if time.monotonic() - self.checkpoints.last >= CHECKPOINT_INTERVAL_S:
            await self._checkpoint()

    async def _checkpoint(self) -> None:
        await self.checkpoints.run(await self.output(), self.pipeline.persist)

    async def _checkpoint_timer(self) -> None:
        """A checkpoint for batches held when no next batch comes."""
        if self.checkpoints.pending:
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
        self.recovered.clear()
        async with self.lock:
            await self._checkpoint()
            self.generation += 1

    async def on_assigned(self) -> None:
        async with self.lock:
            self.generation += 1

        self.assigned.set()

    async def idle(self) -> None:
        """The worker stops: the batch in flight finishes, what is held is checkpointed
        and acked (the host commits it), and nothing is processed or emitted after."""
        self.assigned.clear()
        async with self.lock:
            self.stopping = True
            await self._checkpoint()
        log.info(
            "pipeline %s stopped: %d events in",
            self.name,
            self.metrics.events_in_total,
            extra={"pipeline": self.name},
        )

    # --- a batch ---------------------------------------------------------------------------

    def _catch_up_with_rebalances(self) -> None:
        if self.seen_generation != self.generation:
            self.seen_generation = self.generation
            rolled = self.checkpoints.settle()
            if rolled:
                log.info(
                    "pipeline %s: %d state keys rolled back to their last committed checkpoint",
                    self.name,
                    rolled,
                    extra={"pipeline": self.name},
                )
            self.pipeline.reset()
            self.report.watermarks.clear()
            active = self.active_partitions()
            self.next_offset = {p: o for p, o in self.next_offset.items() if p in active}
            source = self.active_partitions(self.source_topic)
            self.rekey_next = {p: o for p, o in self.rekey_next.items() if p in source}

    async def _process(self, messages: list[Any]) -> None:
        current_pipeline.set(self.name)
        self._catch_up_with_rebalances()
        for message in messages:
            self.next_offset[message.partition] = message.offset + 1
        self.last_batch = time.monotonic()
        # Faust hands over again what the last commit does not cover: after a restart,
        # and after a table recovery it seeks the partitions it keeps back to the commit
        messages = self.checkpoints.first_deliveries(messages)
        if not messages:
            return
        output = await self.output()
        if any(m.value is None for m in messages):
            messages, letters = split_tombstones(
                messages, headers_of, output, self.sender.dead_letter_topic, self.source_topic
            )
            self.metrics.events_in(len(letters))
            self.metrics.dead_letters(SOURCE_STEP, "invalid_json", len(letters))
            self._note(BatchResult(dead_letters=letters))
        events = to_events(messages, trace=self.telemetry)
        result = await self.pipeline.process(events)
        self.report.note_batch(messages, events)
        self._send(result, output)
        await output.send()

    def _send(self, result: BatchResult, output: Output) -> None:
        letters = len(result.dead_letters)
        self.sender.send(result, output)
        added = len(result.dead_letters) - letters
        if added:  # results too large to send became dead letters
            self.metrics.dead_letters(SINK_STEP, "oversize", added)
        self._note(result)

    async def _flush_idle(self) -> None:
        """Windows of partitions idle by wall clock close, once every assigned partition
        is processed to its end: of the stage topic and, where the pipeline re-keys, of
        the source (records not forwarded yet are not idle time)."""
        app = self.app
        running = self.assigned.is_set() and self.recovered.is_set() and not self.stopping
        if not running or app.rebalancing or app.in_recovery or not await self._caught_up():
            log.debug("%s: not closing idle windows (behind, or rebalancing)", self.name)
            return
        try:
            async with self.lock:
                if self.stopping or not self.assigned.is_set():
                    return
                current_pipeline.set(self.name)
                self._catch_up_with_rebalances()
                result = await self.pipeline.flush(final=False)
                output = await self.output()
                if result.outputs or result.dead_letters:
                    closed = sum(map(len, result.outputs.values()))
                    log.info("pipeline %s: %d results of idle windows", self.name, closed)
                    self._send(result, output)
                await self._checkpoint()
        except Exception as exc:
            self.on_crash(f"{self.name} (closing idle windows)", exc)

    async def _caught_up(self) -> bool:
        consumer = self.app.consumer
        active = self.active_partitions()
        if not active or time.monotonic() - self.last_batch < 1.0:
            return False
        if self.repartition_topic is not None:
            source = self.active_partitions(self.source_topic)
            if not await caught_up(consumer, self.source_topic, source, self.rekey_next):
                return False
        return await caught_up(consumer, self.stage_topic, active, self.next_offset)

    def lags(self) -> dict[tuple[str, int], int]:
        """Records behind the log end per assigned stage partition."""
        return lags(self.app.consumer, self.stage_topic, self.active_partitions(), self.next_offset)

    # --- what it reports ------------------------------------------------------------------

    def event_time_lag(self, now_ms: float) -> float | None:
        return self.report.event_time_lag(now_ms)

    def _note(self, result: BatchResult) -> None:
        note_result(result, self.recent_dead_letters, self.alert_topics, self.telemetry, log)

    def status(self) -> dict[str, Any]:
        return self.report.status(self.spec, sorted(self.state.stores), self.recent_dead_letters)
