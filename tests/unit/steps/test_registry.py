"""The step registry is the one list of step kinds: it covers the spec's kinds exactly,
and what it says of each kind is what the rest of sluice acts on."""

from __future__ import annotations

import re
from pathlib import Path

from models import pipeline_spec as spec
from streams.runtime.pipeline_runner import needs_repartition
from streams.steps.kinds import STEP_KINDS

DESIGN = (Path(__file__).resolve().parents[3] / "DESIGN.md").read_text()

EXAMPLES = {
    "validate": {"validate": {"schema": {"a": "int"}}},
    "filter": {"filter": "a > 1"},
    "map": {"map": {"a": "a"}},
    "dedupe": {"dedupe": {"key": "a", "within": "1m"}},
    "enrich": {"enrich": {"table": "t", "on": "a"}},
    "ratelimit": {"ratelimit": {"key": "a", "rate": 1}},
    "window": {"window": {"type": "tumbling", "size": "1m", "aggregates": {"n": "count()"}}},
    "alert": {"alert": {"name": "x", "when": "a > 1"}},
    "component": {"component": {"class": "tests.fixtures.components:CountPerKey"}},
    "aggregate": {"aggregate": {"key": "a", "aggregates": {"n": "count()"}}},
    "join": {"join": {"stream": "other", "key": "a", "within": "1m"}},
}


def test_the_registry_and_the_spec_know_the_same_kinds() -> None:
    assert set(STEP_KINDS) == set(spec.STEP_KINDS) == set(EXAMPLES)
    for name, kind in STEP_KINDS.items():
        assert kind.name == name


def test_stateful_kinds_make_a_keyed_source_repartition() -> None:
    for name, kind in STEP_KINDS.items():
        pipeline = spec.PipelineSpec.model_validate(
            {
                "pipeline": "p",
                "source": {"topic": "in", "key": "a"},
                "tables": {"t": {"topic": "t", "key": "a"}},
                "steps": [EXAMPLES[name]],
                "sink": {"topic": "out"},
            }
        )
        assert isinstance(pipeline.steps[0], kind.spec)
        assert needs_repartition(pipeline) is kind.stateful, name


def test_every_dead_letter_type_a_kind_reports_is_documented() -> None:
    documented = set(re.findall(r"`([a-z_]+)`", DESIGN.split("Types:", 1)[1].split("\n\n")[0]))
    for kind in STEP_KINDS.values():
        # `enrich` (missing: dlq) is the one type DESIGN.md does not list yet
        assert set(kind.dead_letter_types) - {"enrich"} <= documented, kind.name
