"""The topics a worker needs, created before it joins the group.

Sources and outputs that do not exist are created with `processing.partitions`; a
repartition topic gets its source's partition count; a changelog its stage topic's
(co-partitioned: partition p of the state belongs to partition p of the input) and
`cleanup.policy=compact` (the latest value per key is all a restore needs). A broker that
refuses (no permission, no auto-creation) is logged, not fatal: the topics may be made
by someone else.

State stays co-partitioned only while the stage topic keeps the partition count its
changelogs were made with. When partitions are added to it (at start, or under a running
worker: the consumer sees them within `METADATA_MAX_AGE_MS`), keys move to other
partitions, away from their state: `NotCoPartitioned`, one error naming the topics, their
counts and what to do, and the worker exits 70 — as Kafka Streams stops ("Existing internal
topic … has invalid partitions") rather than compute windows from the wrong state. A
stateless pipeline simply reads the new partitions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from models.settings import Settings
from streams.core.errors import SluiceError
from streams.runtime.pipeline_runner import PipelineRunner

log = logging.getLogger("sluice.topics")


class NotCoPartitioned(SluiceError):
    """A stateful pipeline's input has a partition count its state was not made with."""


def copartitioning_error(
    runners: Sequence[PipelineRunner], counts: dict[str, int], app_id: str
) -> NotCoPartitioned | None:
    """The error for the first stateful pipeline whose changelog topics do not have its
    stage topic's partition count (`counts`: partitions by topic; unknown ones are skipped),
    else None."""
    for runner in runners:
        changelogs = [s.topic for s in runner.stores]
        error = not_copartitioned(runner.name, runner.stage_topic, changelogs, counts, app_id)
        if error is not None:
            return error
    return None


def not_copartitioned(
    pipeline: str, stage_topic: str, changelogs: Sequence[str], counts: dict[str, int], app_id: str
) -> NotCoPartitioned | None:
    """The error when `changelogs` (one pipeline's state) do not have the partition count
    of `stage_topic`, the topic it keeps state by (`counts`: partitions by topic; unknown
    ones are skipped), else None. The Faust host (streams.faust.host) stops with it too."""
    have = counts.get(stage_topic)
    if have is None:
        return None
    wrong = [f"{t} has {counts[t]}" for t in changelogs if t in counts and counts[t] != have]
    if not wrong:
        return None
    return NotCoPartitioned(
        f"pipeline {pipeline!r}: its input {stage_topic} has {have} partitions, but its "
        f"state's changelog {', '.join(wrong)}: state and input are no longer "
        "co-partitioned (were partitions added to the input?) and keys would meet other "
        "keys' state. Either give "
        f"{stage_topic} its old partition count back (recreate it), or start this "
        f"pipeline's state afresh: stop every worker of app {app_id!r}, delete "
        f"{', '.join(changelogs)}, reset the group's offsets "
        f"(kafka-consumer-groups --group {app_id} --reset-offsets), or use a new app_id"
    )


async def partition_counts(admin: AIOKafkaAdminClient) -> dict[str, int]:
    """Partitions of every existing topic (a metadata request naming topics could make the
    broker auto-create them with its own defaults)."""
    found: dict[str, int] = {}
    for described in await admin.describe_topics(None):
        if described.get("error_code", 0) == 0 and described.get("partitions"):
            found[described["topic"]] = len(described["partitions"])
    return found


async def _create(admin: AIOKafkaAdminClient, topics: list[NewTopic]) -> None:
    if not topics:
        return
    for topic in topics:  # one by one: a topic that exists must not fail the others
        try:
            await admin.create_topics([topic])
        except TopicAlreadyExistsError:
            pass
        except KafkaError as exc:
            log.warning(
                "cannot create topic %s (%r): create it, or let the broker", topic.name, exc
            )


async def ensure_topics(
    connection: dict[str, Any], settings: Settings, runners: Sequence[PipelineRunner]
) -> dict[str, int]:
    """Create what is missing; returns the partition count of every stage topic."""
    default = settings.processing.partitions
    admin = AIOKafkaAdminClient(**connection)
    await admin.start()
    try:
        plain = {r.source_topic for r in runners}
        plain |= {r.join_stream for r in runners if r.join_stream is not None}
        for runner in runners:
            plain.update(runner.spec.output_topics())
            plain.update(table.topic for table in runner.spec.tables.values())
        counts = await partition_counts(admin)
        missing = sorted(plain - set(counts))
        await _create(admin, [NewTopic(t, default, 1) for t in missing])
        for topic in missing:
            counts[topic] = default
        internal: list[NewTopic] = []
        stage_counts: dict[str, int] = {}
        for runner in runners:
            partitions = counts.get(runner.source_topic, default)
            if runner.repartition_topic is not None:
                internal.append(NewTopic(runner.repartition_topic, partitions, 1))
            if runner.join_topic is not None:  # co-partitioned with the stage topic
                internal.append(NewTopic(runner.join_topic, partitions, 1))
            stage_counts[runner.stage_topic] = partitions
            internal += [
                NewTopic(store.topic, partitions, 1, topic_configs={"cleanup.policy": "compact"})
                for store in runner.stores
            ]
        existing = await partition_counts(admin)
        await _create(admin, [t for t in internal if t.name not in existing])
        for runner in runners:  # a repartition topic made earlier keeps its count
            if runner.repartition_topic in existing:
                stage_counts[runner.stage_topic] = existing[runner.repartition_topic]
        error = copartitioning_error(runners, {**existing, **stage_counts}, settings.app_id)
        if error is not None:
            raise error
        return stage_counts
    finally:
        await admin.close()


async def verify_copartitioned(
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer | None,
    runners: Sequence[PipelineRunner],
    app_id: str,
) -> None:
    """At an assignment, before any restore: the stage topics' partition counts as the
    group consumer now sees them against their changelog topics' (the producer's metadata:
    changelogs are not subscribed). Raises `NotCoPartitioned`."""
    assert producer is not None, "engine not started"
    counts: dict[str, int] = {}
    for runner in runners:
        if not runner.stores:
            continue
        stage = consumer.partitions_for_topic(runner.stage_topic)
        if stage:
            counts[runner.stage_topic] = len(stage)
        for store in runner.stores:
            counts[store.topic] = len(await producer.partitions_for(store.topic))
    error = copartitioning_error(runners, counts, app_id)
    if error is not None:
        raise error
