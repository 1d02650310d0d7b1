"""`join`: the pipeline's stream joined with a second stream within an interval of event
time (Kafka Streams' `KStream#join` with `JoinWindows`, ksqlDB's `JOIN … WITHIN`).

A record of one side and a record of the other join when their keys are equal (`key` on
the pipeline's records, `other_key` on the other stream's) and their event times are at
most `within` apart, before or after (inclusive): one joined record per matching pair.
The watermark is the largest event time seen on either side (per partition; both sides
are co-partitioned by the key). A record more than `grace` behind the watermark is late:
counted, dropped or dead-lettered (`late`), never stored or joined. So every partner a
record that is not late can have is no older than `watermark - grace - within`: each
side's records are kept that long and purged after, and the state holds `within + grace`
of event time per side, whatever the input's length.

`type: left` also sends each of the pipeline's records that joined nothing once its
interval has closed (when it is purged), with the other side null; `type: outer` does
the same for the other stream's records. At the end of a replay every record still kept
that joined nothing is sent so.

The joined record: `fields` (expressions) over the pipeline's record, whose fields read
as usual, with the other stream's record under `other` (`other.amount`; null when
unmatched); without `fields` it is the pipeline's record with the other's under `other`.
It is keyed by the join key, and its event time is the later of the two.

State per key: `{"p": partition, "l": [[t, record, joined], …], "r": […]}` (each side in
event-time order, so a record's partners are found by bisection), written once
per batch for each key it changed, plus the watermark per partition (a bookkeeping key).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from models.pipeline_spec import JoinSpec, PipelineSpec
from streams.core.errors import RecordError
from streams.core.event_time import iso_ms
from streams.core.records import Event, key_of
from streams.core.state import StateStore, bookkeeping_key, is_bookkeeping
from streams.steps.contract import BatchContext, Step

WATERMARK = "watermark"
_WATERMARK_PREFIX = bookkeeping_key(WATERMARK, 0).removesuffix("0")
LEFT, RIGHT = "l", "r"
OTHER = "other"  # the field the other stream's record is read under
_TIME = itemgetter(0)


@dataclass(slots=True, eq=False)
class Buffers:
    """One key's kept records: per side, [event time, record, joined anything]."""

    partition: int
    left: list[list[Any]] = field(default_factory=list)
    right: list[list[Any]] = field(default_factory=list)


