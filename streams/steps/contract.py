"""What every step is, and the context a batch runs in."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import ClassVar

from streams.core.errors import RecordError
from streams.core.records import BatchResult, DeadLetter, Event


class BatchContext:
    """Collects what a batch produces besides the records a step passes on: dead letters,
    records for other topics (alerts, a component's `ctx.emit`) and drop counts."""

    __slots__ = ("drops", "gauges", "late", "now_ms", "result")

    def __init__(self, result: BatchResult, now_ms: int) -> None:
        self.result = result
        self.now_ms = now_ms
        self.drops: dict[tuple[str, str], int] = {}
        self.late = 0
        self.gauges: dict[str, int] = {}  # "windows_open", "alerts_firing:<name>"

    def dead_letter(self, event: Event, step: str, error: RecordError) -> None:
        self.result.dead_letters.append(
            DeadLetter(
                raw=event.raw,
                step=step,
                error_type=error.error_type,
                message=str(error),
                partition=event.partition,
                offset=event.offset,
                key=event.key,
                headers=event.headers,
            )
        )

    def emit(self, topic: str, event: Event) -> None:
        self.result.outputs.setdefault(topic, []).append(event)

    def drop(self, step: str, reason: str, count: int = 1) -> None:
        if count:
            self.drops[(step, reason)] = self.drops.get((step, reason), 0) + count

    def late_event(self, event: Event, step: str, message: str, *, to_dlq: bool) -> None:
        """A record behind its step's watermark by more than grace (a window or a join):
        counted, and a `late` dead letter (`late: dlq`) or dropped."""
        self.late += 1
        if to_dlq:
            self.dead_letter(event, step, RecordError(message, "late"))
        else:
            self.drop(step, "late")


class Step:
    """A pipeline step: takes a batch of records, returns the records that go on.

    A step reports every record it does not pass on: as a dead letter, or with
    `ctx.drop(...)` naming the reason. `process` may be a coroutine (components).
    """

    kind: ClassVar[str] = "step"

    def __init__(self, name: str) -> None:
        self.name = name

    def process(
        self, events: list[Event], ctx: BatchContext
    ) -> list[Event] | Awaitable[list[Event]]:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget in-memory caches: the store changed under the step (a rebalance)."""

    def persist(self) -> None:
        """Write state the step holds in memory to its store. The worker calls it before
        each changelog commit, so a step may keep a batch's changes in memory and write
        each changed key once per commit instead of once per batch."""

    def flush(self, ctx: BatchContext, *, final: bool) -> list[Event]:
        """Records a step releases without new input: windows closed by wall clock, or
        every open window at the end of a replay (`final`)."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
