"""Keyed stateful steps: dedupe, alert, ratelimit — and enrich, which reads a lookup table.

Each reads a key's state once per batch and writes it once (`KeyedState`).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any, ClassVar

from models.pipeline_spec import AlertSpec, DedupeSpec, EnrichSpec, RateLimitSpec
from streams.core.errors import RecordError
from streams.core.event_time import iso_ms
from streams.core.records import Event, key_of
from streams.core.state import StateStore, is_bookkeeping
from streams.steps.contract import BatchContext, Step


class KeyedState:
    """A batch's view of a store: each key read once, written back once at `flush`."""

    __slots__ = ("changed", "partitions", "store", "values")

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.values: dict[str, Any] = {}
        self.changed: set[str] = set()
        self.partitions: dict[str, int] = {}

    def get(self, key: str) -> Any:
        if key not in self.values:
            self.values[key] = self.store.get(key)
        return self.values[key]

    def set(self, key: str, value: Any, partition: int | None = None) -> None:
        self.values[key] = value
        self.changed.add(key)
        if partition is not None:
            self.partitions[key] = partition

    def write_back(self) -> None:
        for key in self.changed:
            value = self.values[key]
            partition = self.partitions.get(key)
            if value is None:
                self.store.delete(key, partition)
            else:
                self.store.set(key, value, partition)


def _key(event: Event, fields: Sequence[str] | None) -> str | None:
    if fields is None:
        return event.key if event.key is not None else ""
    return key_of(event.value, fields)


def key_or_dead_letter(
    event: Event, fields: Sequence[str], step: Step, ctx: BatchContext
) -> str | None:
    """The record's key from `fields`; a record without it goes to the dead letters."""
    key = key_of(event.value, fields)
    if key is None:
        message = f"{step.kind} key field(s) {', '.join(fields)} missing or null"
        ctx.dead_letter(event, step.name, RecordError(message, "key"))
    return key