class JoinStep(Step):
    kind = "join"

    def __init__(
        self, name: str, spec: JoinSpec, store: StateStore, pipeline: PipelineSpec
    ) -> None:
        super().__init__(name)
        self.spec = spec
        self.store = store
        self.stream = spec.stream
        self.within = spec.within_ms
        self.grace = spec.grace
        self.keys = {LEFT: spec.key, RIGHT: spec.right_key}
        self.fields = spec.fields
        self.unmatched_sides = {"inner": (), "left": (LEFT,), "outer": (LEFT, RIGHT)}[spec.type]
        self.late_to_dlq = spec.late == "dlq"
        self.timestamp_field = spec.timestamp or pipeline.source.timestamp
        self.reset()

    # --- state -------------------------------------------------------------------------

    def reset(self) -> None:
        self.cache: dict[str, Buffers] = {}
        self.watermarks: dict[int, int] = {}
        self.expiry: dict[int, list[tuple[int, str]]] = {}  # per partition: (time, key)
        self.buffered = 0  # records kept, both sides (the state's size)
        self._loaded = False

    def _load_all(self) -> None:
        """Rebuild the watermarks and the purge index from the store (after a restart)."""
        self._loaded = True
        for key in list(self.store.keys()):
            if key.startswith(_WATERMARK_PREFIX):
                self.watermarks[int(key.rpartition(":")[2])] = int(self.store.get(key))
            elif not is_bookkeeping(key):
                buffers = self._buffers(key)
                if buffers is not None:
                    for kept in (*buffers.left, *buffers.right):
                        self._expire_at(buffers.partition, kept[0], key)

    def _buffers(self, key: str) -> Buffers | None:
        buffers = self.cache.get(key)
        if buffers is None:
            data = self.store.get(key)
            if data is None:
                return None
            buffers = self.cache[key] = Buffers(data["p"], data["l"], data["r"])
            self.buffered += len(buffers.left) + len(buffers.right)
        return buffers

    def _save(self, keys: set[str]) -> None:
        for key in keys:
            buffers = self.cache.get(key)
            if buffers is None:
                continue
            if buffers.left or buffers.right:
                self.store.set(
                    key,
                    {"p": buffers.partition, "l": buffers.left, "r": buffers.right},
                    buffers.partition,
                )
            else:
                del self.cache[key]
                self.store.delete(key, buffers.partition)

    def _expire_at(self, partition: int, t: int, key: str) -> None:
        heapq.heappush(self.expiry.setdefault(partition, []), (t, key))

    # --- processing --------------------------------------------------------------------

    def process(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        """The pipeline's own records (after the steps before the join)."""
        return self._take(events, LEFT, ctx)

    def process_other(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        """The other stream's records (decoded, with their event time)."""
        return self._take(events, RIGHT, ctx)

    def _take(self, events: list[Event], side: str, ctx: BatchContext) -> list[Event]:
        if not self._loaded:
            self._load_all()
        fields = self.keys[side]
        within = self.within
        grace = self.grace
        watermarks = self.watermarks
        results: list[Event] = []
        changed: set[str] = set()
        for event in events:
            value = event.value
            key = key_of(value, fields) if isinstance(value, dict) else None
            if key is None:
                message = f"join key field(s) {', '.join(fields)} missing or null"
                ctx.dead_letter(event, self.name, RecordError(message, "key"))
                continue
            t = event.timestamp_ms
            partition = event.partition
            watermark = watermarks.get(partition)
            if watermark is not None and t < watermark - grace:
                self._late(event, t, watermark, ctx)
                continue
            if watermark is None or t > watermark:
                watermarks[partition] = t
            buffers = self._buffers(key)
            if buffers is None:
                buffers = self.cache[key] = Buffers(partition)
            mine, theirs = (
                (buffers.left, buffers.right) if side == LEFT else (buffers.right, buffers.left)
            )
            kept = [t, value, False]
            # each side's records are kept in event-time order: the partners are a slice
            first = bisect_left(theirs, t - within, key=_TIME)
            last = bisect_right(theirs, t + within, key=_TIME)
            for other in theirs[first:last]:
                left, right = (value, other[1]) if side == LEFT else (other[1], value)
                joined = self._joined(event, key, max(t, other[0]), left, right, ctx)
                if joined is None:
                    continue
                results.append(joined)
                kept[2] = other[2] = True
            insort(mine, kept, key=_TIME)
            self.buffered += 1
            self._expire_at(partition, t, key)
            changed.add(key)
        for partition in {event.partition for event in events}:
            results += self._purge(partition, changed, ctx)
            if partition in watermarks:
                self.store.set(bookkeeping_key(WATERMARK, partition), watermarks[partition])
        self._save(changed)
        return results

    def _purge(self, partition: int, changed: set[str], ctx: BatchContext) -> list[Event]:
        """Forget the records no record that is not late can join any more (older than
        `watermark - within - grace`); the unmatched ones go out for left/outer joins."""
        heap = self.expiry.get(partition)
        watermark = self.watermarks.get(partition)
        if not heap or watermark is None:
            return []
        horizon = watermark - self.within - self.grace
        results: list[Event] = []
        while heap and heap[0][0] < horizon:
            _, key = heapq.heappop(heap)
            buffers = self._buffers(key)
            if buffers is None:
                continue
            for side in (LEFT, RIGHT):
                records = buffers.left if side == LEFT else buffers.right
                cut = bisect_left(records, horizon, key=_TIME)
                if not cut:
                    continue
                gone = records[:cut]
                del records[:cut]
                self.buffered -= len(gone)
                if side in self.unmatched_sides:
                    results += self._unmatched(key, buffers.partition, side, gone, ctx)
            changed.add(key)
        return results

    def _unmatched(
        self, key: str, partition: int, side: str, records: list[list[Any]], ctx: BatchContext
    ) -> list[Event]:
        results = []
        for t, value, joined in records:
            if joined:
                continue
            event = Event(value, key, t, None, b"", partition)
            left, right = (value, None) if side == LEFT else (None, value)
            result = self._joined(event, key, t, left, right, ctx)
            if result is not None:
                results.append(result)
        return results

    def _joined(
        self,
        event: Event,
        key: str,
        t: int,
        left: dict[str, Any] | None,
        right: dict[str, Any] | None,
        ctx: BatchContext,
    ) -> Event | None:
        """The joined record, or None when a `fields` expression failed on it (then a
        dead letter of the record that made the pair, or of the unmatched record)."""
        context = {**left, OTHER: right} if left is not None else {OTHER: right}
        if self.fields is None:
            value = context
        else:
            try:
                value = {name: e.evaluate(context) for name, e in self.fields.items()}
            except RecordError as error:
                ctx.dead_letter(event, self.name, error)
                return None
        return Event(value, key, t, event.headers, event.raw, event.partition, event.offset)

    def _late(self, event: Event, t: int, watermark: int, ctx: BatchContext) -> None:
        message = (
            f"late event: more than grace behind the watermark (event time "
            f"{iso_ms(t)}, watermark {iso_ms(watermark)}, grace {self.grace} ms)"
        )
        ctx.late_event(event, self.name, message, to_dlq=self.late_to_dlq)

    def flush(self, ctx: BatchContext, *, final: bool) -> list[Event]:
        """At the end of a replay: every record kept that joined nothing (left/outer)."""
        if not final:
            return []
        if not self._loaded:
            self._load_all()
        results: list[Event] = []
        for key in sorted(self.cache):
            buffers = self.cache[key]
            for side in self.unmatched_sides:
                records = buffers.left if side == LEFT else buffers.right
                results += self._unmatched(key, buffers.partition, side, records, ctx)
                self.buffered -= len(records)
                records.clear()
        self._save(set(self.cache))
        return results
