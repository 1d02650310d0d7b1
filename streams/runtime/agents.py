"""One Faust agent per pipeline: micro-batches in, the pure Pipeline, results out.

A pipeline with state keyed by `source.key` first re-keys its source onto a repartition
topic (`<app>-<pipeline>-repartition`), so each key's records meet its table partition.
No record's error ever escapes: the Pipeline turns them into dead letters. Anything
else that escapes (a bug, a broker failure) is reported to `on_crash`, which makes the
worker not ready and exits it non-zero so a supervisor restarts it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import faust
import orjson

from models.pipeline import PipelineSpec
from models.settings import Settings
from streams.pipeline import Pipeline
from streams.records import BatchResult, Event, key_of
from streams.runtime.batch_channel import BatchQueue, ack, batch_channel
from streams.runtime.clients import connection_options
from streams.runtime.metrics import PrometheusPipelineMetrics
from streams.runtime.sender import (
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
    ResultSender,
    key_bytes,
)
from streams.runtime.tables import FaustStateBackend, feed_lookup_table
from streams.state import DictStateStore
from streams.steps import table_store_name
from streams.steps.keyed import AlertStep
from streams.tracing import continue_trace, current_pipeline, trace_id_in

log = logging.getLogger("sluice.agents")

FLUSH_INTERVAL_S = 1.0
TAIL_REPAIR_S = 1.0
LOGGED_DEAD_LETTERS_PER_BATCH = 10  # a flood of bad records must not become a flood of logs
STATEFUL_KINDS = frozenset({"dedupe", "ratelimit", "window", "alert", "component"})


def needs_repartition(spec: PipelineSpec) -> bool:
    return spec.source.key is not None and any(s.kind in STATEFUL_KINDS for s in spec.steps)


def raw_topic(app: faust.App, name: str, partitions: int, *, internal: bool = False) -> Any:
    """A topic of bytes: sluice decodes values itself, once, in the pipeline."""
    return app.topic(
        name,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
        internal=internal,
    )


def _text_key(key: bytes | None) -> str | None:
    if key is None:
        return None
    return key.decode("utf-8", errors="backslashreplace")


def to_events(events: Sequence[Any], *, trace: bool = True) -> list[Event]:
    """Faust events as pipeline input: raw value, key, Kafka time, headers (the W3C
    `traceparent` continued with a span of sluice's, or a new trace), position."""
    batch = []
    for event in events:
        message = event.message
        headers = message.headers
        headers = list(headers.items() if isinstance(headers, dict) else headers or ())
        batch.append(
            Event(
                None,
                key=_text_key(message.key),
                timestamp_ms=int(message.timestamp * 1000) if message.timestamp else 0,
                headers=continue_trace(headers) if trace else headers,
                raw=message.value if message.value is not None else b"",
                partition=message.partition,
                offset=message.offset,
            )
        )
    return batch


class OffsetGuard:
    """Keeps each partition's records flowing exactly once through this process.

    Two Faust behaviours on rebalances, both seen on the embedded broker:
    - after recovery the consumer is sought back to the committed offset *after* it began
      fetching, which redelivers records whose results are already sent: `fresh` skips
      offsets this process already processed;
    - records buffered in the stream when a rebalance clears its queues can be dropped
      while later ones go on, and the committed offset then passes them: `gaps` reports
      the offsets missing between what was processed and what arrived, so the agent can
      fetch them itself.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[tuple[str, int], int] = {}

    def fresh(self, events: Sequence[Any]) -> list[Any]:
        last = self._last
        return [
            event
            for event in events
            if event.message.offset > last.get((event.message.topic, event.message.partition), -1)
        ]

    def gaps(self, events: Sequence[Any]) -> list[tuple[str, int, int, int]]:
        """(topic, partition, first, last) of every run of offsets missing before or
        between the records of `events` — records that should have come and did not."""
        offsets: dict[tuple[str, int], list[int]] = {}
        for event in events:
            message = event.message
            offsets.setdefault((message.topic, message.partition), []).append(message.offset)
        missing = []
        for (topic, partition), seen in offsets.items():
            previous = self._last.get((topic, partition))
            for offset in sorted(seen):
                if previous is not None and offset > previous + 1:
                    missing.append((topic, partition, previous + 1, offset - 1))
                previous = offset
        return missing

    def positions(self) -> dict[int, int]:
        """The last processed offset per partition (of the one topic this guard sees)."""
        return {partition: offset for (_, partition), offset in self._last.items()}

    def baseline(self, committed: dict[tuple[str, int], int]) -> None:
        """After an assignment: records before each partition's committed offset are
        done (by this process or another), so a gap is measured from there."""
        for position, offset in committed.items():
            if offset - 1 > self._last.get(position, -1):
                self._last[position] = offset - 1

    def done(self, events: Sequence[Any]) -> None:
        last = self._last
        for event in events:
            message = event.message
            position = (message.topic, message.partition)
            if message.offset > last.get(position, -1):
                last[position] = message.offset


class _Fetched:
    """A record fetched directly, shaped like a Faust event (`.message`)."""

    __slots__ = ("message",)

    def __init__(self, message: Any) -> None:
        self.message = message


async def committed_offsets(
    connection: dict[str, Any], group: str, topic: str, partitions: Sequence[int]
) -> dict[tuple[str, int], int]:
    """The group's committed offset of each partition; the log start where the group
    has committed nothing (it starts there: auto_offset_reset is earliest)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**connection, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        found = {}
        uncommitted = []
        for partition in partitions:
            tp = TopicPartition(topic, partition)
            offset = await consumer.committed(tp)
            if offset is not None and offset >= 0:
                found[(topic, partition)] = offset
            else:
                uncommitted.append(tp)
        if uncommitted:
            for tp, start in (await consumer.beginning_offsets(uncommitted)).items():
                found[(tp.topic, tp.partition)] = start
        return found
    finally:
        await consumer.stop()


async def fetch_range(
    connection: dict[str, Any], topic: str, partition: int, first: int, last: int
) -> list[Any]:
    """Records [first, last] of one partition, read with a consumer of our own."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        **connection, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=20
    )
    await consumer.start()
    found: list[Any] = []
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, first)
        idle = 0
        while idle < 20:
            batch = await consumer.getmany(tp, timeout_ms=100)
            messages = batch.get(tp, [])
            if not messages:
                idle += 1
                if await consumer.position(tp) > last:
                    break
                continue
            idle = 0
            found += [_Fetched(m) for m in messages if first <= m.offset <= last]
            if messages[-1].offset >= last:
                break
    finally:
        await consumer.stop()
    return found


class PipelineRunner:
    """Owns one pipeline in a worker: its agent(s), tables and result sender."""

    def __init__(
        self,
        app: faust.App,
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
        partitions = settings.processing.partitions
        self.state = FaustStateBackend(app, partitions)
        self.pipeline = Pipeline(
            spec,
            state=self.state,
            metrics=metrics,
            max_message_bytes=settings.processing.max_message_bytes,
        )
        self.source = raw_topic(app, spec.source.topic, partitions)
        for topic in spec.output_topics():
            raw_topic(app, topic, partitions)
        self.batch_max = settings.processing.batch_max
        self.within = settings.processing.batch_within_ms / 1000 or 0.001
        self.batches = 0
        self.guard = OffsetGuard()
        self.rekey_guard = OffsetGuard()
        self.stale_guards: set[int] = set()
        self.previous_assignment: set[tuple[str, int]] = set()
        self.newly_assigned: set[tuple[str, int]] = set()
        self.repartition_topic: str | None = None
        stage = self.source
        buffered = max(self.batch_max * 4, 4096)
        self.rekey_queue: BatchQueue | None = None
        if needs_repartition(spec):
            self.repartition_topic = f"{settings.app_id}-{self.name}-repartition"
            stage = raw_topic(app, self.repartition_topic, partitions, internal=True)
            self.rekey_queue = batch_channel(app, self.source, buffered)
            app.task(self._rekey)
        self.stage_topic = self.repartition_topic or spec.source.topic
        self.latencies: deque[float] = deque(maxlen=2000)
        self.recent_dead_letters: deque[dict[str, Any]] = deque(maxlen=20)
        self.lag: dict[int, int] = {}
        # off only to measure what metrics, logs and tracing cost (`sluice bench kafka`)
        self.telemetry = settings.telemetry
        self.sender = ResultSender(
            self._send,
            spec.dead_letter_topic,
            spec.source.topic,
            self._observe_latencies if self.telemetry else None,
            trace=self.telemetry,
        )
        self.alert_topics = sorted(
            {step.topic for step in self.pipeline.steps if isinstance(step, AlertStep)}
        )
        self.queue = batch_channel(app, stage, buffered)
        app.task(self._run)
        self.rekey_lock = asyncio.Lock()  # forwarding and tail repair never interleave
        self.tails: dict[tuple[str, int], int] = {}  # position seen behind the log end
        app.timer(interval=TAIL_REPAIR_S)(self._repair_tails)
        self.lock = asyncio.Lock()  # a batch and a wall-clock flush never interleave
        self.tables_loaded = asyncio.Event()
        self.feeders: list[asyncio.Future[None]] = []
        if not spec.tables:
            self.tables_loaded.set()
        app.task(self._feed_tables)
        app.timer(interval=FLUSH_INTERVAL_S)(self._flush)

    async def _feed_tables(self) -> None:
        if not self.spec.tables:
            return
        events = []
        for name, table in self.spec.tables.items():
            store = self.state.store(table_store_name(self.name, name))
            assert isinstance(store, DictStateStore)
            loaded = asyncio.Event()
            events.append(loaded)
            self.feeders.append(
                asyncio.ensure_future(
                    feed_lookup_table(
                        connection_options(self.settings), table.topic, table.key, store, loaded
                    )
                )
            )

        async def all_loaded() -> None:
            for loaded in events:
                await loaded.wait()
            self.tables_loaded.set()

        # runs as long as the worker: cancelling this app task cancels the feeders
        await asyncio.gather(all_loaded(), *self.feeders)

    async def _recover(self) -> None:
        """After an assignment: tables caught up from their changelogs, caches dropped, and
        records whose effects the tables already hold marked as processed."""
        self.state.stale.clear()
        await self.state.catch_up(connection_options(self.settings))
        self.pipeline.reset()
        topic = self.stage_topic
        self.guard.baseline({(topic, p): o + 1 for p, o in self.state.applied().items()})

    async def _flush(self) -> None:
        """Close windows of idle partitions by wall clock."""
        if not self.state.stores or self.app.rebalancing:
            return
        current_pipeline.set(self.name)
        try:
            async with self.lock:
                if self.state.stale.is_set():
                    if not self.assigned_once:
                        return
                    await self._recover()
                if not self._caught_up():
                    return  # a partition without new records may just be behind, not idle
                result = await self.pipeline.flush(final=False)
                if result.outputs or result.dead_letters:
                    self._note(result)
                    await self.sender.send(result)
                # the flush's writes are consistent with everything processed so far
                await self._commit_state(self.guard.positions())
        except Exception as exc:
            self._crashed(f"{self.name} (flush)", exc)

    def _crashed(self, where: str, exc: BaseException) -> None:
        """An error escaped a pipeline task: a crash, unless the worker is stopping (the
        producer stops under an unfinished batch; its records were not acknowledged and
        come again at the next start)."""
        if self.app.should_stop:
            log.info(
                "%s: stopped during a batch (%r); it is processed again after restart", where, exc
            )
            return
        self.on_crash(where, exc)

    def _observe_latencies(self, seconds: list[float]) -> None:
        self.metrics.latencies(seconds)
        self.latencies.extend(seconds)

    def status(self) -> dict[str, Any]:
        """What /api/pipelines and the dashboard show for this pipeline."""
        ordered = sorted(self.latencies)

        def percentile(q: float) -> float | None:
            return round(ordered[int(q * (len(ordered) - 1))] * 1000, 1) if ordered else None

        return {
            "pipeline": self.name,
            "source": self.spec.source.topic,
            "outputs": self.spec.output_topics(),
            "steps": [{"name": name, "kind": step.kind} for name, step in self.spec.named_steps()],
            "events_in": self.metrics.received_total,
            "events_out": self.metrics.sent_total,
            "dead_letters": self.metrics.dead_total,
            "dropped": self.metrics.dropped_total,
            "late": self.metrics.late_total,
            "windows_open": self.metrics.windows_open_now,
            "alerts_firing": dict(self.metrics.firing_now),
            "latency_ms": {"p50": percentile(0.5), "p99": percentile(0.99)},
            "lag": sum(self.lag.values()),
            "recent_dead_letters": list(self.recent_dead_letters),
            "spec": self.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        }

    def state_of(self, step: str, key: str) -> Any:
        store = self.state.stores.get(f"{self.name}.{step}")
        if store is None:
            raise KeyError(step)
        return store.get(key)

    def _log_ends(self, topic: str) -> dict[int, int | None]:
        """The log end of each partition of `topic` assigned to this worker; None while
        it is not known (no fetch has returned yet)."""
        ends: dict[int, int | None] = {}
        for tp in self.app.consumer.assignment():
            if tp.topic != topic:
                continue
            try:
                ends[tp.partition] = self.app.consumer.highwater(tp)
            except Exception as exc:  # not fetched yet
                log.debug("no high watermark yet for %s: %r", tp, exc)
                ends[tp.partition] = None
        return ends

    def _caught_up(self) -> bool:
        """Whether every assigned partition of the stage topic is processed to its end."""
        positions = self.guard.positions()
        return all(
            end is not None and end <= positions.get(partition, -1) + 1
            for partition, end in self._log_ends(self.stage_topic).items()
        )

    async def _send(self, *args: Any) -> Any:
        return await self.app.producer.send(*args)

    async def _run(self) -> None:
        current_pipeline.set(self.name)
        take, batch_max, within = self.queue.take, self.batch_max, self.within
        try:
            while True:
                await self.process(await take(batch_max, within))
        except BaseException as exc:
            if _is_cancellation(exc):
                raise
            # not re-raised: a crashed agent must not also break the worker's shutdown
            self._crashed(self.name, exc)

    async def process(self, received: list[Any]) -> None:
        """One batch; its records are acknowledged once their state is on the changelog.

        Coalescing the writes of several batches (acknowledging them later) was measured
        at +23% on the windowed benchmark, but held acknowledgements interact with
        Faust's revocation, which waits for every record's ack; one commit per batch."""
        events = await self._complete(self.guard, self.guard.fresh(received))
        if events:
            await self.tables_loaded.wait()
            async with self.lock:
                await self._process(events)
        ack(received)

    async def _commit_state(self, applied: dict[int, int]) -> None:
        """Steps' in-memory state into the tables, then the table writes and an `applied`
        marker per partition onto the changelog (awaited)."""
        self.pipeline.persist()
        await self.state.commit(applied)

    async def _process(self, events: list[Any]) -> None:
        if self.state.stale.is_set():
            await self._recover()
            events = self.guard.fresh(events)
            if not events:
                return
        batch = to_events(events, trace=self.telemetry)
        partition_of = {e.key: e.partition for e in batch if e.key is not None}
        self.state.assign_partitions(partition_of)
        result = await self.pipeline.process(batch)
        self._note(result)
        await self.sender.send(result)
        applied: dict[int, int] = {}
        for event in events:
            message = event.message
            applied[message.partition] = max(applied.get(message.partition, -1), message.offset)
        await self._commit_state(applied)
        self.guard.done(events)
        self.batches += 1

    def _note(self, result: BatchResult) -> None:
        """The dashboard's latest dead letters; a log line per dead letter and per alert
        transition, with the record's trace id."""
        letters = result.dead_letters
        for letter in letters[:20]:
            self.recent_dead_letters.appendleft(
                {
                    "at": time.time(),
                    "step": letter.step,
                    "type": letter.error_type,
                    "message": letter.message[:300],
                    "trace_id": trace_id_in(letter.headers) if self.telemetry else None,
                }
            )
        if not self.telemetry:
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
        for topic in self.alert_topics:
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

    def lags(self) -> dict[tuple[str, int], int]:
        """Consumer lag of every assigned partition this pipeline reads: the log end
        minus the next offset to process (source and, when keyed, repartition topic)."""
        guards = {self.stage_topic: self.guard}
        if self.repartition_topic is not None:
            guards[self.spec.source.topic] = self.rekey_guard
        found = {}
        for topic, guard in guards.items():
            positions = guard.positions()
            for partition, end in self._log_ends(topic).items():
                if end is not None:
                    done = positions.get(partition, -1) + 1
                    found[(topic, partition)] = max(0, end - done)
        self.lag = {p: lag for (t, p), lag in found.items() if t == self.stage_topic}
        return found

    def on_revoked(self) -> None:
        """Partitions are moving: until the next assignment is caught up, no wall-clock
        flush may close windows whose partitions may now be another worker's."""
        self.state.stale.set()

    @property
    def assigned_once(self) -> bool:
        return bool(self.previous_assignment)

    def on_assigned(self, assigned: Iterable[Any]) -> None:
        """A new generation's assignment. Partitions this worker also had in the previous
        one stayed with it (eager rebalancing: nobody else took them in between); only
        the others start from the group's committed offset."""
        current = {(tp.topic, tp.partition) for tp in assigned}
        self.newly_assigned = current - self.previous_assignment
        self.previous_assignment = current
        self.state.stale.set()
        self.stale_guards = {id(self.guard), id(self.rekey_guard)}

    async def _complete(self, guard: OffsetGuard, events: list[Any]) -> list[Any]:
        """`events` preceded by any records the stream skipped (see OffsetGuard)."""
        if id(guard) in self.stale_guards and events:
            self.stale_guards.discard(id(guard))
            topic = events[0].message.topic
            fresh = sorted(p for t, p in self.newly_assigned if t == topic)
            if fresh:
                committed = await committed_offsets(
                    connection_options(self.settings), self.settings.app_id, topic, fresh
                )
                guard.baseline(committed)
                events = guard.fresh(events)
        gaps = guard.gaps(events)
        if not gaps:
            return events
        recovered = await self._fetch_missing(gaps, "the stream skipped them")
        # each partition's records in offset order: state sees them as they were written
        return sorted(
            recovered + events,
            key=lambda e: (e.message.topic, e.message.partition, e.message.offset),
        )

    async def _rekey(self) -> None:
        assert self.rekey_queue is not None
        current_pipeline.set(self.name)
        take, batch_max, within = self.rekey_queue.take, self.batch_max, self.within
        try:
            while True:
                batch = await take(batch_max, within)
                async with self.rekey_lock:
                    events = await self._complete(self.rekey_guard, self.rekey_guard.fresh(batch))
                    await self._forward(events)
                ack(batch)
        except BaseException as exc:
            if _is_cancellation(exc):
                raise
            self._crashed(f"{self.name} (repartition)", exc)

    async def _forward(self, events: list[Any]) -> None:
        """Source records onto the repartition topic, keyed by `source.key`, with their
        source position in headers; returns once all are on the broker."""
        fields = self.spec.source.key
        topic = self.repartition_topic
        assert fields is not None and topic is not None
        send = self.app.producer.send
        pending = []
        for event in events:
            message = event.message
            key = message.key
            try:
                value = orjson.loads(message.value)
                if isinstance(value, dict):
                    key = key_bytes(key_of(value, fields)) or key
            except (orjson.JSONDecodeError, TypeError):
                pass  # the pipeline dead-letters it, with the original bytes
            headers = list(message.headers or ())
            headers += [
                (SOURCE_TOPIC, message.topic.encode()),
                (SOURCE_PARTITION, str(message.partition).encode()),
                (SOURCE_OFFSET, str(message.offset).encode()),
            ]
            pending.append(await send(topic, key, message.value, None, message.timestamp, headers))
        for future in pending:
            await future
        self.rekey_guard.done(events)

    def _stuck_tails(self, guard: OffsetGuard, topic: str) -> list[tuple[str, int, int, int]]:
        """(topic, partition, first, last) of records that are on the log but have not
        arrived for a whole repair interval while nothing else was waiting: records a
        rebalance cleared from the buffer with no later record to reveal the gap."""
        positions = guard.positions()
        stuck = []
        for partition, end in self._log_ends(topic).items():
            position = (topic, partition)
            last = positions.get(partition)
            if last is None or end is None or end <= last + 1:
                self.tails.pop(position, None)
            elif self.tails.get(position) == last:
                stuck.append((topic, partition, last + 1, end - 1))
                self.tails.pop(position, None)
            else:
                self.tails[position] = last
        return stuck

    async def _fetch_missing(
        self, ranges: list[tuple[str, int, int, int]], reason: str
    ) -> list[Any]:
        """Records (topic, partition, first..last) read directly from the broker."""
        connection = connection_options(self.settings)
        fetched: list[Any] = []
        for topic, partition, first, last in ranges:
            found = await fetch_range(connection, topic, partition, first, last)
            log.warning(
                "%s: offsets %d-%d of %s[%d]: %s; fetched %d of them directly",
                self.name,
                first,
                last,
                topic,
                partition,
                reason,
                len(found),
            )
            fetched += found
        return fetched

    async def _repair_tails(self) -> None:
        """Every TAIL_REPAIR_S: records stuck behind the log end are fetched directly."""
        if self.app.rebalancing:
            return
        current_pipeline.set(self.name)
        try:
            if self.rekey_queue is not None and not len(self.rekey_queue):
                async with self.rekey_lock:
                    if id(self.rekey_guard) not in self.stale_guards:
                        stuck = self._stuck_tails(self.rekey_guard, self.spec.source.topic)
                        if stuck:
                            fetched = await self._fetch_missing(stuck, "they did not arrive")
                            await self._forward(self.rekey_guard.fresh(fetched))
            if not len(self.queue) and id(self.guard) not in self.stale_guards:
                stuck = self._stuck_tails(self.guard, self.stage_topic)
                if stuck:
                    fetched = await self._fetch_missing(stuck, "they did not arrive")
                    await self.tables_loaded.wait()
                    async with self.lock:
                        events = self.guard.fresh(fetched)
                        if events:
                            await self._process(events)
        except Exception as exc:
            self._crashed(f"{self.name} (repair)", exc)


def _is_cancellation(exc: BaseException) -> bool:
    import asyncio

    return isinstance(exc, asyncio.CancelledError | GeneratorExit | KeyboardInterrupt)
