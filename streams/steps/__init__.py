"""Pipeline steps, and the factory that builds them from a pipeline spec."""

from __future__ import annotations

from models import pipeline_spec as spec
from streams.core.errors import SluiceError
from streams.core.state import StateBackend
from streams.core.watchdog import Watchdog
from streams.steps.contract import BatchContext, Step
from streams.steps.kinds import STEP_KINDS, BuildContext
from streams.steps.route import Route, Router
from streams.steps.spec_fields import PipelineSpec  # completed: steps hold compiled fields


def build_step(
    pipeline: PipelineSpec,
    name: str,
    step: spec.StepSpec,
    state: StateBackend,
    watchdog: Watchdog | None = None,
) -> Step:
    """The runnable step for one entry of `steps:` (see streams.steps.kinds); stateful
    steps get their store, components a slot in the `watchdog` (when there is one)."""
    kind = STEP_KINDS.get(step.kind)
    if kind is None or not isinstance(step, kind.spec):
        raise SluiceError(f"step kind {step.kind!r} ({name}) is not supported")
    return kind.build(step, BuildContext(pipeline, name, state, watchdog))


def build_router(pipeline: PipelineSpec) -> Router:
    sink = pipeline.sink
    if sink.topic is not None:
        return Router([Route(None, sink.topic)])
    return Router([Route(rule.when, rule.topic) for rule in sink.route or []])


__all__ = ["BatchContext", "Router", "Step", "build_router", "build_step"]
