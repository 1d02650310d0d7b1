"""The pure pipeline: a batch of messages in, records per output topic and dead letters out.

`Pipeline` never imports Faust or aiokafka. The worker, `sluice replay` and the tests run
the same object; only where the messages come from and where the results go differ.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from models.pipeline import PipelineSpec
from streams.errors import RecordError
from streams.metrics import CountingMetrics, PipelineMetrics
from streams.records import BatchResult, Event, key_of
from streams.state import MemoryStateBackend, StateBackend
from streams.steps import BatchContext, Router, Step, build_router, build_step

SOURCE_STEP = "source"
DEFAULT_MAX_MESSAGE_BYTES = 1_048_576
_EPOCH_MS_THRESHOLD = 100_000_000_000  # 1e11: below are epoch seconds, above milliseconds


class Pipeline:
    """Runs one pipeline spec over batches.

    `process(messages)` takes `Event`s whose `raw` holds the message bytes (value unset),
    `timestamp_ms` the broker timestamp and `key` the message key; it decodes them, sets
    event time and key as the spec says, runs the steps and routes the survivors. Every
    record ends in an output, a dead letter, or a drop counted with its reason.
    """

    def __init__(
        self,
        spec: PipelineSpec,
        *,
        state: StateBackend | None = None,
        metrics: PipelineMetrics | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self.name = spec.pipeline
        self.state = state if state is not None else MemoryStateBackend()
        self.metrics: PipelineMetrics = metrics if metrics is not None else CountingMetrics()
        self.max_message_bytes = max_message_bytes
        self.clock = clock
        self.steps: list[Step] = [
            build_step(spec, name, step, self.state) for name, step in spec.named_steps()
        ]
        self.router: Router = build_router(spec)
        self.dead_letter_topic = spec.dead_letter_topic
        self._key_fields = spec.source.key
        self._timestamp_field = spec.source.timestamp

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
        messages = [Event(None, raw=orjson.dumps(value)) for value in values]
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

    def reset(self) -> None:
        """Drop the steps' caches: after a rebalance the tables hold other keys."""
        for step in self.steps:
            step.reset()

    # --- decoding ------------------------------------------------------------------

    def _decode(self, messages: list[Event], ctx: BatchContext) -> list[Event]:
        decoded: list[Event] = []
        limit = self.max_message_bytes
        key_fields = self._key_fields
        timestamp_field = self._timestamp_field
        loads = orjson.loads
        for message in messages:
            raw = message.raw
            if len(raw) > limit:
                ctx.dead_letter(
                    message,
                    SOURCE_STEP,
                    RecordError(
                        f"message is {len(raw)} bytes, more than max_message_bytes ({limit})",
                        "oversize",
                    ),
                )
                continue
            try:
                value = loads(raw)
            except orjson.JSONDecodeError as exc:
                ctx.dead_letter(
                    message, SOURCE_STEP, RecordError(f"invalid JSON: {exc}", "invalid_json")
                )
                continue
            if value.__class__ is not dict:
                ctx.dead_letter(
                    message,
                    SOURCE_STEP,
                    RecordError(f"expected a JSON object, got {_json_type(value)}", "invalid_json"),
                )
                continue
            if timestamp_field is not None:
                try:
                    message.timestamp_ms = event_time_ms(
                        value.get(timestamp_field), timestamp_field
                    )
                except RecordError as error:
                    ctx.dead_letter(message, SOURCE_STEP, error)
                    continue
            if key_fields is not None:
                message.key = key_of(value, key_fields)
            message.value = value
            decoded.append(message)
        return decoded


def event_time_ms(value: object, field: str) -> int:
    """An event time as epoch milliseconds: epoch seconds, epoch ms (>= 1e11) or ISO-8601."""
    if value is None:
        raise RecordError(f"event time field {field!r} is missing or null", "timestamp")
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        if not math.isfinite(number):
            raise RecordError(f"event time {field!r} is not a finite number", "timestamp")
        return int(number) if abs(number) >= _EPOCH_MS_THRESHOLD else int(number * 1000)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise RecordError(
                f"event time {field!r} is {value!r}: expected epoch seconds, epoch ms or "
                "ISO-8601 such as 2026-11-25T10:00:00Z",
                "timestamp",
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return int(parsed.timestamp() * 1000)
    raise RecordError(
        f"event time {field!r} is a {_json_type(value)}: expected a number or ISO-8601 text",
        "timestamp",
    )


def iso_ms(epoch_ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with milliseconds: 2026-11-25T10:01:00.000Z."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


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
