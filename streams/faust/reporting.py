"""What a pipeline agent reports: event-time watermarks, latencies, and its entry in
`/sluice/api/pipelines` (the same fields as `sluice worker`'s, engine `faust`)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from models.pipeline_spec import PipelineSpec
from streams.core.records import Event
from streams.runtime.prometheus import PrometheusPipelineMetrics


class AgentReport:
    """Per pipeline agent: the newest event time per partition, recent latencies, lag."""

    def __init__(self, metrics: PrometheusPipelineMetrics, *, telemetry: bool) -> None:
        self.metrics = metrics
        self.telemetry = telemetry
        self.watermarks: dict[int, int] = {}
        self.latencies: deque[float] = deque(maxlen=2000)
        self.lag = 0

    def note_batch(self, messages: Sequence[Any], events: list[Event]) -> None:
        marks = self.watermarks
        for event in events:
            if event.timestamp_ms > marks.get(event.partition, -1):
                marks[event.partition] = event.timestamp_ms
        if self.telemetry and messages:
            now = time.time()
            seconds = [max(0.0, now - m.timestamp) for m in messages if m.timestamp]
            self.metrics.latencies(seconds)
            self.latencies.extend(seconds[-200:])

    def event_time_lag(self, now_ms: float) -> float | None:
        if not self.watermarks:
            return None
        return max(0.0, (now_ms - min(self.watermarks.values())) / 1000)

    def status(
        self,
        spec: PipelineSpec,
        tables: list[str],
        recent_dead_letters: deque[dict[str, Any]],
    ) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def percentile(q: float) -> float | None:
            return round(ordered[int(q * (len(ordered) - 1))] * 1000, 1) if ordered else None

        metrics = self.metrics
        return {
            "pipeline": spec.pipeline,
            "engine": "faust",
            "source": spec.source.topic,
            "outputs": spec.output_topics(),
            "tables": tables,
            "steps": [{"name": name, "kind": step.kind} for name, step in spec.named_steps()],
            "events_in": metrics.events_in_total,
            "events_out": metrics.events_out_total,
            "dead_letters": metrics.dead_letters_total,
            "dropped": metrics.dropped_total,
            "late": metrics.late_total,
            "windows_open": metrics.windows_open_now,
            "alerts_firing": dict(metrics.firing_now),
            "latency_ms": {"p50": percentile(0.5), "p99": percentile(0.99)},
            "event_time_lag_s": self.event_time_lag(time.time() * 1000),
            "lag": self.lag,
            "recent_dead_letters": list(recent_dead_letters),
            "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        }
