"""Every step kind in one table: its spec class, how it is built, whether it keeps state,
and what it can report. The builder, the runtime's repartitioning and the series a
worker exports at start all read it; a kind missing here is an import error, not a step
that silently skips repartitioning (the spec union and the did-you-mean list are
models.pipeline_spec's `STEP_KINDS`, and `_check_complete` holds the two together)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from models import pipeline_spec as spec
from streams.core.state import StateBackend, lookup_store_name, step_store_name
from streams.core.watchdog import Watchdog
from streams.steps.aggregate import AggregateStep
from streams.steps.component import ComponentStep
from streams.steps.contract import Step
from streams.steps.filter import FilterStep
from streams.steps.join import JoinStep
from streams.steps.keyed import AlertStep, DedupeStep, EnrichStep, RateLimitStep
from streams.steps.map import MapStep
from streams.steps.validate import ModelValidator, SchemaValidator, ValidateStep
from streams.steps.window import WindowStep


@dataclass(frozen=True, slots=True)
class BuildContext:
    """What building one step of a pipeline may use."""

    pipeline_spec: spec.PipelineSpec  # the pipeline the step is part of
    name: str  # the step's name (its own, or its kind numbered)
    state: StateBackend
    watchdog: Watchdog | None

    def store(self) -> Any:
        """The step's own store, `<pipeline>.<step>`."""
        return self.state.store(step_store_name(self.pipeline_spec.pipeline, self.name))


@dataclass(frozen=True, slots=True)
class StepKind:
    name: str
    spec: type[Any]  # the pydantic model of `- <name>: {...}`
    build: Callable[[Any, BuildContext], Step]  # (the step's spec, context) -> step
    stateful: bool  # keeps state per key: a `source.key` makes the runtime repartition
    dead_letter_types: tuple[str, ...] = ()
    drop_reasons: tuple[str, ...] = ()


def _validate(step: spec.ValidateStepSpec, ctx: BuildContext) -> Step:
    options = step.validate_
    validator = (
        ModelValidator(options.model)
        if options.model is not None
        else SchemaValidator(options.schema_ or {})
    )
    return ValidateStep(ctx.name, validator)


def _component(step: spec.ComponentStepSpec, ctx: BuildContext) -> Step:
    component = step.component
    return ComponentStep(
        ctx.name,
        component.class_,
        component.config,
        ctx.store(),
        timeout_ms=component.timeout,
        pipeline=ctx.pipeline_spec.pipeline,
        watchdog=ctx.watchdog,
    )


def _alert(step: spec.AlertStepSpec, ctx: BuildContext) -> Step:
    return AlertStep(ctx.name, step.alert, ctx.pipeline_spec.alert_topic(step.alert), ctx.store())


def _enrich(step: spec.EnrichStepSpec, ctx: BuildContext) -> Step:
    table = ctx.state.lookup(lookup_store_name(ctx.pipeline_spec.pipeline, step.enrich.table))
    return EnrichStep(ctx.name, step.enrich, table)


STEP_KINDS: dict[str, StepKind] = {
    kind.name: kind
    for kind in (
        StepKind("validate", spec.ValidateStepSpec, _validate, False, ("schema",)),
        StepKind(
            "filter",
            spec.FilterStepSpec,
            lambda s, c: FilterStep(c.name, s.filter),
            False,
            ("expression",),
            ("filter",),
        ),
        StepKind(
            "map", spec.MapStepSpec, lambda s, c: MapStep(c.name, s.map), False, ("expression",)
        ),
        StepKind(
            "dedupe",
            spec.DedupeStepSpec,
            lambda s, c: DedupeStep(c.name, s.dedupe, c.store()),
            True,
            ("key",),
            ("duplicate",),
        ),
        StepKind("enrich", spec.EnrichStepSpec, _enrich, False, ("enrich",), ("enrich_missing",)),
        StepKind(
            "ratelimit",
            spec.RateLimitStepSpec,
            lambda s, c: RateLimitStep(c.name, s.ratelimit, c.store()),
            True,
            ("key", "ratelimit"),
            ("ratelimit",),
        ),
        StepKind(
            "window",
            spec.WindowStepSpec,
            lambda s, c: WindowStep(c.name, s.window, c.store(), pipeline=c.pipeline_spec.pipeline),
            True,
            ("key", "expression", "late"),
            ("late",),
        ),
        StepKind("alert", spec.AlertStepSpec, _alert, True, ("expression",)),
        StepKind(
            "component",
            spec.ComponentStepSpec,
            _component,
            True,
            ("component", "timeout"),
            ("component",),
        ),
        StepKind(
            "aggregate",
            spec.AggregateStepSpec,
            lambda s, c: AggregateStep(c.name, s.aggregate, c.store()),
            True,
            ("key", "expression"),
        ),
        StepKind(
            "join",
            spec.JoinStepSpec,
            lambda s, c: JoinStep(c.name, s.join, c.store(), c.pipeline_spec),
            True,
            ("key", "expression", "late"),
            ("late",),
        ),
    )
}


def _check_complete() -> None:
    missing = set(spec.STEP_KINDS) ^ set(STEP_KINDS)
    if missing:  # a kind added to the spec and not here (or the reverse)
        raise ImportError(f"step kinds without a registry entry, or the reverse: {missing}")


_check_complete()


def step_kind(kind: str) -> StepKind:
    return STEP_KINDS[kind]
