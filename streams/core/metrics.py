"""The counters a pipeline reports, behind an interface the runtime exports to Prometheus.

Both implementations (this one for replay and tests, the runtime's for Prometheus) read
back their totals under the same names: events_in_total, events_out_total,
dead_letters_total, dropped_total, late_total.

Steps count per batch, never per record: one call adds a whole batch's count.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol


class PipelineMetrics(Protocol):
    def events_in(self, count: int) -> None: ...
    def events_out(self, topic: str, count: int) -> None: ...
    def dropped(self, step: str, reason: str, count: int) -> None: ...
    def dead_letters(self, step: str, error_type: str, count: int) -> None: ...
    def step_seconds(self, step: str, seconds: float) -> None: ...
    def late_events(self, count: int) -> None: ...
    def windows_open(self, count: int) -> None: ...
    def alerts_firing(self, alert: str, count: int) -> None: ...


class CountingMetrics:
    """In-memory counters: replay's summary and tests read them."""

    def __init__(self) -> None:
        self.events_in_total = 0
        self.sent: Counter[str] = Counter()
        self.drops: Counter[tuple[str, str]] = Counter()
        self.dead: Counter[tuple[str, str]] = Counter()
        self.seconds: dict[str, float] = {}
        self.late = 0
        self.open_windows = 0
        self.firing: dict[str, int] = {}

    def events_in(self, count: int) -> None:
        self.events_in_total += count

    def events_out(self, topic: str, count: int) -> None:
        self.sent[topic] += count

    def dropped(self, step: str, reason: str, count: int) -> None:
        self.drops[(step, reason)] += count

    def dead_letters(self, step: str, error_type: str, count: int) -> None:
        self.dead[(step, error_type)] += count

    def step_seconds(self, step: str, seconds: float) -> None:
        self.seconds[step] = self.seconds.get(step, 0.0) + seconds

    def late_events(self, count: int) -> None:
        self.late += count

    def windows_open(self, count: int) -> None:
        self.open_windows = count

    def alerts_firing(self, alert: str, count: int) -> None:
        self.firing[alert] = count

    @property
    def events_out_total(self) -> int:
        return sum(self.sent.values())

    @property
    def late_total(self) -> int:
        return self.late

    @property
    def dead_letters_total(self) -> int:
        return sum(self.dead.values())

    @property
    def dropped_total(self) -> int:
        return sum(self.drops.values())
