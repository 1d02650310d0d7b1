"""The pure pipeline: decoding, event time, keys, steps, routes, components, accounting."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from models.pipeline_spec import PipelineSpec
from streams.core.errors import SluiceError
from streams.core.event_time import event_time_ms, iso_ms
from streams.core.metrics import CountingMetrics
from streams.core.records import BatchResult, Event
from streams.core.state import MemoryStateBackend
from streams.steps.pipeline import Pipeline


def make(text: str, **options: Any) -> Pipeline:
    spec = PipelineSpec.model_validate(yaml.safe_load(text))
    return Pipeline(spec, metrics=CountingMetrics(), **options)


def raw(*values: Any) -> list[Event]:
    return [
        Event(None, raw=v if isinstance(v, bytes) else orjson.dumps(v), offset=i, timestamp_ms=5)
        for i, v in enumerate(values)
    ]


def values(result: BatchResult, topic: str) -> list[Any]:
    return [event.value for event in result.outputs.get(topic, [])]


STATELESS = """
pipeline: p
source: {topic: in, key: user, timestamp: ts}
steps:
  - validate: {schema: {amount: float, user: str, ts: "int?"}}
  - filter: "amount > 0"
  - map: {user: user, double: amount * 2}
sink:
  route:
    - {when: "double >= 10", to: big}
    - {when: "double < 1", to: tiny}
"""


async def test_decode_failures_become_dead_letters_with_original_bytes() -> None:
    pipeline = make(STATELESS, max_message_bytes=60)
    messages = raw(
        b"not json",
        b"[1, 2]",
        b'"text"',
        b'{"amount": 1, "user": "u", "pad": "' + b"x" * 80 + b'"}',
        {"amount": 2, "user": "u", "ts": "yesterday"},
        {"amount": 2, "user": "u", "ts": True},
    )
    result = await pipeline.process(messages)
    letters = result.dead_letters
    assert [(d.step, d.error_type) for d in letters] == [
        ("source", "invalid_json"),
        ("source", "invalid_json"),
        ("source", "invalid_json"),
        ("source", "oversize"),
        ("source", "timestamp"),
        ("source", "timestamp"),
    ]
    assert [d.raw for d in letters] == [m.raw for m in messages]
    assert [d.offset for d in letters] == list(range(6))
    assert "an array" in letters[1].message and "a string" in letters[2].message
    assert "max_message_bytes (60)" in letters[3].message
    assert "ISO-8601" in letters[4].message


async def test_steps_routes_and_metrics() -> None:
    pipeline = make(STATELESS)
    result = await pipeline.process(
        raw(
            {"amount": 6, "user": "a", "ts": 1_700_000_000},  # big
            {"amount": "0.2", "user": "b", "ts": 1_795_600_800},  # lax float, tiny
            {"amount": 3, "user": "c", "ts": 1},  # matches no route
            {"amount": -1, "user": "d", "ts": 1},  # filtered
            {"amount": "lots", "user": "e", "ts": 1},  # schema
            {"user": "f", "ts": 1},  # schema: missing
            {"amount": 3, "user": "g"},  # no event time
        )
    )
    assert values(result, "big") == [{"user": "a", "double": 12.0}]
    assert values(result, "tiny") == [{"user": "b", "double": 0.4}]
    assert result.outputs["big"][0].key == "a"
    assert result.outputs["big"][0].timestamp_ms == 1_700_000_000_000
    assert result.outputs["tiny"][0].timestamp_ms == 1_795_600_800_000
    assert [(d.step, d.error_type) for d in result.dead_letters] == [
        ("source", "timestamp"),
        ("validate", "schema"),
        ("validate", "schema"),
    ]
    assert "'ts' is missing" in result.dead_letters[0].message
    assert "amount: Input should be a valid number" in result.dead_letters[1].message
    assert "amount: field required" in result.dead_letters[2].message
    metrics = pipeline.metrics
    assert isinstance(metrics, CountingMetrics)
    assert metrics.events_in_total == 7
    assert metrics.sent == {"big": 1, "tiny": 1}
    assert metrics.drops == {("filter", "filter"): 1, ("sink", "unrouted"): 1}
    assert metrics.dead == {("validate", "schema"): 2, ("source", "timestamp"): 1}
    assert set(metrics.seconds) == {"validate", "filter", "map"}


async def test_expression_runtime_errors_go_to_dead_letters_and_batch_continues() -> None:
    pipeline = make("""
pipeline: p
source: {topic: in}
steps:
  - filter: "amount > 1"
  - map: {label: "upper(name)", amount: amount, size: size}
