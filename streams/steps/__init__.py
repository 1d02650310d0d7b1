"""Pipeline steps, and the factory that builds them from a pipeline spec."""

from __future__ import annotations

from models import pipeline as spec
from streams.errors import SluiceError
from streams.state import StateBackend, lookup_store_name, step_store_name
from streams.steps.base import BatchContext, Step
from streams.steps.component import ComponentStep
from streams.steps.filter import FilterStep
from streams.steps.keyed import AlertStep, DedupeStep, EnrichStep, RateLimitStep
from streams.steps.map import MapStep
from streams.steps.route import Route, Router
from streams.steps.validate import ModelValidator, SchemaValidator, ValidateStep
from streams.steps.window import WindowStep
from streams.watchdog import Watchdog


def build_step(
    pipeline: spec.PipelineSpec,
    name: str,
    step: spec.StepSpec,
    state: StateBackend,
    watchdog: Watchdog | None = None,
) -> Step:
    """The runnable step for one entry of `steps:`; stateful steps get their store here,
    components a slot in the `watchdog` (when there is one)."""
    store_name = step_store_name(pipeline.pipeline, name)
    if isinstance(step, spec.ValidateStep):
        options = step.validate_
        validator = (
            ModelValidator(options.model)
            if options.model is not None
            else SchemaValidator(options.schema_ or {})
        )
        return ValidateStep(name, validator)
    if isinstance(step, spec.FilterStep):
        return FilterStep(name, step.filter)
    if isinstance(step, spec.MapStep):
        return MapStep(name, step.map)
    if isinstance(step, spec.ComponentStep):
        component = step.component
        return ComponentStep(
            name,
            component.class_,
            component.config,
            state.store(store_name),
            timeout_ms=component.timeout,
            pipeline=pipeline.pipeline,
            watchdog=watchdog,
        )
    if isinstance(step, spec.WindowStep):
        return WindowStep(name, step.window, state.store(store_name))
    if isinstance(step, spec.DedupeStep):
        return DedupeStep(name, step.dedupe, state.store(store_name))
    if isinstance(step, spec.RateLimitStep):
        return RateLimitStep(name, step.ratelimit, state.store(store_name))
    if isinstance(step, spec.AlertStep):
        topic = pipeline.alert_topic(step.alert)
        return AlertStep(name, step.alert, topic, state.store(store_name))
    if isinstance(step, spec.EnrichStep):
        table = state.lookup(lookup_store_name(pipeline.pipeline, step.enrich.table))
        return EnrichStep(name, step.enrich, table)
    raise SluiceError(f"step kind {step.kind!r} ({name}) is not supported")


def build_router(pipeline: spec.PipelineSpec) -> Router:
    sink = pipeline.sink
    if sink.topic is not None:
        return Router([Route(None, sink.topic)])
    return Router([Route(rule.when, rule.topic) for rule in sink.route or []])


__all__ = ["BatchContext", "Router", "Step", "build_router", "build_step"]
