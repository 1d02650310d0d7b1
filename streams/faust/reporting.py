"""What a pipeline agent reports: event-time watermarks, latencies, and its entry in
`/sluice/api/pipelines` (the same fields as `sluice worker`'s, engine `faust`)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from models.pipeline_spec import PipelineSpec
from streams.core.records import Event
from streams.runtime.pipeline_status import event_time_lag, pipeline_status
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
        return event_time_lag(self.watermarks, now_ms)

    def status(
        self,
        spec: PipelineSpec,
        tables: list[str],
        recent_dead_letters: deque[dict[str, Any]],
    ) -> dict[str, Any]:
        status = pipeline_status(
            spec,
            self.metrics,
            self.latencies,
            self.event_time_lag(time.time() * 1000),
            self.lag,
            recent_dead_letters,
        )
        return {**status, "engine": "faust", "tables": tables}
