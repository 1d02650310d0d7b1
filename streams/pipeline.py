"""The pure pipeline: a batch of messages in, records per output topic and dead letters out.

`Pipeline` never imports aiokafka or the runtime. The worker, `sluice replay` and the tests run
the same object; only where the messages come from and where the results go differ.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any

import orjson

from models.pipeline import PipelineSpec
from streams import jsonl
from streams.durations import format_duration_ms
from streams.errors import RecordError
from streams.metrics import CountingMetrics, PipelineMetrics
from streams.records import BatchResult, Event, key_of
from streams.state import MemoryStateBackend, StateBackend
from streams.steps import BatchContext, Router, Step, build_router, build_step
from streams.watchdog import Watchdog

SOURCE_STEP = "source"
DEFAULT_MAX_MESSAGE_BYTES = 1_048_576
DEFAULT_MAX_EVENT_TIME_SKEW_MS = 7 * 86_400_000  # processing.max_event_time_skew
_EPOCH_MS_THRESHOLD = 100_000_000_000  # 1e11: below are epoch seconds, above milliseconds


class Pipeline:
    """Runs one pipeline spec over batches.

    `process(messages)` takes `Event`s whose `raw` holds the message bytes (value unset),
    `timestamp_ms` the broker timestamp and `key` the message key; it decodes them, sets
    event time and key as the spec says, runs the steps and routes the survivors. Every
    record ends in an output, a dead letter, or a drop counted with its reason.

    `max_event_time_skew_ms` (processing.max_event_time_skew): an event time further ahead
    of `clock` than this, or before 1970, is a `timestamp` dead letter at step `source`.
    `watchdog`: component steps mark each record they run in a slot of it, so a sync
    `process` stuck past its timeout is reported (see streams.watchdog).
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
        # epoch ms of the seconds (YYYY-MM-DDTHH:MM:SS, UTC) event times were read in
        self._seconds: dict[str, int] = {}

    async def process(self, messages: list[Event]) -> BatchResult:
        """Process one batch of raw messages."""
        ctx = self._context()
        self.metrics.events_in(len(messages))
        events = self._decode(messages, ctx)
        events = await self._run(0, events, ctx)
        self.router.send(events, ctx)
        return self._finish(ctx)

    async def process_values(self, values: list[dict[str, Any]]) -> BatchResult:
        """Process already-decoded records (tests, and callers that hold dicts)."""
        messages = [Event(None, raw=jsonl.dumps(value)) for value in values]
        return await self.process(messages)

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
            second = _second_ms(text)
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

    def _decode(self, messages: list[Event], ctx: BatchContext) -> list[Event]:
        decoded: list[Event] = []
        limit = self.max_message_bytes
        key_fields = self._key_fields
        key_field = key_fields[0] if key_fields is not None and len(key_fields) == 1 else None
        timestamp_field = self._timestamp_field
        latest = ctx.now_ms + self.max_event_time_skew_ms
        seconds = self._seconds
        raws = list(map(_RAW, messages))
        try:  # one test for the whole batch: usually no message needs the exact decoder
            exact = jsonl.may_need_exact(b"\n".join(raws))
        except TypeError:
            exact = True
        loads = jsonl.loads if exact else orjson.loads
        # each message's value, or the ValueError decoding it raised (or _TOO_LARGE)
        if raws and max(map(len, raws)) <= limit:
            values = _loads_all(loads, raws)
        else:
            values = [_TOO_LARGE if len(raw) > limit else _loads_one(loads, raw) for raw in raws]
        for message, value in zip(messages, values, strict=True):
            if value.__class__ is not dict:
                if value is _TOO_LARGE:
                    error = RecordError(
                        f"message is {len(message.raw)} bytes, more than max_message_bytes "
                        f"({limit})",
                        "oversize",
                    )
                elif isinstance(value, ValueError):
                    error = RecordError(f"invalid JSON: {value}", "invalid_json")
                else:
                    error = RecordError(
                        f"expected a JSON object, got {_json_type(value)}", "invalid_json"
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
                    raise _out_of_range(t, timestamp_field, self.max_event_time_skew_ms)
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


def _second_ms(text: str) -> int | None:
    """Epoch ms of `YYYY-MM-DDTHH:MM:SS` (UTC), None for any other text."""
    if not (text[4] == text[7] == "-" and text[10] == "T" and text[13] == text[16] == ":"):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return _epoch_ms(moment.replace(tzinfo=UTC)) if moment.tzinfo is None else None


def _out_of_range(epoch_ms: int, field: str | None, skew_ms: int) -> RecordError:
    what = f"event time {field!r}" if field is not None else "the message timestamp"
    # beyond ±3 million years the date says nothing a reader can use
    if abs(epoch_ms) < 10**17:
        when = iso_ms(epoch_ms)
    else:
        when = f"{'-' if epoch_ms < 0 else ''}10^{len(str(abs(epoch_ms))) - 1} ms after 1970"
    if epoch_ms < 0:
        return RecordError(f"{what} is {when}, before 1970-01-01", "timestamp")
    return RecordError(
        f"{what} is {when}, more than {format_duration_ms(skew_ms)} ahead of the "
        "clock (processing.max_event_time_skew)",
        "timestamp",
    )


def event_time_ms(value: object, field: str) -> int:
    """An event time as epoch milliseconds: epoch seconds, epoch ms (>= 1e11) or ISO-8601.

    Total: any input gives an int or a `timestamp` RecordError (never an OverflowError);
    the range check against the clock is the pipeline's.
    """
    if value is None:
        raise RecordError(f"event time field {field!r} is missing or null", "timestamp")
    if value.__class__ is int or (isinstance(value, int) and not isinstance(value, bool)):
        # ints stay ints: float() of a big one overflows, or rounds
        number = int(value)
        return number if abs(number) >= _EPOCH_MS_THRESHOLD else number * 1000
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RecordError(f"event time {field!r} is not a finite number", "timestamp")
        return int(value) if abs(value) >= _EPOCH_MS_THRESHOLD else int(value * 1000)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return _epoch_ms(parsed)
        except (ValueError, OverflowError):
            raise RecordError(
                f"event time {field!r} is {value[:60]!r}: expected epoch seconds, epoch ms "
                "or ISO-8601 such as 2026-11-25T10:00:00Z",
                "timestamp",
            ) from None
    raise RecordError(
        f"event time {field!r} is {_json_type(value)}: expected a number or ISO-8601 text",
        "timestamp",
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _epoch_ms(moment: datetime) -> int:
    # exact integer arithmetic: timestamp() goes through a float
    return (moment - _EPOCH) // _MS


# the Gregorian calendar repeats every 400 years (146,097 days)
_CYCLE_MS = 146_097 * 86_400_000
_LOWEST_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z, datetime's first instant
_HIGHEST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, its last


def iso_ms(epoch_ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with milliseconds: 2026-11-25T10:01:00.000Z.

    Total: a time outside years 1-9999 uses ISO-8601's expanded years (+10000-01-01…,
    -0001-…), so formatting a time can never raise.
    """
    years = 0
    if not _LOWEST_MS <= epoch_ms <= _HIGHEST_MS:
        cycles = epoch_ms // _CYCLE_MS  # shift into 1970-2369, then name the real year
        epoch_ms -= cycles * _CYCLE_MS
        years = cycles * 400
    moment = _EPOCH + timedelta(milliseconds=epoch_ms)
    year = moment.year + years
    text = f"{year:04d}" if 0 < year <= 9999 else f"{year:+05d}"
    return f"{text}-{moment:%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    return type(value).__name__
