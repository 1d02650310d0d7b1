"""StateStore over a Faust Table, written from batches.

Faust picks a table write's changelog partition from the *current event*, which batch
iteration (`take_events`) does not set ("Cannot modify table key from outside of stream
iteration"). So this store bypasses `Table.__setitem__`: it writes the table's local store
and sends the changelog record itself, to the partition the key's records came from
(the table is co-partitioned with its source, as Faust requires). A step writes each
touched key once per batch, so the changelog gets one record per key per batch.

The changelog records are sent with the producer and *awaited* before the batch is
acknowledged. Faust's own path (`send_soon`) is not safe for this: its commit flushes
the send buffer with a 0.1 s timeout and commits the offsets anyway, so a worker killed
under load can leave offsets committed past state that never reached the changelog.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import faust
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TableT

from streams.errors import SluiceError
from streams.records import key_of
from streams.state import DictStateStore, StateStore

log = logging.getLogger("sluice.tables")

# (topic, key, value, partition, timestamp, headers) -> future of the send
SendFn = Callable[
    [str, bytes | None, bytes | None, int | None, float | None, Any], Awaitable[Awaitable[Any]]
]


APPLIED_KEY = "\x00applied:{partition}"
CATCH_UP_IDLE_S = 30.0


class StateRecoveryError(SluiceError):
    """A table could not be restored from its changelog."""


class FaustTableStore:
    """One step's state: a Faust Table named `<pipeline>.<step>` with a changelog topic.

    Writes change the local table at once but reach the changelog only at `commit`, after
    the batch's results are sent, followed by an `applied` marker per partition holding
    the batch's last source offset. On recovery only changelog records up to a
    partition's last marker count (a batch is all or nothing), and source records up to
    the marker are not processed again: the state stays exact across crashes, while
    results may be re-sent (at-least-once).
    """

    def __init__(self, table: TableT[Any, Any], send: SendFn) -> None:
        self.table = table
        self.name = table.name
        self.changelog = table.changelog_topic.get_topic_name()
        self._send = send
        self.partition_of: dict[str, int] = {}  # key -> partition, filled by the agent
        self.pending: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.table.data.get(key, default)

    def set(self, key: str, value: Any, partition: int | None = None) -> None:
        self.table.data[key] = value
        self.pending[key] = value
        if partition is not None:
            self.partition_of[key] = partition

    def delete(self, key: str, partition: int | None = None) -> None:
        if key in self.table.data:
            del self.table.data[key]
        self.pending[key] = None
        if partition is not None:
            self.partition_of[key] = partition

    def keys(self) -> Iterator[str]:
        return iter(list(self.table.data.keys()))

    def __len__(self) -> int:
        return len(self.table.data)

    def _partition(self, key: str) -> int:
        if key.startswith("\x00"):  # bookkeeping keys name their partition
            return int(key.rpartition(":")[2])
        # never None: with no partition Faust asks the partitioner, which fails before
        # the changelog's metadata is loaded
        return self.partition_of.get(key, 0)

    async def commit(self, applied: dict[int, int]) -> list[Awaitable[Any]]:
        """Start sending the batch's writes, then one `applied` marker per source
        partition; returns the sends to await."""
        send, topic = self._send, self.changelog
        sends = []
        for key, value in self.pending.items():
            encoded = None if value is None else orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
            sends.append(
                await send(topic, orjson.dumps(key), encoded, self._partition(key), None, None)
            )
        self.pending.clear()
        for partition, offset in applied.items():
            key = APPLIED_KEY.format(partition=partition)
            self.table.data[key] = offset
            sends.append(
                await send(topic, orjson.dumps(key), orjson.dumps(offset), partition, None, None)
            )
        return sends

    def applied(self) -> dict[int, int]:
        found = {}
        for key in self.keys():
            if key.startswith("\x00applied:"):
                found[int(key.rpartition(":")[2])] = int(self.table.data[key])
        return found


class FaustStateBackend:
    """Creates a table per stateful step, before the app starts (Faust needs them declared)."""

    def __init__(self, app: faust.App, partitions: int) -> None:
        self.app = app
        self.partitions = partitions
        self.stores: dict[str, FaustTableStore] = {}
        self.lookups: dict[str, DictStateStore] = {}
        self.stale = asyncio.Event()  # set on every assignment: catch up before processing

    def store(self, name: str) -> StateStore:
        if ".tables." in name:  # a lookup table: every worker holds all of it
            return self.lookups.setdefault(name, DictStateStore(name))
        if name not in self.stores:
            table = self.app.Table(
                name,
                default=None,
                partitions=self.partitions,
                help=f"sluice state of {name}",
            )
            self.stores[name] = FaustTableStore(table, self._send)
        return self.stores[name]

    def assign_partitions(self, partition_of: dict[str, int]) -> None:
        for store in self.stores.values():
            store.partition_of.update(partition_of)

    async def _send(self, *args: Any) -> Awaitable[Any]:
        return await self.app.producer.send(*args)

    async def commit(self, applied: dict[int, int]) -> None:
        """Every table's writes and markers, on the broker when this returns."""
        sends = []
        for store in self.stores.values():
            sends += await store.commit(applied)
        if sends:
            await asyncio.gather(*sends)

    def applied(self) -> dict[int, int]:
        """Per source partition, the last offset whose effects every table holds."""
        merged: dict[int, int] = {}
        for index, store in enumerate(self.stores.values()):
            marks = store.applied()
            if index == 0:
                merged = marks
            else:
                merged = {p: min(o, marks[p]) for p, o in merged.items() if p in marks}
        return merged

    async def catch_up(self, connection: dict[str, Any]) -> int:
        """Read every changelog to its true end into the tables; returns records read.

        Faust's recovery stops at the end offset the broker reports; tansu reports the
        base offset of the last record batch + 1 rather than the log end, so Faust
        restores stale values. A fetch's high watermark is right: read up to it.
        """
        if not self.stores:
            return 0
        await self.app.producer.flush()  # our own writes must be on the log first
        began = time.monotonic()
        consumer = AIOKafkaConsumer(
            **connection,
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        read = 0
        try:
            by_topic = {
                store.table.changelog_topic.get_topic_name(): store
                for store in self.stores.values()
            }
            partitions = [TopicPartition(t, p) for t in by_topic for p in range(self.partitions)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            # tansu's end offset is a lower bound of the true end (see above), but 0 does
            # mean empty; the others are read up to the high watermark their fetches report
            ends = await consumer.end_offsets(partitions)
            starts = await consumer.beginning_offsets(partitions)
            remaining = {tp for tp in partitions if ends[tp] > starts[tp]}
            idle_since = time.monotonic()
            # records after a partition's last `applied` marker belong to a batch that
            # did not finish: they are held back and dropped at the end
            held: dict[TopicPartition, list[tuple[Any, Any]]] = {tp: [] for tp in partitions}
            for store in by_topic.values():
                store.table.data.clear()
            while remaining:
                batches = await consumer.getmany(timeout_ms=100, max_records=10_000)
                for tp, messages in batches.items():
                    data = by_topic[tp.topic].table.data
                    pending = held[tp]
                    for message in messages:
                        key = orjson.loads(message.key) if message.key else None
                        value = None if message.value is None else orjson.loads(message.value)
                        pending.append((key, value))
                        if isinstance(key, str) and key.startswith("\x00applied:"):
                            for k, v in pending:
                                if v is None:
                                    data.pop(k, None)
                                else:
                                    data[k] = v
                            pending.clear()
                    read += len(messages)
                for tp in list(remaining):
                    highwater = consumer.highwater(tp)
                    if highwater is not None and await consumer.position(tp) >= highwater:
                        remaining.discard(tp)
                if batches:
                    idle_since = time.monotonic()
                elif remaining and time.monotonic() - idle_since > CATCH_UP_IDLE_S:
                    # processing on a partial state would lose records: fail, be restarted
                    names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(remaining))
                    raise StateRecoveryError(
                        f"changelogs {names} returned nothing for {CATCH_UP_IDLE_S:.0f}s "
                        "before reaching their end; is the broker overloaded or down?"
                    )
            dropped = sum(len(p) for p in held.values())
            if dropped:
                log.warning("tables: ignored %d changelog records of an unfinished batch", dropped)
        finally:
            await consumer.stop()
        log.info("tables caught up: %d changelog records in %.2fs", read, time.monotonic() - began)
        return read


async def feed_lookup_table(
    connection: dict[str, Any],
    topic: str,
    key_fields: tuple[str, ...],
    store: DictStateStore,
    loaded: asyncio.Event,
) -> None:
    """Keep `store` equal to the latest row per key of `topic` (compacted semantics),
    reading all its partitions: every worker sees the whole table. A row whose value is
    null deletes its key."""
    consumer = AIOKafkaConsumer(
        topic,
        **connection,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for messages in batches.values():
                for message in messages:
                    try:
                        row = orjson.loads(message.value) if message.value is not None else None
                    except orjson.JSONDecodeError:
                        log.warning(
                            "table %s: skipping a row that is not JSON (offset %d)",
                            topic,
                            message.offset,
                        )
                        continue
                    key = key_of(row, key_fields) if isinstance(row, dict) else None
                    if key is None and message.key is not None:
                        key = message.key.decode("utf-8", errors="replace")
                    if key is None:
                        continue
                    if row is None:
                        store.delete(key)
                    else:
                        store.set(key, row)
            if not batches and not loaded.is_set():
                loaded.set()
                log.info("lookup table %s loaded: %d rows", topic, len(store))
    finally:
        await consumer.stop()
