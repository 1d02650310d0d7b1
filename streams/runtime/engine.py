"""The worker's data path: one consumer in the group `app_id` reads every stage topic
(sources, repartition topics) in batches; each batch goes through its pipelines; results,
re-keyed records and changelog writes go out through one producer; a checkpoint commits.

    getmany ─► batch ─► runners (pure Pipeline) ─► Output (record batches per partition)
                                      every 0.25 s, on a rebalance, on stop: checkpoint
    checkpoint = outputs acknowledged → state changes to the changelogs (acknowledged)
                 → consumer offsets committed      (exactly_once: one transaction)

The parts: `Checkpoint` (runtime.checkpoint) commits, holds every transaction call and
fences zombies; `Recovery` (runtime.recovery) restores store partitions; `Phase`
(runtime.phases) says where the engine is. The engine decides when.

Why sluice owns this loop instead of Faust's agents: Faust's per-record path cost ~60 µs a
record, and its buffered stream dropped records on rebalances (issue 17). aiokafka's
rebalance listener runs while fetching is stopped, so a revocation waits for the batch in
progress and commits it, and an assignment restores the new partitions' state before any
of their records is processed. After a crash, records since the last commit are
processed again against state restored as of that commit.

A batch is what the consumer has buffered (up to `batch_max`; exactness is independent of it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Sequence
from functools import partial
from typing import Any

from aiokafka.errors import CorruptRecordException, KafkaError, UnsupportedCodecError
from aiokafka.structs import TopicPartition

from models.settings import Settings
from streams.core.tracing import current_pipeline
from streams.runtime.backpressure import Backpressure
from streams.runtime.changelog import LOCAL_STATE_DIR, ChangelogStore
from streams.runtime.checkpoint import Checkpoint, NewProducer
from streams.runtime.engine_clients import (
    Rebalances,
    assignors,
    caught_up,
    fetchable_end,
    lags,
    start_consumer,
    start_offsets,
    start_producer,
    transactional_base,
    undecodable,
)
from streams.runtime.kafka import connection_options
from streams.runtime.local_state import LocalState
from streams.runtime.output import Output
from streams.runtime.phases import Phase, PhaseMachine
from streams.runtime.pipeline_runner import PipelineRunner, Routes
from streams.runtime.recovery import Recovery, aiokafka_reader
from streams.runtime.seams import GroupConsumer, ProducerLike, group_generation, stop_reader
from streams.runtime.topics import ensure_topics, verify_copartitioned

log = logging.getLogger("sluice.engine")

# A commit every quarter second bounds what a crash makes the group process again; the
# checkpoint's pause (two round trips to the broker) stays under 2% of the time.
COMMIT_INTERVAL_S = 0.25
COMMIT_INTERVAL_EXACTLY_ONCE_S = 0.1  # exactly_once: results become visible at a commit
IDLE_FLUSH_INTERVAL_S = 1.0


class Engine:
    def __init__(self, settings: Settings, runners: Sequence[PipelineRunner]) -> None:
        self.settings = settings
        self.runners = list(runners)
        self.batch_max = settings.processing.batch_max
        # a batch never waits to fill up (it is taken as soon as records are there);
        # batch_within_ms bounds how long a poll waits when none are: how soon idle work
        # (a checkpoint, closing idle windows) runs
        self.poll_ms = max(settings.processing.batch_within_ms, 1)
        self.exactly_once = settings.processing.guarantee == "exactly_once"
        self.commit_interval = (
            COMMIT_INTERVAL_EXACTLY_ONCE_S if self.exactly_once else COMMIT_INTERVAL_S
        )
        self.group = settings.app_id
        routes = Routes(self.runners)
        self.stage_runners, self.rekey_runners = routes.stage, routes.rekey
        self.topics = routes.topics
        self.backpressure = Backpressure(routes.internal, self.batch_max)
        self.store_topic: dict[ChangelogStore, str] = {
            store: runner.stage_topic for runner in self.runners for store in runner.stores
        }
        self.lock = asyncio.Lock()  # a batch, a checkpoint, a rebalance: one at a time
        self.phases = PhaseMachine()
        self.owned: set[TopicPartition] = set()
        self.next: dict[TopicPartition, int] = {}  # next offset to process
        self.uncommitted = False
        self.last_commit = self.last_flush = self.last_progress = time.monotonic()
        self.idle = False  # the last poll returned nothing: every fetched record is processed
        self.stopping = asyncio.Event()
        self.failure: BaseException | None = None
        self.records_processed = 0
        self._consumer: GroupConsumer | None = None
        self._checkpoint: Checkpoint | None = None
        rocksdb = settings.store == "rocksdb://"
        self.local = LocalState(LOCAL_STATE_DIR / settings.app_id) if rocksdb else None
        reader = aiokafka_reader(connection_options(settings))
        self.recovery = Recovery(reader, self.local, read_committed=self.exactly_once)

    # --- life cycle --------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self.phases.phase

    @property
    def consumer(self) -> GroupConsumer:
        assert self._consumer is not None, "engine not started"
        return self._consumer

    @property
    def checkpoints(self) -> Checkpoint:
        assert self._checkpoint is not None, "engine not started"
        return self._checkpoint

    @property
    def output(self) -> Output:
        return self.checkpoints.output

    async def start(self) -> None:
        """Clients started, topics created, the group joined (asynchronously)."""
        txn_id = f"{transactional_base(self.settings)}-0"  # a new one at each assignment
        producer = await start_producer(self.settings, self.exactly_once, txn_id)
        await ensure_topics(connection_options(self.settings), self.settings, self.runners)
        consumer = await start_consumer(self.settings, assignors(self.runners))
        self.attach(consumer, producer, partial(start_producer, self.settings, True), txn_id)

    def attach(
        self,
        consumer: GroupConsumer,
        producer: ProducerLike,
        new_producer: NewProducer | None = None,
        transactional_id: str = "",
    ) -> None:
        """Work with these clients (the unit tests' fakes attach here directly);
        exactly_once: `new_producer` starts the producer of each assignment."""
        self._consumer = consumer
        self._checkpoint = Checkpoint(
            consumer,
            producer,
            Output(producer),
            group=self.group,
            exactly_once=self.exactly_once,
            generation=partial(group_generation, consumer),
            local=self.local,
            new_producer=new_producer,
            transactional_id=transactional_id,
        )
        consumer.subscribe(self.topics, listener=Rebalances(self))

    async def run(self) -> None:
        """Process until `stop()`; an error that escapes is the worker's crash (and no
        checkpoint may follow it: the batch it interrupted is not done)."""
        try:
            await self._loop()
            if self.failure is not None:  # a rebalance callback failed: not a stop, a crash
                raise self.failure
        except BaseException as exc:
            self._fail(exc)
            raise

    async def _loop(self) -> None:
        while not self.stopping.is_set():
            await self.step()

    async def step(self) -> None:
        """One poll: the batch processed; a checkpoint when one is due; idle windows
        closed when nothing came."""
        consumer = self.consumer
        try:
            # backpressure.polled: the internal partitions while held, else [] (all)
            batches = await consumer.getmany(
                *self.backpressure.polled, timeout_ms=self.poll_ms, max_records=self.batch_max
            )
        except (UnsupportedCodecError, CorruptRecordException) as exc:
            raise await undecodable(consumer, self.owned, self.group, exc) from None
        if self.failure is not None:
            raise self.failure
        async with self.lock:
            if self.checkpoints.lost:  # out of the group or fenced: all is done again
                self.uncommitted = False  # after the next assignment's restore
                return
            self.idle = not batches
            if batches:
                try:
                    await self._process(batches)
                except KafkaError as exc:  # fenced, or (exactly_once) the producer died
                    return self.checkpoints.broke(exc)
            self._hold_or_release_sources()
            now = time.monotonic()
            if self.uncommitted and (self.idle or now - self.last_commit >= self.commit_interval):
                await self.checkpoint()
            if self.idle and now - self.last_flush >= IDLE_FLUSH_INTERVAL_S:
                try:
                    await self._flush_idle()
                except KafkaError as exc:  # as in a batch's sends
                    self.checkpoints.broke(exc)

    async def stop(self) -> None:
        """A last checkpoint, then leave the group (partitions move at once)."""
        self.stopping.set()
        try:
            if self._checkpoint is not None and self.failure is None:
                async with self.lock:
                    ready = self.phase is Phase.RUNNING and not self.checkpoints.lost
                    self.phases.move(Phase.STOPPING)
                    if ready:
                        await self.checkpoint()
        finally:
            if self._consumer is not None:
                await stop_reader(self._consumer)
            if self._checkpoint is not None:
                await _quietly(self._checkpoint.abort())
                await _quietly(self._checkpoint.producer.stop())
            if self.local is not None:
                self.local.close_all()

    def _fail(self, exc: BaseException) -> None:
        """The data path ends (an error in the loop, or in a callback aiokafka only logs)."""
        if self.failure is None:
            self.failure = exc
        self.phases.move(Phase.FAILED)
        self.stopping.set()

    # --- batches -----------------------------------------------------------------------

    async def _process(self, batches: dict[TopicPartition, list[Any]]) -> None:
        staged: dict[tuple[PipelineRunner, str], list[Any]] = {}
        rekeyed: dict[tuple[PipelineRunner, str], list[Any]] = {}
        count = 0
        for tp, fetched in batches.items():
            if tp not in self.owned:
                continue
            start = self.next.get(tp, 0)
            records = fetched
            if records[0].offset < start:  # fetched before a seek: already processed
                records = [r for r in records if r.offset >= start]
                if not records:
                    continue
            self.next[tp] = records[-1].offset + 1
            count += len(records)
            for runner in self.stage_runners.get(tp.topic, ()):
                staged.setdefault((runner, tp.topic), []).extend(records)
            for runner in self.rekey_runners.get(tp.topic, ()):
                rekeyed.setdefault((runner, tp.topic), []).extend(records)
        if not count:
            return
        await self.checkpoints.begin()
        output = self.output
        for (runner, _), records in rekeyed.items():
            await runner.before_rekey(records)  # registry formats: fetch unknown schemas
            runner.rekey(records, output)
        for (runner, topic), records in staged.items():
            current_pipeline.set(runner.name)
            await runner.process(records, output, runner.stages[topic])
        current_pipeline.set(None)
        await output.send()
        self.records_processed += count
        self.uncommitted = True
        self.last_progress = time.monotonic()

    def _hold_or_release_sources(self) -> None:
        """streams.runtime.backpressure: while the internal topics are behind, polls take
        records of the internal partitions only. (Not `consumer.pause`: aiokafka drops a
        paused partition's fetched records, to be fetched again after the resume; a
        filtered poll leaves them buffered.)"""
        if self.phases.running:  # what the consumer has assigned now, of what is owned
            consumer = self.consumer
            assigned = consumer.assignment() & self.owned
            self.backpressure.steer(assigned, self.next, partial(fetchable_end, consumer))

    async def _flush_idle(self) -> None:
        """Close windows of idle partitions by wall clock, once every assigned partition
        is processed to its end (a partition without new records may be behind, not
        idle)."""
        self.last_flush = time.monotonic()
        if not self.phases.running or not self.owned or self.checkpoints.lost:
            return
        for runner in self.runners:
            if not runner.stores or not await caught_up(
                self.consumer, self.owned, runner.stage_topic
            ):
                continue
            await self.checkpoints.begin()
            current_pipeline.set(runner.name)
            await runner.flush_idle(self.output)
            current_pipeline.set(None)
            self.uncommitted = True
        await self.output.send()

    def _persist(self) -> None:
        for runner in self.runners:
            runner.persist()

    async def checkpoint(self) -> None:
        """streams.runtime.checkpoint: outputs, then state changes, then offsets."""
        self.last_commit = time.monotonic()
        self.uncommitted = False
        owned = {tp: o for tp, o in self.next.items() if tp in self.owned}
        await self.checkpoints.run(self.store_topic, owned, persist=self._persist)

    # --- rebalances --------------------------------------------------------------------

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Before a rebalance: the batch in progress finishes and everything is committed."""
        try:
            async with self.lock:
                if self.phase in (Phase.STOPPING, Phase.FAILED):
                    return
                was_running = self.phases.running
                self.phases.move(Phase.REVOKING)
                if was_running and self.owned and not self.checkpoints.lost:
                    await self.checkpoint()
        except KafkaError as exc:
            self.checkpoints.lost = True
            log.warning("checkpoint before the rebalance failed (%r): state will be restored", exc)
        except Exception as exc:
            self._fail(exc)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """After a rebalance: new partitions' state restored from the changelogs as of the
        group's committed offsets, before any of their records is processed."""
        try:
            async with self.lock:
                if self.phase in (Phase.STOPPING, Phase.FAILED):
                    return
                await self._assign(assigned)
        except Exception as exc:
            self._fail(exc)

    async def _assign(self, assigned: set[TopicPartition]) -> None:
        self.phases.move(Phase.ASSIGNING)
        consumer, checkpoints = self.consumer, self.checkpoints
        kept = set() if checkpoints.lost else assigned & self.owned
        dropped = self.owned - kept
        for tp in dropped:
            self.next.pop(tp, None)
        checkpoints.assigned(group_generation(consumer), dropped)
        if self.exactly_once:  # before the offsets are read: nobody else can commit now
            await checkpoints.take_over(assigned)
        self.output.forget_partition_counts()
        starts = await start_offsets(consumer, assigned - kept)
        for tp, offset in starts.items():
            self.next[tp] = checkpoints.committed[tp] = offset
            consumer.seek(tp, offset)
        if self.exactly_once:
            await checkpoints.mark_owner({tp: checkpoints.committed[tp] for tp in assigned})
        await verify_copartitioned(consumer, checkpoints.producer, self.runners, self.group)
        self.phases.move(Phase.RESTORING)
        await self._restore(starts, dropped)
        self.owned = assigned
        self.backpressure.reset()  # a new assignment: nothing held
        self.phases.move(Phase.RUNNING)
        log.info(
            "assigned %d partition(s): %s",
            len(assigned),
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)) or "none",
        )

    async def _restore(
        self, starts: dict[TopicPartition, int], dropped: set[TopicPartition]
    ) -> None:
        """Each stateful runner: the partitions it no longer owns (or must reload) dropped,
        the new ones restored (streams.runtime.recovery); then the steps rebuild their
        caches, and compensations and owner marks are written before anything else."""
        recovery = self.recovery
        generation = self.checkpoints.generation
        for runner in self.runners:
            topic = runner.stage_topic
            if runner.stores:
                reload = {tp.partition for tp in dropped | set(starts) if tp.topic == topic}
                recovery.drop(runner.stores, reload)
                committed = {tp.partition: o for tp, o in starts.items() if tp.topic == topic}
                await recovery.restore(runner.stores, committed, generation)
            runner.reset()
        await self.checkpoints.write_restored(self.store_topic, self.next)

    # --- what the worker reports ------------------------------------------------------

    async def lags(self) -> dict[tuple[str, int], int]:
        """Records behind the log end per assigned partition (engine_clients.lags)."""
        if self._consumer is None or self._checkpoint is None:
            return {}
        clean = self.idle and not self.uncommitted
        return await lags(self._consumer, self.owned, self._checkpoint.committed, clean)


async def _quietly(awaitable: Awaitable[Any]) -> None:
    with contextlib.suppress(Exception):  # best effort while stopping
        await asyncio.wait_for(awaitable, 5)