sink:
  route: [{when: "amount / size > 1", to: out}, {else: rest}]
""")
    result = await pipeline.process(
        raw(
            {"amount": 5, "name": "a", "size": 1},
            {"amount": "5", "name": "b", "size": 1},  # filter: text vs number
            {"amount": 5, "name": 7, "size": 1},  # map: upper of a number
            {"amount": 5, "name": "d", "size": 1},
            {"amount": 5, "name": "e", "size": 0},  # route: / 0 is NULL, so not > 1: else
        )
    )
    assert values(result, "out") == [
        {"label": "A", "amount": 5, "size": 1},
        {"label": "D", "amount": 5, "size": 1},
    ]
    assert values(result, "rest") == [{"label": "E", "amount": 5, "size": 0}]
    assert [(d.step, d.error_type) for d in result.dead_letters] == [
        ("filter", "expression"),
        ("map", "expression"),
    ]
    assert b'"name":7' in result.dead_letters[1].raw


async def test_route_expression_errors_are_dead_letters_of_the_sink() -> None:
    pipeline = make("""
pipeline: p
source: {topic: in}
sink: {route: [{when: "kind > 1", to: out}]}
""")
    result = await pipeline.process(raw({"kind": "x"}, {"kind": 2}))
    assert values(result, "out") == [{"kind": 2}]
    assert [(d.step, d.error_type) for d in result.dead_letters] == [("sink", "expression")]


async def test_model_validation_coerces_and_keeps_extra_fields() -> None:
    pipeline = make("""
pipeline: p
source: {topic: in}
steps:
  - validate: {model: "models.events:Payment"}
sink: {topic: out}
""")
    good = {
        "payment_id": "p1",
        "user_id": "u",
        "merchant": "m",
        "amount": "12.5",
        "currency": "EUR",
        "ts": "2026-11-25T10:00:00Z",
        "extra": [1],
    }
    result = await pipeline.process(raw(good, {**good, "currency": "XXX"}))
    [record] = values(result, "out")
    assert record["amount"] == 12.5 and record["extra"] == [1]
    assert record["ts"].year == 2026
    assert "currency" in result.dead_letters[0].message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_700_000_000, 1_700_000_000_000),
        (1_700_000_000.5, 1_700_000_000_500),
        (1_700_000_000_123, 1_700_000_000_123),
        ("2026-11-25T10:00:00Z", 1_795_600_800_000),
        ("2026-11-25T10:00:00", 1_795_600_800_000),
        ("2026-11-25T11:00:00+01:00", 1_795_600_800_000),
    ],
)
def test_event_time_formats(value: Any, expected: int) -> None:
    assert event_time_ms(value, "ts") == expected


def test_iso_ms_format() -> None:
    assert iso_ms(1_795_600_860_000) == "2026-11-25T10:01:00.000Z"
    assert iso_ms(1_795_600_860_042) == "2026-11-25T10:01:00.042Z"


COMPONENT = """
pipeline: p
source: {topic: in, key: user}
steps:
  - component: {class: "tests.fixtures.components:%s", config: {limit: 3}}
