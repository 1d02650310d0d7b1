"""The worker's data path: one consumer in the group `app_id` reads every stage topic
(sources, repartition topics) in batches; each batch goes through its pipelines; results,
re-keyed records and changelog writes go out through one producer; a checkpoint commits.

    getmany ─► batch ─► runners (pure Pipeline) ─► Output (record batches per partition)
                                      every 0.25 s, on a rebalance, on stop: checkpoint
    checkpoint = outputs acknowledged → state changes to the changelogs (acknowledged)
                 → consumer offsets committed      (exactly_once: one transaction)

Why sluice owns this loop instead of Faust's agents: Faust's fetcher, conductor, per-record
Event/Message objects and acks cost about 60 µs a record, and its buffered stream dropped
records on rebalances (sluice carried an offset guard, gap repair and a tail-repair timer
to find them again; the tail repair misread lag as loss and stalled a loaded worker for
good — issue 17). aiokafka's own group membership is the Kafka protocol with nothing in
between: the rebalance listener runs while fetching is stopped, so a revocation waits for
the batch in progress and commits it, and an assignment restores the new partitions'
state before any of their records is processed. No record can be skipped or seen twice
by one process; after a crash, records since the last commit are processed again
(at-least-once) against state restored exactly as of that commit (streams.runtime.changelog).

State exactness does not depend on batch boundaries, so a batch is whatever the
consumer has buffered (up to `batch_max`), taken as soon as the previous one is done:
small batches and low latency at low rates, large ones under a backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import (
    CommitFailedError,
    CorruptRecordException,
    IllegalGenerationError,
    KafkaError,
    RebalanceInProgressError,
    UnknownMemberIdError,
    UnsupportedCodecError,
)
from aiokafka.structs import TopicPartition

from models.settings import Settings
from streams.errors import SluiceError
from streams.runtime.backpressure import Backpressure
from streams.runtime.changelog import (
    LOCAL_STATE_DIR,
    ChangelogStore,
    Write,
    encode_key,
    encode_value,
    offset_header,
    restore,
)
from streams.runtime.kafka import KafkaUnreachable, connection_options, probe, start_client
from streams.runtime.local_state import LocalState
from streams.runtime.output import Output
from streams.runtime.pipelines import PipelineRunner
from streams.runtime.topics import ensure_topics, verify_copartitioned
from streams.tracing import current_pipeline

log = logging.getLogger("sluice.engine")
HOLD_LOG_INTERVAL_S = 60.0

# A commit every quarter second bounds what a crash makes the group process again; the
# checkpoint's pause (two round trips to the broker) stays under 2% of the time.
COMMIT_INTERVAL_S = 0.25
# exactly_once: results become visible to read_committed consumers at a commit
COMMIT_INTERVAL_EXACTLY_ONCE_S = 0.1
IDLE_FLUSH_INTERVAL_S = 1.0
# Short group timeouts: the embedded broker admits a member after about half the session
# timeout, and a killed worker's partitions move after it (measured: 30 s to join with a
# 60 s session timeout, 5 s with 10 s). 6 s is Apache Kafka's default
# group.min.session.timeout.ms.
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_MS = 500
# tansu holds a fetch for the whole wait even when records arrive meanwhile (p50 latency
# 323 ms with a 1,500 ms wait); Apache Kafka answers as soon as data arrives, so a short
# wait only costs idle fetch requests there. But tansu also stops listing a partition's
# batches at the wait: at 10 ms a fetch at the tail came back empty from 5,000 batches on
# (at load 14; 100 ms: from 20-40,000) and `make run` stopped for good (issue 22, case 9).
FETCH_MAX_WAIT_MS = 100
TRANSACTION_TIMEOUT_MS = 15_000

_REBALANCE_ERRORS = (
    CommitFailedError,
    IllegalGenerationError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)


class EngineError(SluiceError):
    """The data path cannot go on; the worker exits non-zero and restarts clean."""


def _fetchable_end(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """Where the records a read_committed consumer can fetch end, as the last fetch saw it:
    the last stable offset (records of open transactions — a killed exactly-once worker's,
    until it times out — are not waiting, they cannot be read yet), else the highwater."""
    stable = consumer.last_stable_offset(tp)
    if stable is not None and stable >= 0:
        return int(stable)
    end = consumer.highwater(tp)
    return None if end is None else int(end)


class _Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.engine.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.engine.on_assigned(set(assigned))


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
        self.stage_runners: dict[str, list[PipelineRunner]] = {}
        self.rekey_runners: dict[str, list[PipelineRunner]] = {}
        for runner in self.runners:
            for stage in runner.stages:  # a join's runner has two
                self.stage_runners.setdefault(stage, []).append(runner)
            for rekeyed in runner.rekeyed:
                self.rekey_runners.setdefault(rekeyed, []).append(runner)
        self.topics = sorted({*self.stage_runners, *self.rekey_runners})
        written = {topic for runner in self.runners for topic in runner.spec.output_topics()}
        written |= {t for r in self.runners for t in r.rekeyed.values()}
        self.backpressure = Backpressure(
            [topic for topic in self.topics if topic in written], self.batch_max
        )
        self.last_hold_log = -HOLD_LOG_INTERVAL_S
        self.store_topic: dict[ChangelogStore, str] = {
            store: runner.stage_topic for runner in self.runners for store in runner.stores
        }
        self.lock = asyncio.Lock()  # a batch, a checkpoint, a rebalance: one at a time
        self.owned: set[TopicPartition] = set()
        self.next: dict[TopicPartition, int] = {}  # next offset to process
        self.committed: dict[TopicPartition, int] = {}
        self.assigned_once = False
        self.generation = -1  # the group generation of the current assignment
        self.rebalancing = False
        self.restored = False
        self.state_ahead = False  # a commit failed: memory holds more than the commit
        self.uncommitted = False
        self.in_transaction = False
        self.last_commit = time.monotonic()
        self.last_flush = time.monotonic()
        self.last_progress = time.monotonic()
        self.idle = False  # the last poll returned nothing: every fetched record is processed
        self.stopping = asyncio.Event()
        self.failure: BaseException | None = None
        self.records_processed = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._output: Output | None = None
        self.local = (
            LocalState(LOCAL_STATE_DIR / settings.app_id)
            if settings.store == "rocksdb://"
            else None
        )

    # --- life cycle --------------------------------------------------------------------

    @property
    def consumer(self) -> AIOKafkaConsumer:
        assert self._consumer is not None, "engine not started"
        return self._consumer

    @property
    def output(self) -> Output:
        assert self._output is not None, "engine not started"
        return self._output

    async def start(self) -> None:
        """Clients started, topics created, the group joined (asynchronously)."""
        settings = self.settings
        processing = settings.processing
        connection = connection_options(settings)
        producer_options: dict[str, Any] = {
            "acks": "all",
            "linger_ms": 1,
            "max_batch_size": 512 * 1024,
            "max_request_size": max(processing.max_message_bytes * 2, 1_048_576),
            "compression_type": None
            if processing.compression == "none"
            else processing.compression,
        }
        if self.exactly_once:
            producer_options["transactional_id"] = f"{settings.app_id}-{uuid.uuid4().hex}"
            producer_options["transaction_timeout_ms"] = TRANSACTION_TIMEOUT_MS
        producer = AIOKafkaProducer(**connection, **producer_options)
        try:
            await start_client(producer, settings)
        except KafkaUnreachable:
            if self.exactly_once and await probe(settings, 5.0) is None:
                raise KafkaUnreachable(
                    f"processing.guarantee exactly_once needs Kafka transactions, and the "
                    f"broker at {', '.join(settings.brokers)} refused a transactional producer "
                    "(the embedded broker has none): use Apache Kafka, or guarantee "
                    "at_least_once"
                ) from None
            raise
        self._producer = producer
        self._output = Output(producer)
        await ensure_topics(connection, settings, self.runners)
        consumer = AIOKafkaConsumer(
            **connection,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # aborted transactions of upstream producers are never processed
            isolation_level="read_committed",
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_MS,
            rebalance_timeout_ms=SESSION_TIMEOUT_MS * 2,
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
            max_partition_fetch_bytes=max(processing.max_message_bytes * 2, 1_048_576),
            partition_assignment_strategy=assignors(self.runners),
        )
        await start_client(consumer, settings)
        self._consumer = consumer
        consumer.subscribe(self.topics, listener=_Rebalances(self))

    async def run(self) -> None:
        """Process until `stop()`; an error that escapes is the worker's crash (and no
        checkpoint may follow it: the batch it interrupted is not done)."""
        try:
            await self._loop()
            self._raise_failure()  # a rebalance callback failed: not a stop, a crash
        except BaseException as exc:
            self.failure = self.failure or exc
            raise

    async def _loop(self) -> None:
        consumer = self.consumer
        batch_max = self.batch_max
        while not self.stopping.is_set():
            try:
                # backpressure.polled: the internal partitions while held, else [] (all)
                batches = await consumer.getmany(
                    *self.backpressure.polled, timeout_ms=self.poll_ms, max_records=batch_max
                )
            except (UnsupportedCodecError, CorruptRecordException) as exc:
                raise await self._undecodable(exc) from None
            self._raise_failure()
            async with self.lock:
                self.idle = not batches
                if batches:
                    await self._process(batches)
                self._hold_or_release_sources()
                now = time.monotonic()
                if self.uncommitted and (
                    self.idle or now - self.last_commit >= self.commit_interval
                ):
                    await self.checkpoint()
                if self.idle and now - self.last_flush >= IDLE_FLUSH_INTERVAL_S:
                    await self._flush_idle()

    async def stop(self) -> None:
        """A last checkpoint, then leave the group (partitions move at once)."""
        self.stopping.set()
        try:
            if self._consumer is not None and self.failure is None and not self.state_ahead:
                async with self.lock:
                    await self.checkpoint()
        finally:
            if self._consumer is not None:
                await self._consumer.stop()
            if self._producer is not None:
                if self.in_transaction:
                    await _quietly(self._producer.abort_transaction())
                await self._producer.stop()
            if self.local is not None:
                self.local.close_all()

    def _generation(self) -> int:
        """The group generation the consumer is a member of (-1 once it learns it was
        dropped). aiokafka's TxnOffsetCommit does not send the generation (KIP-447), so
        exactly-once checks it itself before committing a transaction."""
        coordinator = getattr(self.consumer, "_coordinator", None)
        return int(getattr(coordinator, "generation", -1))

    def _fail(self, exc: BaseException) -> None:
        """An error inside a rebalance callback (aiokafka would only log it)."""
        if self.failure is None:
            self.failure = exc
        self.stopping.set()

    def _raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

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
        await self._begin_transaction()
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
        backpressure = self.backpressure
        if not backpressure.internal_topics or self.rebalancing:
            return
        consumer = self.consumer
        # what the consumer has assigned now (a rebalance may be under way)
        assigned = consumer.assignment() & self.owned
        verdict, lag = backpressure.update(assigned, self.next, partial(_fetchable_end, consumer))
        if verdict:
            now = time.monotonic()
            if now - self.last_hold_log >= HOLD_LOG_INTERVAL_S:  # a line a minute at most
                self.last_hold_log = now
                log.info(
                    "%d records wait on internal topics: sources held until they catch up "
                    "(%d holds so far)",
                    lag,
                    backpressure.holds,
                )
        elif verdict is False:
            log.debug("internal topics caught up (%d records wait): sources resumed", lag)

    async def _undecodable(self, exc: KafkaError) -> EngineError:
        """Which partition and offset the consumer cannot decode, and what to do: the
        worker stops (exit 70) rather than skip records it cannot even count."""
        consumer = self.consumer
        where = "one of its partitions"
        for tp in sorted(self.owned):
            position = await consumer.position(tp)
            try:
                await consumer.getmany(tp, timeout_ms=1000, max_records=1)
            except KafkaError:
                where = f"{tp.topic}[{tp.partition}] at offset {position}"
                break
            consumer.seek(tp, position)  # nothing taken from a healthy partition
        if isinstance(exc, UnsupportedCodecError):
            advice = (
                "the batch uses a compression codec this installation cannot read; install "
                "the codecs with pip install 'aiokafka[lz4,snappy,zstd]' (sluice's own "
                "dependencies include them)"
            )
        else:
            advice = (
                "the record batch is corrupt; check the producer, or move the group past it "
                f"(kafka-consumer-groups --group {self.group} --reset-offsets --to-offset …)"
            )
        return EngineError(f"cannot decode the records of {where}: {exc}; {advice}")

    async def _flush_idle(self) -> None:
        """Close windows of idle partitions by wall clock, once every assigned partition
        is processed to its end (a partition without new records may be behind, not
        idle)."""
        self.last_flush = time.monotonic()
        if self.rebalancing or not self.owned:
            return
        for runner in self.runners:
            if not runner.stores or not await self._caught_up(runner.stage_topic):
                continue
            await self._begin_transaction()
            current_pipeline.set(runner.name)
            await runner.flush_idle(self.output)
            current_pipeline.set(None)
            self.uncommitted = True
        await self.output.send()

    async def _caught_up(self, topic: str) -> bool:
        consumer = self.consumer
        for tp in self.owned:
            if tp.topic != topic:
                continue
            end = consumer.last_stable_offset(tp)
            if end is None or await consumer.position(tp) < end:
                return False
        return True

    # --- checkpoints -------------------------------------------------------------------

    async def _begin_transaction(self) -> None:
        if self.exactly_once and not self.in_transaction:
            assert self._producer is not None
            await self._producer.begin_transaction()
            self.in_transaction = True

    def _queue_changelog_writes(self) -> list[Write]:
        """Every store's changes since the last checkpoint, each key once, with the last
        input offset of its partition that the state includes."""
        add = self.output.add
        queued: list[Write] = []
        for store, topic in self.store_topic.items():
            writes = store.take_writes()
            for write in writes:
                processed = self.next.get(TopicPartition(topic, write.partition), 0) - 1
                add(
                    store.topic,
                    encode_key(write.key),
                    encode_value(write.value),
                    offset_header(processed),
                    write.partition,
                )
            queued += writes
        return queued

    def _keep_locally(self, writes: list[Write]) -> None:
        """rocksdb://: a committed checkpoint's changes into the local copies, with the
        changelog offset they reach (see streams.runtime.local_state)."""
        if self.local is None or not writes:
            return
        by_partition: dict[tuple[ChangelogStore, int], list[tuple[str, Any]]] = {}
        for write in writes:
            by_partition.setdefault((write.store, write.partition), []).append(
                (write.key, write.value)
            )
        acked = self.output.acked
        for (store, partition), changes in by_partition.items():
            end = acked.get((store.topic, partition))
            if end is not None:
                self.local.partition(store.name, partition).write(changes, end)

    async def checkpoint(self) -> None:
        """Outputs on the broker, then the state changes, then the offsets (see module)."""
        self.last_commit = time.monotonic()
        self.uncommitted = False
        output = self.output
        await self._begin_transaction()
        await output.drain()
        for runner in self.runners:
            runner.persist()
        writes = self._queue_changelog_writes()
        await output.drain()
        offsets = {
            tp: offset
            for tp, offset in self.next.items()
            if tp in self.owned and self.committed.get(tp) != offset
        }
        if self.exactly_once:
            producer = self._producer
            assert producer is not None
            if self._generation() != self.generation:
                # the group moved on without this worker (a long pause): what it did since
                # is another member's to do again — abort, restore everything later
                await producer.abort_transaction()
                self.in_transaction = False
                self.state_ahead = True
                log.warning("no longer in the group's generation: transaction aborted")
                return
            if offsets:
                await producer.send_offsets_to_transaction(offsets, self.group)
            await producer.commit_transaction()
            self.in_transaction = False
        elif offsets:
            try:
                await self.consumer.commit(offsets)
            except _REBALANCE_ERRORS as exc:
                # the group moved on: this worker's state may hold records whose offsets
                # the next owner will process again, so every partition is restored
                # from the changelog at the next assignment
                self.state_ahead = True
                log.warning("offset commit refused (%s): state will be restored", exc)
                return
        self.committed.update(offsets)
        self._keep_locally(writes)

    # --- rebalances --------------------------------------------------------------------

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Before a rebalance: the batch in progress finishes and everything is committed."""
        try:
            async with self.lock:
                self.rebalancing = True
                if self.owned and not self.state_ahead and self.failure is None:
                    await self.checkpoint()
        except KafkaError as exc:
            self.state_ahead = True
            log.warning("checkpoint before the rebalance failed (%r): state will be restored", exc)
        except Exception as exc:
            self._fail(exc)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """After a rebalance: new partitions' state restored from the changelogs as of the
        group's committed offsets, before any of their records is processed."""
        try:
            async with self.lock:
                await self._assign(assigned)
        except Exception as exc:
            self._fail(exc)

    async def _assign(self, assigned: set[TopicPartition]) -> None:
        consumer = self.consumer
        kept = set() if self.state_ahead else assigned & self.owned
        fresh = assigned - kept
        for tp in self.owned - kept:
            self.next.pop(tp, None)
            self.committed.pop(tp, None)
        self.output.forget_partition_counts()
        starts: dict[TopicPartition, int] = {}
        unknown = []
        for tp in fresh:
            committed = await consumer.committed(tp)
            if committed is None or committed < 0:
                unknown.append(tp)
            else:
                starts[tp] = committed
        if unknown:
            starts.update(await consumer.beginning_offsets(unknown))
        for tp, offset in starts.items():
            self.next[tp] = offset
            self.committed[tp] = offset
            consumer.seek(tp, offset)
        await verify_copartitioned(consumer, self._producer, self.runners, self.group)
        await self._restore(starts, kept)
        self.owned = assigned
        self.backpressure.reset()  # a new assignment: nothing held
        self.generation = self._generation()
        self.state_ahead = False
        self.rebalancing = False
        self.assigned_once = True
        self.restored = True
        log.info(
            "assigned %d partition(s): %s",
            len(assigned),
            ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)) or "none",
        )

    async def _restore(self, starts: dict[TopicPartition, int], kept: set[TopicPartition]) -> None:
        """Each stateful runner: the partitions it no longer owns (or must reload) dropped,
        the new ones read from the changelogs; then the steps rebuild their caches."""
        self.restored = False
        connection = connection_options(self.settings)
        for runner in self.runners:
            topic = runner.stage_topic
            if runner.stores:
                reload = {
                    tp.partition for tp in (self.owned | set(starts)) - kept if tp.topic == topic
                }
                for store in runner.stores:
                    store.drop_partitions(reload)
                    if self.local is not None:
                        for partition in reload:
                            self.local.close(store.name, partition)
                committed = {tp.partition: o for tp, o in starts.items() if tp.topic == topic}
                await self._restore_stores(connection, runner.stores, committed)
            runner.reset()
        # compensating writes (streams.runtime.changelog) before anything is processed
        if any(store.has_writes() for store in self.store_topic):
            await self._begin_transaction()
            self._queue_changelog_writes()
            await self.output.drain()
            if self.exactly_once:
                assert self._producer is not None
                await self._producer.commit_transaction()
                self.in_transaction = False

    async def _restore_stores(
        self, connection: dict[str, Any], stores: list[ChangelogStore], committed: dict[int, int]
    ) -> None:
        """Stores' partitions from their local copies (rocksdb://) and the changelog since
        them, or from the whole changelog."""
        start_at: dict[tuple[str, int], int] = {}
        if self.local is not None and committed:
            began, loaded = time.monotonic(), 0
            for store in stores:
                for partition in committed:
                    entries, offset = self.local.partition(store.name, partition).load()
                    for key, value in entries:
                        store.load(key, value, partition)
                        loaded += 1
                    start_at[(store.topic, partition)] = offset
            log.info(
                "local state loaded: %d keys of %d store(s) in %.2fs",
                loaded,
                len(stores),
                time.monotonic() - began,
            )
        restored = await restore(
            connection, stores, committed, read_committed=self.exactly_once, start_at=start_at
        )
        if self.local is None:
            return
        for (store, partition), keys in restored.touched.items():
            end = restored.ends[(store.topic, partition)]
            changes = [(key, store.get(key)) for key in keys]
            self.local.partition(store.name, partition).write(changes, end)

    # --- what the worker reports ------------------------------------------------------

    async def lags(self) -> dict[tuple[str, int], int]:
        """Records behind the log end (the last stable offset) per assigned partition, as
        Kafka's tools count it: from the committed offset — a batch in progress is not
        done. When the last poll found nothing buffered, the consumer's position counts:
        it has moved past transaction markers, which are no records."""
        consumer = self._consumer
        found: dict[tuple[str, int], int] = {}
        if consumer is None:
            return found
        for tp in list(self.owned):
            end = consumer.last_stable_offset(tp)
            if end is None:
                continue
            done = self.committed.get(tp, end)
            if self.idle and not self.uncommitted:
                done = max(done, await consumer.position(tp))
            found[(tp.topic, tp.partition)] = max(0, end - done)
        return found


def assignors(runners: Sequence[PipelineRunner]) -> tuple[type[Any], ...]:
    """A join's two stage topics must be co-partitioned in each member: the range assignor
    gives a member the same partitions of topics with equal partition counts (round robin,
    aiokafka's default, only when every count is a multiple of the group's size). Range
    alone: offering both (range first) left a second member on Apache Kafka 3.9 unable to
    join for 60 s, twice in two runs, where either alone joined at once. So every member
    of an app_id with a join must run it (a member without one would not agree)."""
    if any(runner.join_topic is not None for runner in runners):
        return (RangePartitionAssignor,)
    return (RoundRobinPartitionAssignor,)


async def _quietly(awaitable: Any) -> None:
    with contextlib.suppress(Exception):  # best effort while stopping
        await asyncio.wait_for(awaitable, 5)
