"""The pipeline file (config/pipelines/NAME.yaml) as pydantic models: data and its shape.

Validation checks structure: required fields, names, durations, topics, one form per
step. Expressions, aggregates and the classes a step names are compiled or imported by
the loader, `streams.steps.spec_fields`, which completes these models when it is imported
(`model_rebuild` with its coercers): until then validating a spec that holds a step is
pydantic's "not fully defined" error. `models` imports nothing from `streams`
(import-linter contract `models-pure-data`).
"""

from __future__ import annotations

from collections import Counter

from pydantic import Field, model_validator

from models.fields import (
    REGISTRY_FORMATS,
    TOPIC_PATTERN,
    DurationMs,
    FieldList,
    Format,
    PipelineName,
    Spec,
    StepName,
    TableName,
    Topic,
)
from models.outputs import (
    DeadLetterSpec,
    RouteSpec,
    SinkSpec,
    SourceSpec,
    TableSpec,
)
from models.steps import (
    DEFAULT_COMPONENT_TIMEOUT_MS,
    MAX_WINDOWS_PER_EVENT,
    SCHEMA_TYPES,
    STEP_KINDS,
    AggregateSpec,
    AggregateStepSpec,
    AlertSpec,
    AlertStepSpec,
    ComponentSpec,
    ComponentStepSpec,
    DedupeSpec,
    DedupeStepSpec,
    EmitEverySpec,
    EnrichSpec,
    EnrichStepSpec,
    FilterStepSpec,
    JoinSpec,
    JoinStepSpec,
    MapStepSpec,
    RateLimitSpec,
    RateLimitStepSpec,
    StepSpec,
    ValidateSpec,
    ValidateStepSpec,
    WindowSpec,
    WindowStepSpec,
    describe_bad_step,
)

__all__ = [
    "DEFAULT_COMPONENT_TIMEOUT_MS",
    "MAX_WINDOWS_PER_EVENT",
    "REGISTRY_FORMATS",
    "SCHEMA_TYPES",
    "STEP_KINDS",
    "TOPIC_PATTERN",
    "AggregateSpec",
    "AggregateStepSpec",
    "AlertSpec",
    "AlertStepSpec",
    "ComponentSpec",
    "ComponentStepSpec",
    "DeadLetterSpec",
    "DedupeSpec",
    "DedupeStepSpec",
    "DurationMs",
    "EmitEverySpec",
    "EnrichSpec",
    "EnrichStepSpec",
    "FieldList",
    "FilterStepSpec",
    "Format",
    "JoinSpec",
    "JoinStepSpec",
    "MapStepSpec",
    "PipelineName",
    "PipelineSpec",
    "RateLimitSpec",
    "RateLimitStepSpec",
    "RouteSpec",
    "SinkSpec",
    "SourceSpec",
    "StepName",
    "StepSpec",
    "TableName",
    "TableSpec",
    "Topic",
    "ValidateSpec",
    "ValidateStepSpec",
    "WindowSpec",
    "WindowStepSpec",
    "describe_bad_step",
]


# --- the pipeline --------------------------------------------------------------------


class PipelineSpec(Spec):
    pipeline: PipelineName
    source: SourceSpec
    tables: dict[TableName, TableSpec] = Field(default_factory=dict)
    steps: list[StepSpec] = Field(default_factory=list)
    sink: SinkSpec
    dlq: DeadLetterSpec | None = None

    @model_validator(mode="after")
    def _cross_checks(self) -> PipelineSpec:
        for step in self.steps:
            if isinstance(step, EnrichStepSpec) and step.enrich.table not in self.tables:
                raise ValueError(f"enrich uses table {step.enrich.table!r}, not under 'tables:'")
        names = Counter(name for name, _ in self.named_steps())  # linear: 100,000 steps check
        duplicates = sorted(name for name, count in names.items() if count > 1)
        if duplicates:
            raise ValueError(f"two steps are named {duplicates[0]!r}: step names must be unique")
        joins = [s.join for s in self.steps if isinstance(s, JoinStepSpec)]
        if len(joins) > 1:
            raise ValueError("a pipeline joins at most one other stream (one 'join' step)")
        if joins and joins[0].stream == self.source.topic:
            raise ValueError(f"join: 'stream' {joins[0].stream!r} is the pipeline's own source")
        if joins and self.source.key is not None and self.source.key != joins[0].key:
            raise ValueError(
                f"join: 'key' ({', '.join(joins[0].key)}) differs from source.key "
                f"({', '.join(self.source.key)}): both streams are partitioned by the join key"
            )
        alert_names = [s.alert.name for s in self.steps if isinstance(s, AlertStepSpec)]
        if len(alert_names) != len(set(alert_names)):
            raise ValueError("two alerts have the same name")
        return self

    @property
    def dead_letter_topic(self) -> str:
        return self.dlq.topic if self.dlq else f"{self.pipeline}-dlq"

    def alert_topic(self, alert: AlertSpec) -> str:
        return alert.to or f"{self.pipeline}-alerts"

    def named_steps(self) -> list[tuple[str, StepSpec]]:
        """Each step with its name: its own `name`, else its kind, numbered when repeated.

        The name labels metrics and dead letters and names the step's state table
        (`<pipeline>.<name>`), so it must stay stable while the pipeline is edited.
        """
        seen: dict[str, int] = {}
        named: list[tuple[str, StepSpec]] = []
        for step in self.steps:
            name = step.explicit_name
            if name is None:
                seen[step.kind] = seen.get(step.kind, 0) + 1
                count = seen[step.kind]
                name = step.kind if count == 1 else f"{step.kind}_{count}"
            named.append((name, step))
        return named

    def output_formats(self) -> dict[str, tuple[str, str | None]]:
        """(format, schema file) of every topic the pipeline writes results to that is
        not JSON: the sink or each route target, and alert topics."""
        formats: dict[str, tuple[str, str | None]] = {}
        sink = self.sink
        if sink.topic is not None and sink.format != "json":
            formats[sink.topic] = (sink.format, sink.schema_file)
        for rule in sink.route or []:
            chosen = rule if rule.format != "json" else sink
            if chosen.format != "json":
                formats.setdefault(rule.topic, (chosen.format, chosen.schema_file))
        for step in self.steps:
            if isinstance(step, AlertStepSpec) and step.alert.format != "json":
                formats.setdefault(self.alert_topic(step.alert), (step.alert.format, None))
        return formats

    @property
    def join(self) -> JoinSpec | None:
        """The pipeline's join step, if it has one: its second input stream."""
        return next((s.join for s in self.steps if isinstance(s, JoinStepSpec)), None)

    def output_topics(self) -> list[str]:
        topics = [*self.sink.topics()]
        topics += [self.alert_topic(s.alert) for s in self.steps if isinstance(s, AlertStepSpec)]
        topics.append(self.dead_letter_topic)
        return list(dict.fromkeys(topics))
