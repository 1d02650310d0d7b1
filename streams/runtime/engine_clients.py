"""The engine's Kafka clients: how they are configured and started, and what the engine
says when its consumer cannot decode what it fetched."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import KafkaError, UnsupportedCodecError
from aiokafka.structs import TopicPartition

from models.settings import Settings
from streams.core.errors import SluiceError
from streams.runtime.kafka import KafkaUnreachable, connection_options, probe, start_client
from streams.runtime.seams import GroupConsumer, ProducerLike

if TYPE_CHECKING:
    from streams.runtime.pipeline_runner import PipelineRunner

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


class EngineError(SluiceError):
    """The data path cannot go on; the worker exits non-zero and restarts clean."""


class Rebalancing(Protocol):
    async def on_revoked(self, revoked: set[TopicPartition]) -> None: ...
    async def on_assigned(self, assigned: set[TopicPartition]) -> None: ...


class Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]
    """The consumer's rebalance callbacks, handed to the engine."""

    def __init__(self, engine: Rebalancing) -> None:
        self.engine = engine

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.engine.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        await self.engine.on_assigned(set(assigned))


async def start_producer(
    settings: Settings, exactly_once: bool, transactional_id: str | None = None
) -> ProducerLike:
    """The engine's producer, started; with exactly_once transactional, its id
    `transactional_id` (a new one per assignment, streams.runtime.checkpoint). Starting it
    runs InitProducerId, which fences every earlier producer of that id."""
    processing = settings.processing
    options: dict[str, Any] = {
        "acks": "all",
        "linger_ms": 1,
        "max_batch_size": 512 * 1024,
        "max_request_size": max(processing.max_message_bytes * 2, 1_048_576),
        "compression_type": None if processing.compression == "none" else processing.compression,
    }
    if exactly_once:
        options["transactional_id"] = transactional_id or transactional_base(settings)
        options["transaction_timeout_ms"] = TRANSACTION_TIMEOUT_MS
    producer = AIOKafkaProducer(**connection_options(settings), **options)
    try:
        await start_client(producer, settings)
    except KafkaUnreachable:
        if exactly_once and await probe(settings, 5.0) is None:
            raise KafkaUnreachable(
                f"processing.guarantee exactly_once needs Kafka transactions, and the "
                f"broker at {', '.join(settings.brokers)} refused a transactional producer "
                "(the embedded broker has none): use Apache Kafka, or guarantee "
                "at_least_once"
            ) from None
        raise
    started: ProducerLike = producer
    return started


def transactional_base(settings: Settings) -> str:
    """A worker's transactional ids begin with this (one per process); the checkpoint
    appends a counter per assignment."""
    return f"{settings.app_id}-{uuid.uuid4().hex}"


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


async def start_consumer(
    settings: Settings, strategy: tuple[type[Any], ...] = (RoundRobinPartitionAssignor,)
) -> GroupConsumer:
    max_bytes = max(settings.processing.max_message_bytes * 2, 1_048_576)
    consumer = AIOKafkaConsumer(
        **connection_options(settings),
        group_id=settings.app_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # aborted transactions of upstream producers are never processed
        isolation_level="read_committed",
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_MS,
        rebalance_timeout_ms=SESSION_TIMEOUT_MS * 2,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        max_partition_fetch_bytes=max_bytes,
        partition_assignment_strategy=strategy,
    )
    await start_client(consumer, settings)
    started: GroupConsumer = consumer
    return started


async def start_offsets(
    consumer: GroupConsumer, partitions: set[TopicPartition]
) -> dict[TopicPartition, int]:
    """Where processing of newly assigned partitions starts: the group's committed offset,
    else (never committed) the beginning."""
    starts: dict[TopicPartition, int] = {}
    unknown = []
    for tp in partitions:
        committed = await consumer.committed(tp)
        if committed is None or committed < 0:
            unknown.append(tp)
        else:
            starts[tp] = committed
    if unknown:
        starts.update(await consumer.beginning_offsets(unknown))
    return starts


def fetchable_end(consumer: GroupConsumer, tp: TopicPartition) -> int | None:
    """Where the records a read_committed consumer can fetch end, as the last fetch saw it:
    the last stable offset (records of open transactions — a killed exactly-once worker's,
    until it times out — are not waiting, they cannot be read yet), else the highwater."""
    stable = consumer.last_stable_offset(tp)
    if stable is not None and stable >= 0:
        return int(stable)
    end = consumer.highwater(tp)
    return None if end is None else int(end)


async def undecodable(
    consumer: GroupConsumer, owned: set[TopicPartition], group: str, exc: KafkaError
) -> EngineError:
    """Which partition and offset the consumer cannot decode, and what to do: the worker
    stops (exit 70) rather than skip records it cannot even count."""
    where = "one of its partitions"
    for tp in sorted(owned):
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
            f"(kafka-consumer-groups --group {group} --reset-offsets --to-offset …)"
        )
    return EngineError(f"cannot decode the records of {where}: {exc}; {advice}")


async def caught_up(consumer: GroupConsumer, owned: set[TopicPartition], topic: str) -> bool:
    """Every owned partition of `topic` processed to its last stable offset."""
    for tp in owned:
        if tp.topic != topic:
            continue
        end = consumer.last_stable_offset(tp)
        if end is None or await consumer.position(tp) < end:
            return False
    return True


async def lags(
    consumer: GroupConsumer,
    owned: set[TopicPartition],
    committed: dict[TopicPartition, int],
    clean: bool,
) -> dict[tuple[str, int], int]:
    """Records behind the log end (the last stable offset) per assigned partition, as
    Kafka's tools count it: from the committed offset — a batch in progress is not done.
    `clean` (the last poll found nothing buffered, all committed): the consumer's position
    counts, it has moved past transaction markers, which are no records."""
    found: dict[tuple[str, int], int] = {}
    for tp in list(owned):
        end = consumer.last_stable_offset(tp)
        if end is None:
            continue
        done = committed.get(tp, end)
        if clean:
            done = max(done, await consumer.position(tp))
        found[(tp.topic, tp.partition)] = max(0, end - done)
    return found
