"""The pure pipeline: a batch of messages in, records per output topic and dead letters out.

`Pipeline` never imports aiokafka or the runtime. The worker, `sluice replay` and the tests run
the same object; only where the messages come from and where the results go differ.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from operator import attrgetter
from typing import Any

import orjson

from streams.core import jsonl
from streams.core.errors import RecordError
from streams.core.event_time import event_time_ms, out_of_range, second_ms
from streams.core.jsonl import json_type
from streams.core.metrics import CountingMetrics, PipelineMetrics
from streams.core.records import BatchResult, Event, key_of
from streams.core.state import MemoryStateBackend, StateBackend
from streams.core.watchdog import Watchdog
from streams.steps import BatchContext, Router, Step, build_router, build_step
from streams.steps.join import JoinStep
from streams.steps.spec_fields import PipelineSpec

SOURCE_STEP = "source"
DEFAULT_MAX_MESSAGE_BYTES = 1_048_576
DEFAULT_MAX_EVENT_TIME_SKEW_MS = 7 * 86_400_000  # processing.max_event_time_skew


class Pipeline:
    """Runs one pipeline spec over batches.

    `process(messages)` takes `Event`s whose `raw` holds the message bytes (value unset; or,
    for a registry format, every value set to its decoded record or a RecordError),
    `timestamp_ms` the broker timestamp and `key` the message key; it decodes them, sets
    event time and key as the spec says, runs the steps and routes the survivors. Every
    record ends in an output, a dead letter, or a drop counted with its reason.

    `max_event_time_skew_ms` (processing.max_event_time_skew): an event time further ahead
    of `clock` than this, or before 1970, is a `timestamp` dead letter at step `source`.
    `watchdog`: component steps mark each record they run in a slot of it, so a sync
    `process` stuck past its timeout is reported (see streams.core.watchdog).
    """

    def __init__(
        self,
        spec: PipelineSpec,
        *,
        state: StateBackend | None = None,
        metrics: PipelineMetrics | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS,
        clock: Callable[[], float] = time.time,
        watchdog: Watchdog | None = None,
    ) -> None:
        self.spec = spec
        self.name = spec.pipeline
        self.state = state if state is not None else MemoryStateBackend()
        self.metrics: PipelineMetrics = metrics if metrics is not None else CountingMetrics()
        self.max_message_bytes = max_message_bytes
        # an event time past the clock by more than this (or before 1970) is a `timestamp`
        # dead letter: one record dated 9999 would otherwise move the watermark there and
        # make every later record late
        self.max_event_time_skew_ms = max_event_time_skew_ms
        self.clock = clock
        self.steps: list[Step] = [
            build_step(spec, name, step, self.state, watchdog) for name, step in spec.named_steps()
        ]
        self.router: Router = build_router(spec)
        self.dead_letter_topic = spec.dead_letter_topic
        self._key_fields = spec.source.key
        self._timestamp_field = spec.source.timestamp
        # a join's other stream: its records are decoded with its own time and key fields
        # and enter the steps at the join (see `process(..., stream=)`)
        self._join_index, self._join_step = _join_of(self.steps)
        # epoch ms of the seconds (YYYY-MM-DDTHH:MM:SS, UTC) event times were read in
        self._seconds: dict[str, int] = {}

    @property
    def streams(self) -> list[str]:
        """The topics this pipeline reads: its source, and a join's other stream."""
        join = self._join_step
        return [self.spec.source.topic] + ([join.stream] if join is not None else [])

    async def process(self, messages: list[Event], stream: str | None = None) -> BatchResult:
        """Process one batch of raw messages of the source, or (`stream`: a join's other
        stream) of the stream a join step reads: those enter the steps at the join."""
        ctx = self._context()
        self.metrics.events_in(len(messages))
        join = self._join_step
        if stream is None or stream == self.spec.source.topic:
            events = self._decode(messages, ctx, self._timestamp_field, self._key_fields)
            events = await self._run(0, events, ctx)
        elif join is not None and stream == join.stream:
            events = self._decode(messages, ctx, join.timestamp_field, join.keys["r"])
            began = time.perf_counter()
            events = join.process_other(events, ctx)
            self.metrics.step_seconds(join.name, time.perf_counter() - began)
            events = await self._run(self._join_index + 1, events, ctx)
        else:
            raise ValueError(f"pipeline {self.name!r} does not read {stream!r}")
        self.router.send(events, ctx)
        return self._finish(ctx)

    async def process_values(
        self, values: list[dict[str, Any]], stream: str | None = None
    ) -> BatchResult:
        """Process already-decoded records (tests, and callers that hold dicts)."""
        messages = [Event(None, raw=jsonl.dumps(value)) for value in values]
        return await self.process(messages, stream)

    async def flush(self, *, final: bool = False) -> BatchResult:
        """What steps release without input: windows closed by wall clock, or everything
        still open at the end of the input (`final`)."""
        ctx = self._context()
        for index, step in enumerate(self.steps):
            released = step.flush(ctx, final=final)
            if released:
                self.router.send(await self._run(index + 1, released, ctx), ctx)
        return self._finish(ctx)

    def persist(self) -> None:
        """Steps write what they hold in memory to their stores (see Step.persist)."""
        for step in self.steps:
            step.persist()

    def _context(self) -> BatchContext:
        return BatchContext(BatchResult(), int(self.clock() * 1000))

    async def _run(self, start: int, events: list[Event], ctx: BatchContext) -> list[Event]:
        metrics = self.metrics
        for step in self.steps[start:]:
            if not events:
                break
            began = time.perf_counter()
            processed = step.process(events, ctx)
            events = await processed if inspect.isawaitable(processed) else processed
            metrics.step_seconds(step.name, time.perf_counter() - began)
        return events

    def _finish(self, ctx: BatchContext) -> BatchResult:
        metrics = self.metrics
        result = ctx.result
        for (step, reason), count in ctx.drops.items():
            metrics.dropped(step, reason, count)
        if result.dead_letters:
            counts: dict[tuple[str, str], int] = {}
            for letter in result.dead_letters:
                label = (letter.step, letter.error_type)
                counts[label] = counts.get(label, 0) + 1
            for (step, error_type), count in counts.items():
                metrics.dead_letters(step, error_type, count)
        for topic, events in result.outputs.items():
            metrics.events_out(topic, len(events))
        if ctx.late:
            metrics.late_events(ctx.late)
        for gauge, value in ctx.gauges.items():
            if gauge == "windows_open":
                metrics.windows_open(value)
            elif gauge.startswith("alerts_firing:"):
                metrics.alerts_firing(gauge.partition(":")[2], value)
        return result

    def _event_time(self, stamp: object, field: str) -> int:
        """event_time_ms, filling the cache of seconds `_decode` reads ISO-8601 times from."""
        if isinstance(stamp, str) and len(stamp) == 24:
            text = stamp[:19]
            second = second_ms(text)
            if second is not None:
                if len(self._seconds) >= 4096:
                    self._seconds.clear()
                self._seconds[text] = second
        return event_time_ms(stamp, field)

    def reset(self) -> None:
        """Drop the steps' caches: after a rebalance the tables hold other keys."""
        for step in self.steps:
            step.reset()

    # --- decoding ------------------------------------------------------------------

    def _decode(
        self,
        messages: list[Event],
        ctx: BatchContext,
        timestamp_field: str | None,
        key_fields: tuple[str, ...] | None,
    ) -> list[Event]:
        decoded: list[Event] = []
        limit = self.max_message_bytes
        key_field = key_fields[0] if key_fields is not None and len(key_fields) == 1 else None
        latest = ctx.now_ms + self.max_event_time_skew_ms
        seconds = self._seconds
        raws = list(map(_RAW, messages))
        if messages and messages[0].value is not None:
            # decoded before (a registry format, streams.formats): a record, or the
            # RecordError saying why not
            values = [_TOO_LARGE if len(m.raw) > limit else m.value for m in messages]
        else:
            try:  # one test for the whole batch: usually no message needs the exact decoder
                exact = jsonl.may_need_exact(b"\n".join(raws))
            except TypeError:
                exact = True
            loads = jsonl.loads if exact else orjson.loads
            # each message's value, or the ValueError decoding it raised (or _TOO_LARGE)
            if raws and max(map(len, raws)) <= limit:
                values = _loads_all(loads, raws)
            else:
                values = [
                    _TOO_LARGE if len(raw) > limit else _loads_one(loads, raw) for raw in raws
                ]
        for message, value in zip(messages, values, strict=True):
            if value.__class__ is not dict:
                if value is _TOO_LARGE:
                    error = RecordError(
                        f"message is {len(message.raw)} bytes, more than max_message_bytes "
                        f"({limit})",
                        "oversize",
                    )
                elif isinstance(value, RecordError):
                    error = value
                elif isinstance(value, ValueError):
                    error = RecordError(f"invalid JSON: {value}", "invalid_json")
                else:
                    error = RecordError(
                        f"expected a JSON object, got {json_type(value)}", "invalid_json"
                    )
                ctx.dead_letter(message, SOURCE_STEP, error)
                continue
            try:
                if timestamp_field is not None:
                    stamp = value.get(timestamp_field)
                    # the common 2026-11-25T10:00:00.005Z: the second's epoch ms cached, and
                    # the milliseconds of each of the 1,000 ".mmmZ" ends
                    if (
                        stamp.__class__ is str
                        and (second := seconds.get(stamp[:19])) is not None
                        and (millis := _MILLIS.get(stamp[19:])) is not None
                    ):
                        t = message.timestamp_ms = second + millis
                    else:
                        t = message.timestamp_ms = self._event_time(stamp, timestamp_field)
                else:
                    t = message.timestamp_ms
                if not 0 <= t <= latest:
                    raise out_of_range(t, timestamp_field, self.max_event_time_skew_ms)
            except RecordError as error:
                ctx.dead_letter(message, SOURCE_STEP, error)
                continue
            if key_field is not None:  # one key field (key_of's common case, inline)
                part = value.get(key_field)
                message.key = (
                    part
                    if part.__class__ is str or part is None
                    else key_of(value, key_fields or ())
                )
            elif key_fields is not None:
                message.key = key_of(value, key_fields)
            message.value = value
            decoded.append(message)
        return decoded


def _join_of(steps: list[Step]) -> tuple[int, JoinStep | None]:
    for index, step in enumerate(steps):
        if isinstance(step, JoinStep):
            return index, step
    return -1, None


_TOO_LARGE = object()
_RAW = attrgetter("raw")
_MILLIS = {f".{ms:03d}Z": ms for ms in range(1000)}


def _loads_one(loads: Callable[[bytes], Any], raw: bytes) -> Any:
    try:
        return loads(raw)
    except ValueError as exc:
        return exc.with_traceback(None)  # its traceback would keep the frame alive


def _loads_all(loads: Callable[[bytes], Any], raws: list[bytes]) -> list[Any]:
    """`_loads_one` of each message, in a C-level `map` that a failing message only
    interrupts (list.extend keeps what it took before the error): ~0.1 µs less a message
    than a Python loop with a try per message."""
    values: list[Any] = []
    decoding = map(loads, raws)
    while True:
        try:
            values.extend(decoding)
            break
        except ValueError as exc:
            # without its traceback: the frame holding `values` would make a cycle that
            # keeps the batch's records until a full collection
            values.append(exc.with_traceback(None))
    if len(values) != len(raws):  # not as expected: the sure way
        return [_loads_one(loads, raw) for raw in raws]
    return values