class KeyedStep(Step):
    """A step that keeps or drops each record by its key's state: the key from `fields`
    (a record without it is a dead letter), each key's state read once per batch and
    written back once (`KeyedState`), the dropped records counted under `drop_reason`.
    A subclass says what happens to one record (`admit`) and, if it must, what happens
    after the batch (`after_batch`)."""

    drop_reason: ClassVar[str]

    def __init__(self, name: str, fields: Sequence[str], store: StateStore) -> None:
        super().__init__(name)
        self.fields = fields
        self.store = store

    def admit(self, event: Event, key: str, state: KeyedState, ctx: BatchContext) -> bool | None:
        """True: the record goes on; False: it is dropped (counted); None: it was made a
        dead letter."""
        raise NotImplementedError

    def after_batch(self, state: KeyedState) -> None:
        """Before the batch's state is written back."""

    def process(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        state = KeyedState(self.store)
        kept = []
        dropped = 0
        admit = self.admit
        for event in events:
            key = key_or_dead_letter(event, self.fields, self, ctx)
            if key is None:
                continue
            verdict = admit(event, key, state, ctx)
            if verdict:
                kept.append(event)
            elif verdict is False:
                dropped += 1
        self.after_batch(state)
        state.write_back()
        ctx.drop(self.name, self.drop_reason, dropped)
        return kept


class DedupeStep(KeyedStep):
    """Keeps the first record per key within `within` of event time. A key's entry is
    purged once the partition's watermark is `within` past it, so state stays bounded."""

    kind = "dedupe"
    drop_reason = "duplicate"

    def __init__(self, name: str, spec: DedupeSpec, store: StateStore) -> None:
        super().__init__(name, spec.key, store)
        self.within = spec.within
        self.reset()

    def reset(self) -> None:
        self.watermarks: dict[int, int] = {}
        self.expiry: dict[int, list[tuple[int, str]]] = {}

    def admit(self, event: Event, key: str, state: KeyedState, ctx: BatchContext) -> bool:
        t = event.timestamp_ms
        partition = event.partition
        self.watermarks[partition] = max(self.watermarks.get(partition, t), t)
        first = state.get(key)
        if first is not None and abs(t - first) < self.within:
            return False
        state.set(key, t, partition)
        heapq.heappush(self.expiry.setdefault(partition, []), (t + self.within, key))
        return True

    def after_batch(self, state: KeyedState) -> None:
        for partition, heap in self.expiry.items():
            watermark = self.watermarks.get(partition, 0)
            while heap and heap[0][0] <= watermark:
                expires, key = heapq.heappop(heap)
                if state.get(key) == expires - self.within:
                    state.set(key, None, partition)


class RateLimitStep(KeyedStep):
    """A token bucket per key in event time: `rate` tokens per `per`, up to `burst`."""

    kind = "ratelimit"
    drop_reason = "ratelimit"

    def __init__(self, name: str, spec: RateLimitSpec, store: StateStore) -> None:
        super().__init__(name, spec.key, store)
        self.per_ms = spec.rate / spec.per
        self.burst = spec.burst if spec.burst is not None else spec.rate
        self.to_dlq = spec.action == "dlq"

    def admit(self, event: Event, key: str, state: KeyedState, ctx: BatchContext) -> bool | None:
        t = event.timestamp_ms
        bucket = state.get(key)
        tokens, last = (self.burst, t) if bucket is None else bucket
        tokens = min(self.burst, tokens + max(0, t - last) * self.per_ms)
        verdict: bool | None = True
        if tokens >= 1:
            tokens -= 1
        elif self.to_dlq:
            ctx.dead_letter(
                event, self.name, RecordError(f"rate limit for key {key!r} exceeded", "ratelimit")
            )
            verdict = None
        else:
            verdict = False
        state.set(key, [tokens, max(t, last)], event.partition)
        return verdict


class AlertStep(Step):
    """Per key: condition true for `for` → one `firing` record; false again → one
    `resolved`. Records pass on unchanged."""

    kind = "alert"

    def __init__(self, name: str, spec: AlertSpec, topic: str, store: StateStore) -> None:
        super().__init__(name)
        self.spec = spec
        self.topic = topic
        self.fields = spec.key
        self.store = store
        self.firing: int | None = None

    def reset(self) -> None:
        self.firing = None

    def process(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        if self.firing is None:
            self.firing = sum(
                1
                for k in list(self.store.keys())
                if not is_bookkeeping(k) and (self.store.get(k) or {}).get("firing")
            )
        state = KeyedState(self.store)
        passed = []
        condition = self.spec.when
        for event in events:
            key = _key(event, self.fields)
            if key is None:
                key = ""
            try:
                true = condition.evaluate(event.value) is True
            except RecordError as error:
                ctx.dead_letter(event, self.name, error)
                continue
            passed.append(event)
            t = event.timestamp_ms
            current = state.get(key) or {}
            if true:
                since = current.get("since", t)
                if not current.get("firing") and t - since >= self.spec.for_:
                    ctx.emit(
                        self.topic, event.derive(self._alert(event, "firing", since=iso_ms(since)))
                    )
                    current = {"since": since, "firing": True}
                    self.firing += 1
                elif "since" not in current:
                    current = {"since": t, "firing": False}
                state.set(key, current, event.partition)
            elif current:
                if current.get("firing"):
                    ctx.emit(
                        self.topic,
                        event.derive(
                            self._alert(
                                event, "resolved", since=iso_ms(current["since"]), until=iso_ms(t)
                            )
                        ),
                    )
                    self.firing -= 1
                state.set(key, None, event.partition)
        state.write_back()
        ctx.gauges[f"alerts_firing:{self.spec.name}"] = self.firing
        return passed

    def _alert(self, event: Event, status: str, **times: str) -> dict[str, Any]:
        record: dict[str, Any] = {
            "alert": self.spec.name,
            "status": status,
            "severity": self.spec.severity,
        }
        for field in self.fields or ():
            record[field] = event.value.get(field)
        record.update(times)
        record["value"] = event.value
        return record


class EnrichStep(Step):
    """Adds fields of a lookup table's row (latest value per key) to each record."""

    kind = "enrich"

    def __init__(self, name: str, spec: EnrichSpec, table: StateStore) -> None:
        super().__init__(name)
        self.spec = spec
        self.table = table

    def process(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        kept = []
        missing = 0
        fields = self.spec.fields
        for event in events:
            key = key_of(event.value, self.spec.on)
            row = self.table.get(key) if key is not None else None
            if row is None:
                if self.spec.missing == "drop":
                    missing += 1
                    continue
                if self.spec.missing == "dlq":
                    ctx.dead_letter(
                        event,
                        self.name,
                        RecordError(f"no row in table {self.spec.table!r} for {key!r}", "enrich"),
                    )
                    continue
                if fields:
                    for field in fields:
                        event.value.setdefault(field, None)
                kept.append(event)
                continue
            if fields:
                for field in fields:
                    event.value[field] = row.get(field)
            else:
                for field, value in row.items():
                    event.value.setdefault(field, value)
            kept.append(event)
        ctx.drop(self.name, "enrich_missing", missing)
        return kept
