"""A watchdog for records that never finish.

An async component past its `timeout` is cancelled (`asyncio.timeout`), but a sync
`process` — or an async one that blocks the event loop — cannot be: Python has no way to
stop a running thread. What can be done is to notice, from another thread, and say so:
the worker turns not-ready (so an orchestrator restarts it), and `sluice replay` reports
the stuck step and record and exits instead of hanging silently.

Each component step holds a `WatchSlot` and marks the record it is running (`begin`) and
when it is done (`end`): two attribute writes and a clock read per record. A `Watchdog`
thread looks at every slot each `interval_s` and calls `on_stuck` once for a record past
its slot's timeout, then `on_recovered` when that record is done at last. `check()` is
the same look, callable directly (tests, or a runtime that prefers its own timer).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("sluice.watchdog")


@dataclass(frozen=True, slots=True)
class StuckRecord:
    """A record that has run past its step's timeout."""

    pipeline: str
    step: str
    partition: int
    offset: int
    timeout_s: float
    running_s: float

    def describe(self) -> str:
        return (
            f"pipeline {self.pipeline!r} step {self.step!r}: the record at partition "
            f"{self.partition} offset {self.offset} has run for {self.running_s:.1f} s, past "
            f"its timeout ({self.timeout_s:g} s)"
        )


class WatchSlot:
    """One step's record in progress. The processing thread writes `current` whole (one
    attribute store, atomic under the GIL); the watchdog thread only reads it."""

    __slots__ = ("current", "pipeline", "step", "timeout_s")

    def __init__(self, pipeline: str, step: str, timeout_s: float) -> None:
        self.pipeline = pipeline
        self.step = step
        self.timeout_s = timeout_s
        self.current: tuple[float, int, int] | None = None  # (started, partition, offset)

    def begin(self, partition: int, offset: int) -> float:
        """A record starts; returns its start time (time.monotonic)."""
        started = time.monotonic()
        self.current = (started, partition, offset)
        return started

    def end(self) -> None:
        self.current = None


StuckCallback = Callable[[StuckRecord], None]


class Watchdog:
    """Watches slots from a daemon thread; see the module docstring.

    `on_stuck(record)` runs on the watchdog thread, once per stuck record; so does
    `on_recovered(record)` when that record's step moves on. Callbacks must be quick and
    thread-safe (set a flag, schedule with `loop.call_soon_threadsafe`, write a line).
    """

    def __init__(
        self,
        on_stuck: StuckCallback | None = None,
        on_recovered: StuckCallback | None = None,
        *,
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.on_stuck = on_stuck
        self.on_recovered = on_recovered
        self.interval_s = interval_s
        self.clock = clock
        self.slots: list[WatchSlot] = []
        self._reported: dict[int, tuple[tuple[float, int, int], StuckRecord]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def slot(self, pipeline: str, step: str, timeout_s: float) -> WatchSlot:
        """A new slot to mark one step's records in."""
        slot = WatchSlot(pipeline, step, timeout_s)
        with self._lock:
            self.slots.append(slot)
        return slot

    @property
    def stuck(self) -> list[StuckRecord]:
        """The records reported stuck and not yet done."""
        with self._lock:
            return [record for _, record in self._reported.values()]

    def check(self) -> list[StuckRecord]:
        """Look at every slot once: report newly stuck records (returned, and passed to
        `on_stuck`), and records reported before that are now done (`on_recovered`)."""
        now = self.clock()
        newly: list[StuckRecord] = []
        recovered: list[StuckRecord] = []
        with self._lock:
            for slot in self.slots:
                current = slot.current
                key = id(slot)
                reported = self._reported.get(key)
                if reported is not None and reported[0] is not current:
                    del self._reported[key]
                    recovered.append(reported[1])
                    reported = None
                if current is None or reported is not None:
                    continue
                running = now - current[0]
                if running > slot.timeout_s:
                    record = StuckRecord(
                        slot.pipeline, slot.step, current[1], current[2], slot.timeout_s, running
                    )
                    self._reported[key] = (current, record)
                    newly.append(record)
        for record in recovered:
            log.warning(
                "%s: the stuck record is done at last",
                f"pipeline {record.pipeline!r} step {record.step!r}",
                extra={"pipeline": record.pipeline, "step": record.step},
            )
            if self.on_recovered is not None:
                self.on_recovered(record)
        for record in newly:
            log.error(
                "%s; a sync process() cannot be interrupted: not ready until it returns",
                record.describe(),
                extra={
                    "pipeline": record.pipeline,
                    "step": record.step,
                    "partition": record.partition,
                    "offset": record.offset,
                },
            )
            if self.on_stuck is not None:
                self.on_stuck(record)
        return newly

    def start(self) -> Watchdog:
        """Check every `interval_s` on a daemon thread until `stop()`."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="sluice-watchdog", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 1)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # a callback's bug must not end the watching
                log.exception("watchdog check failed")

    def __enter__(self) -> Watchdog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