sink: {topic: out}
"""


async def test_component_state_per_key_survives_batches() -> None:
    state = MemoryStateBackend()
    pipeline = make(COMPONENT % "CountPerKey", state=state)
    first = await pipeline.process(raw({"user": "a"}, {"user": "b"}, {"user": "a"}))
    second = await pipeline.process(raw({"user": "a"}))
    assert [(v["user"], v["seen"], v["limit"]) for v in values(first, "out")] == [
        ("a", 1, 3),
        ("b", 1, 3),
        ("a", 2, 3),
    ]
    assert values(second, "out")[0]["seen"] == 3
    assert state.stores["p.component"].get("a") == {"seen": 3}


async def test_component_returns_lists_none_errors_and_emits() -> None:
    pipeline = make(COMPONENT % "SplitAndAudit")
    result = await pipeline.process(
        raw(
            {"user": "a", "action": "split"},
            {"user": "a", "action": "drop"},
            {"user": "a", "action": "boom"},
            {"user": "a", "action": "bad"},
            {"user": "a", "action": "empty"},
            {"user": "a", "id": 9},
        )
    )
    assert values(result, "out") == [{"part": 1}, {"part": 2}, {"user": "a", "id": 9}]
    assert values(result, "audit") == [{"seen": 9}]
    assert [(d.step, d.error_type) for d in result.dead_letters] == [("component", "component")] * 2
    assert result.dead_letters[0].message == "ValueError: boom on purpose"
    assert "returned int" in result.dead_letters[1].message
    assert pipeline.metrics.drops == {("component", "component"): 2}  # type: ignore[attr-defined]


async def test_async_component() -> None:
    pipeline = make(COMPONENT % "AsyncEnricher")
    result = await pipeline.process(raw({"user": "a"}, {"user": "b", "fail": True}))
    assert values(result, "out") == [{"user": "a", "enriched": True}]
    assert result.dead_letters[0].message == "RuntimeError: lookup failed"


def test_component_that_cannot_be_created_is_a_clear_error() -> None:
    with pytest.raises(SluiceError, match=r"NeedsArguments\(\)"):
        make(COMPONENT % "NeedsArguments")


async def test_demo_risk_pipeline_runs_every_stateful_step() -> None:
    from pathlib import Path

    from streams.config.loader import load_pipeline

    root = Path(__file__).resolve().parents[2]
    spec = load_pipeline(root / "config" / "pipelines" / "payments-risk.yaml")
    kinds = {step.kind for step in spec.steps}
    assert {"dedupe", "enrich", "ratelimit", "window", "alert"} <= kinds
    pipeline = Pipeline(spec, metrics=CountingMetrics())
    assert [s.kind for s in pipeline.steps] == [s.kind for s in spec.steps]


# --- accounting: every record is out, dropped or a dead letter -------------------------

records = st.one_of(
    st.fixed_dictionaries(
        {
            "amount": st.one_of(
                st.integers(-5, 50), st.floats(-5, 50), st.text(max_size=3), st.none()
            ),
            "user": st.one_of(st.sampled_from(["a", "b"]), st.integers(0, 3)),
        },
        optional={"ts": st.integers(0, 2_000_000_000)},
    ).map(orjson.dumps),
    st.binary(max_size=20),
)


@settings(max_examples=150, deadline=None)
@given(batch=st.lists(records, max_size=40))
async def test_every_record_is_accounted_for(batch: list[bytes]) -> None:
    pipeline = make(STATELESS)
    result = await pipeline.process(raw(*batch))
    metrics = pipeline.metrics
    assert isinstance(metrics, CountingMetrics)
    out = result.count()
    assert len(result.dead_letters) == metrics.dead_letters_total
    assert out + metrics.dropped_total + metrics.dead_letters_total == len(batch)
    # brute force: which records should come out, computed independently
    expected = []
    for line in batch:
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(value, dict) or value.get("ts") is None:
            continue
        if value["ts"] > time.time() + 7 * 86_400:  # beyond max_event_time_skew
            continue
        amount, user = value.get("amount"), value.get("user")
        if isinstance(amount, str):
            try:
                amount = float(amount)
            except ValueError:
                continue
        if amount is None or not isinstance(user, str) or isinstance(amount, bool):
            continue
        if amount > 0 and (amount * 2 >= 10 or amount * 2 < 1):
            expected.append({"user": user, "double": float(amount) * 2})
    got = values(result, "big") + values(result, "tiny")
    assert sorted(got, key=repr) == sorted(expected, key=repr)


def test_models_load_nothing_of_streams() -> None:
    """models is data and its shape (import-linter contract `models-pure-data` sees the
    imports; this sees that its type-only ones stay type-only)."""
    code = (
        "import sys, models.pipeline_spec, models.settings, models.envelopes, models.events\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'streams')\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_pure_core_loads_no_kafka_client_or_faust() -> None:
    """The layer contracts (`make lint`, pyproject.toml [tool.importlinter]) see sluice's
    own imports; this sees what its dependencies import when loaded, which they cannot."""
    code = (
        "import sys, streams.steps.pipeline, streams.offline, streams.steps, streams.expressions, "
        "streams.sql.compiler, streams.sql.explain, streams.core.state, "
        "streams.config.check, streams.config.loader, models.pipeline_spec\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('faust', 'mode', 'aiokafka', 'confluent_kafka'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_only_streams_faust_imports_faust() -> None:
    """The native engine and the CLI never load Faust (nor mode); in the source, only the
    streams.faust package imports it."""
    code = (
        "import sys, streams.runtime.worker, streams.runtime.engine, streams.cli, "
        "streams.cli.serve, streams.cli.bench, bench.peers\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('faust', 'mode'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    root = Path(__file__).resolve().parents[2]
    importing = re.compile(r"^\s*(import faust\b|from faust\b)", re.MULTILINE)
    offenders = [
        str(path.relative_to(root))
        for folder in ("streams", "models", "bench")
        for path in (root / folder).rglob("*.py")
        if importing.search(path.read_text()) and "streams/faust/" not in path.as_posix()
    ]
    assert offenders == []
