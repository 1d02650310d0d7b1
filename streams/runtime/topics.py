"""The topics a worker needs, created before it joins the group.

Sources and outputs that do not exist are created with `processing.partitions`; a
repartition topic gets its source's partition count; a changelog its stage topic's
(co-partitioned: partition p of the state belongs to partition p of the input) and
`cleanup.policy=compact` (the latest value per key is all a restore needs). A broker that
refuses (no permission, no auto-creation) is logged, not fatal: the topics may be made
by someone else.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from models.settings import Settings
from streams.runtime.pipelines import PipelineRunner

log = logging.getLogger("sluice.topics")


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
        for topic in internal:
            have = existing.get(topic.name)
            if have is not None and have != topic.num_partitions:
                log.warning(
                    "%s has %d partitions, its input %d: state and input are no longer "
                    "co-partitioned",
                    topic.name,
                    have,
                    topic.num_partitions,
                )
        return stage_counts
    finally:
        await admin.close()
