"""Prometheus metrics (names fixed by DESIGN.md) behind the engine's PipelineMetrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    PlatformCollector,
    ProcessCollector,
)

from streams.runtime.histograms import BatchHistogram

if TYPE_CHECKING:
    from models.pipeline_spec import PipelineSpec

# what the source step can dead-letter (every step kind's are in its registry entry)
SOURCE_DEAD_LETTER_TYPES = ("invalid_json", "oversize", "timestamp")

_STEP_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Registry:
    """All of sluice's metric families in one registry (one per worker process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        r = self.registry
        self.events_in = Counter("sluice_events_in", "records read", ["pipeline"], registry=r)
        self.events_out = Counter(
            "sluice_events_out", "records sent", ["pipeline", "topic"], registry=r
        )
        self.dropped = Counter(
            "sluice_events_dropped",
            "records dropped on purpose",
            ["pipeline", "step", "reason"],
            registry=r,
        )
        self.dead_letters = Counter(
            "sluice_dead_letters",
            "records sent to the dead-letter topic",
            ["pipeline", "step", "type"],
            registry=r,
        )
        self.step_seconds = BatchHistogram(
            "sluice_step_seconds",
            "time per batch in a step",
            ["pipeline", "step"],
            buckets=_STEP_BUCKETS,
            registry=r,
        )
        self.latency = BatchHistogram(
            "sluice_end_to_end_latency_seconds",
            "processing latency: the Kafka record's timestamp to the send of its result",
            ["pipeline"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.event_time_lag = Gauge(
            "sluice_event_time_lag_seconds",
            "wall clock minus the watermark (the slowest partition's latest event time)",
            ["pipeline"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "sluice_consumer_lag", "messages behind the log end", ["topic", "partition"], registry=r
        )
        self.late = Counter(
            "sluice_late_events", "events for closed windows", ["pipeline"], registry=r
        )
        self.windows_open = Gauge("sluice_windows_open", "open windows", ["pipeline"], registry=r)
        self.alerts_firing = Gauge(
            "sluice_alerts_firing", "alert keys firing", ["pipeline", "alert"], registry=r
        )

    def pipeline(
        self, name: str, spec: PipelineSpec | None = None, *, export: bool = True
    ) -> PrometheusPipelineMetrics:
        metrics = PrometheusPipelineMetrics(self, name, export=export)
        if spec is not None:
            metrics.declare(spec)
        return metrics


class _Unexported:
    """A metric child that records nothing: telemetry off (`sluice bench kafka`)."""

    def inc(self, amount: float = 1) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass

    def observe_many(self, values: list[float]) -> None:
        pass


_UNEXPORTED = _Unexported()


class PrometheusPipelineMetrics:
    """PipelineMetrics for one pipeline, counted per batch; label children are cached, not
    looked up per call. The totals feed /api/pipelines and the dashboard."""

    def __init__(self, families: Registry, pipeline: str, *, export: bool = True) -> None:
        self.families = families
        self.pipeline = pipeline
        self.export = export
        self._children: dict[tuple[Any, ...], Any] = {}
        self._in = self._child(families.events_in)
        self._late = self._child(families.late)
        self._windows = self._child(families.windows_open)
        self._latency = self._child(families.latency)
        self.events_out_total = 0
        self.events_in_total = 0
        self.dead_letters_total = 0
        self.dropped_total = 0
        self.late_total = 0
        self.windows_open_now = 0
        self.firing_now: dict[str, int] = {}

    def _child(self, family: Any, *labels: str) -> Any:
        key = (family, *labels)
        child = self._children.get(key)
        if child is None:
            child = family.labels(self.pipeline, *labels) if self.export else _UNEXPORTED
            self._children[key] = child
        return child

    def declare(self, spec: PipelineSpec) -> None:
        """Every series this pipeline can report, at 0."""
        from streams.steps.kinds import step_kind
        from streams.steps.route import SINK_STEP

        families = self.families
        for topic in spec.output_topics():
            self._child(families.events_out, topic)
        for error_type in SOURCE_DEAD_LETTER_TYPES:
            self._child(families.dead_letters, "source", error_type)
        self._child(families.dead_letters, SINK_STEP, "expression")
        self._child(families.dead_letters, SINK_STEP, "oversize")
        self._child(families.event_time_lag)
        for name, step in spec.named_steps():
            self._child(families.step_seconds, name)
            kind = step_kind(step.kind)
            for error_type in kind.dead_letter_types:
                self._child(families.dead_letters, name, error_type)
            for reason in kind.drop_reasons:
                self._child(families.dropped, name, reason)
            if step.kind == "alert":
                self._child(families.alerts_firing, step.alert.name)  # type: ignore[union-attr]
        if spec.sink.route and all(rule.when is not None for rule in spec.sink.route):
            self._child(families.dropped, SINK_STEP, "unrouted")

    def event_time_lag(self, seconds: float) -> None:
        self._child(self.families.event_time_lag).set(seconds)

    def events_in(self, count: int) -> None:
        self.events_in_total += count
        self._in.inc(count)

    def events_out(self, topic: str, count: int) -> None:
        self.events_out_total += count
        self._child(self.families.events_out, topic).inc(count)

    def dropped(self, step: str, reason: str, count: int) -> None:
        self.dropped_total += count
        self._child(self.families.dropped, step, reason).inc(count)

    def dead_letters(self, step: str, error_type: str, count: int) -> None:
        self.dead_letters_total += count
        self._child(self.families.dead_letters, step, error_type).inc(count)

    def step_seconds(self, step: str, seconds: float) -> None:
        self._child(self.families.step_seconds, step).observe(seconds)

    def late_events(self, count: int) -> None:
        self.late_total += count
        self._late.inc(count)

    def windows_open(self, count: int) -> None:
        self.windows_open_now = count
        self._windows.set(count)

    def alerts_firing(self, alert: str, count: int) -> None:
        self.firing_now[alert] = count
        self._child(self.families.alerts_firing, alert).set(count)

    def latencies(self, seconds: list[float]) -> None:
        if self.export:
            self._latency.observe_many(seconds)
