"""The patches of Faust sluice needs, each with its reason; applied once per process by
`attach`. Nothing outside streams.faust changes Faust."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

# Faust's worker consumer fetches with a hard-coded fetch_max_wait_ms of 1,500. tansu (the
# embedded broker) holds a fetch for its whole wait even when records arrive, and returns
# a batch or so per partition each time: 700 records took 50 s to pass a pipeline
# (measured). Apache Kafka answers as soon as data arrives, so a short wait only costs idle
# fetch requests there. sluice's own engine waits 100 ms: tansu stops listing a partition's
# batches at the wait, so at 10 ms a long-running topic's tail came back empty (issue 22,
# case 9; streams.runtime.engine_clients.FETCH_MAX_WAIT_MS) — the same bound here.
FETCH_MAX_WAIT_MS = 100
FETCH_ENDS_TIMEOUT_S = 10.0  # then the listed ends stand (as unpatched Faust)


def apply() -> None:
    from faust.transport.drivers import aiokafka as driver

    thread: Any = driver.AIOKafkaConsumerThread
    if getattr(thread, "_sluice_patched", False):
        return
    create = thread._create_worker_consumer

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by its fetcher at start
        return consumer

    thread._create_worker_consumer = _create_worker_consumer
    thread.seek_to_committed = _seek_to_committed
    thread._sluice_patched = True


async def _seek_to_committed(self: Any) -> Any:
    """Patch: Faust rewinds the stream partitions to their committed offsets after every
    rebalance and table recovery (`Consumer.perform_seek`), because its fetcher drops the
    records it fetched meanwhile (flow stopped, generation changed) after the consumer's
    position moved past them. aiokafka's `seek_to_committed` seeks only partitions whose
    committed offset is above 0: a partition its group never committed keeps the moved
    position, and the dropped records are never read — nor committed over: Faust's commit
    then starts at the first offset acked (measured on Apache Kafka, 3 of 3 takeovers of a
    worker killed before its first commit: the survivor read that worker's two `payments`
    partitions from offsets 222 and 207, where it had stopped at 35 and 39 — 353 records
    lost to every pipeline reading them). Here such a partition goes back to
    where the group starts without a commit (`consumer_auto_offset_reset`). Changelog
    partitions are the recovery's (read from its own offsets), never rewound here."""
    consumer = self._ensure_consumer()
    changelogs = set(self.app.tables.changelog_topics)
    policy = self.app.conf.consumer_auto_offset_reset
    return await self.call_thread(_rewind_every_stream_partition, consumer, changelogs, policy)


async def _rewind_every_stream_partition(
    consumer: Any, changelogs: set[str], policy: str
) -> dict[Any, int | None]:
    committed: dict[Any, int | None] = await consumer.seek_to_committed()
    streams = [tp for tp in committed if tp.topic not in changelogs]
    for tp in streams:
        if committed[tp] == 0:  # aiokafka leaves these too
            consumer.seek(tp, 0)
    never = [tp for tp in streams if committed[tp] is None]
    if never and policy == "earliest":
        await consumer.seek_to_beginning(*never)
    elif never and policy == "latest":
        await consumer.seek_to_end(*never)
    return committed


def keep_queued_records(app: Any) -> None:
    """Patch: mode's FlowControlEvent clears every stream queue on `resume()`. At the end
    of a table recovery Faust resumes the stream partitions, awaits the seek to the
    committed offsets, and only then calls `flow_control.resume()`: records fetched in
    between were dropped from the agents' queues, never processed, while the consumer read
    on (measured on tansu: a worker restarted onto waiting records got offsets 61 and 76 of
    a partition, never 62..75, in every partition of three topics). Stale records of a
    rebalance are not what this clear drops: Faust clears the queues at the revocation
    (`flow_control.clear()`), and nothing enters them while the flow is suspended."""
    flow = app.flow_control
    if getattr(flow, "_sluice_patched", False):
        return

    def resume() -> None:
        flow._suspend.clear()
        flow._resume.set()

    flow.resume = resume
    flow._sluice_patched = True


def before_tables_start(app: Any, hook: Callable[[], Awaitable[None]]) -> None:
    """Patch: await `hook` when Faust's table manager starts the tables, before it declares
    their changelog topics and subscribes to them (`TableManager._update_channels`, after
    the producer started and before any assignment). Faust has no hook there: its tables'
    partition counts are fixed when they are made, which for sluice's is at `attach`,
    before a broker was reached (streams.faust.host: the state fits its input topic)."""
    manager = app.tables
    if getattr(manager, "_sluice_patched", False):
        return
    update = manager._update_channels

    async def _update_channels() -> None:
        await hook()
        await update()

    manager._update_channels = _update_channels
    manager._sluice_patched = True


def true_changelog_ends(connection_of: Callable[[Any], dict[str, Any] | None]) -> None:
    """Patch: Faust's recovery reads each changelog to the end offset the broker lists
    (ListOffsets). tansu lists an end at or below the true log end (the base offset of the
    last batch + 1; streams.runtime.recovery reads to each fetch's high watermark for the
    same reason): measured 29,708 listed for 30,500 records. Faust then stopped reading a
    changelog before the last checkpoint's writes and the worker went on without them —
    a window short by the records of the batch before a SIGTERM, while the offsets table
    (read whole) marked them applied. Here the listed ends are corrected with the high
    watermark of a fetch from them (Apache Kafka lists the true end: nothing changes).
    `connection_of(app)`: aiokafka connection options for the app's brokers."""
    from faust.tables.recovery import Recovery

    recovery: Any = Recovery
    if getattr(recovery, "_sluice_patched", False):
        return
    build = recovery._build_highwaters

    async def _build_highwaters(
        self: Any, consumer: Any, tps: Any, destination: Any, title: str
    ) -> None:
        await build(self, consumer, tps, destination, title)
        connection = connection_of(self.app)
        if connection is None or not destination:
            return
        listed = {tp: max(0, offset + 1) for tp, offset in destination.items()}
        for tp, end in (await fetched_ends(connection, listed)).items():
            # Faust keeps the last offset, not the end
            destination[tp] = max(destination[tp], end - 1)

    recovery._build_highwaters = _build_highwaters
    recovery._sluice_patched = True


async def fetched_ends(connection: dict[str, Any], listed: dict[Any, int]) -> dict[Any, int]:
    """Per partition, the high watermark a fetch from its `listed` end offset reports."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        **connection, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    await consumer.start()
    try:
        parts = {TopicPartition(tp.topic, tp.partition): tp for tp in listed}
        consumer.assign(list(parts))
        for part, tp in parts.items():
            consumer.seek(part, listed[tp])
        found: dict[Any, int] = {}
        deadline = time.monotonic() + FETCH_ENDS_TIMEOUT_S
        while len(found) < len(parts) and time.monotonic() < deadline:
            waiting = [p for p in parts if parts[p] not in found]
            await consumer.getmany(*waiting, timeout_ms=200, max_records=1)
            for part in waiting:
                highwater = consumer.highwater(part)
                if highwater is not None:
                    found[parts[part]] = highwater
        return found
    finally:
        await consumer.stop()
