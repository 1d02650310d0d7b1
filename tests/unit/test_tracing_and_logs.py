"""Trace context on records, and the log formats that carry it."""

from __future__ import annotations

import asyncio
import logging

import orjson
from hypothesis import given
from hypothesis import strategies as st

from models.pipeline import PipelineSpec
from streams.pipeline import Pipeline
from streams.records import Event
from streams.runtime.logs import ConsoleFormatter, JsonFormatter
from streams.tracing import (
    TRACEPARENT,
    continue_trace,
    current_pipeline,
    new_traceparent,
    trace_id_in,
    trace_id_of,
)

HEX = "0123456789abcdef"


@given(
    trace=st.text(HEX, min_size=32, max_size=32).filter(lambda t: t != "0" * 32),
    span=st.text(HEX, min_size=16, max_size=16).filter(lambda s: s != "0" * 16),
    flags=st.sampled_from(["00", "01"]),
)
def test_continued_trace_keeps_trace_id_and_flags_with_a_new_span(
    trace: str, span: str, flags: str
) -> None:
    incoming = f"00-{trace}-{span}-{flags}".encode()
    other = ("other", b"x")
    [kept, (name, value)] = continue_trace([other, (TRACEPARENT, incoming)])
    assert kept == other and name == TRACEPARENT
    assert trace_id_of(value) == trace
    assert value.endswith(f"-{flags}".encode()) and len(value) == 55
    again = continue_trace([(TRACEPARENT, incoming)])[0][1]
    assert value[36:52] != again[36:52], "each hop gets a span of its own"


@given(st.binary(max_size=80))
def test_invalid_or_missing_traceparent_starts_a_new_trace(garbage: bytes) -> None:
    for headers in ([], [(TRACEPARENT, garbage)]):
        [(name, value)] = continue_trace(headers)
        assert name == TRACEPARENT and trace_id_of(value) is not None
        if trace_id_of(garbage) is None:
            assert value != garbage


def test_trace_id_rules() -> None:
    valid = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert trace_id_of(valid) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace_id_of(valid.upper()) is None  # lowercase hex only
    assert trace_id_of(b"01" + valid[2:]) is None  # only version 00 has this layout
    assert trace_id_of(b"00-" + b"0" * 32 + valid[35:]) is None  # all-zero trace id
    assert trace_id_of(valid[:52] + b"-0") is None
    assert trace_id_in([("a", b"1"), (TRACEPARENT, valid)]) == trace_id_of(valid)
    assert trace_id_in([("a", b"1")]) is None
    assert trace_id_of(new_traceparent()) is not None
    assert new_traceparent() != new_traceparent()


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("sluice.test", logging.WARNING, __file__, 1, "got %d", (3,), None)
    record.__dict__.update(extra)
    return record


def _format_in_pipeline(formatter: logging.Formatter, pipeline: str, **extra: object) -> str:
    """A line logged while `pipeline` runs (the agent sets current_pipeline)."""
    token = current_pipeline.set(pipeline)
    try:
        return formatter.format(_record(**extra))
    finally:
        current_pipeline.reset(token)


def test_json_lines_carry_pipeline_trace_and_context_fields() -> None:
    line = _format_in_pipeline(JsonFormatter(), "payments", trace_id="abc", step="map")
    entry = orjson.loads(line)
    assert entry["msg"] == "got 3" and entry["level"] == "WARNING"
    assert entry["pipeline"] == "payments" and entry["trace_id"] == "abc"
    assert entry["step"] == "map" and entry["ts"].endswith("+00:00")
    bare = orjson.loads(JsonFormatter().format(_record()))
    assert bare["pipeline"] is None and bare["trace_id"] is None and "step" not in bare
    explicit = orjson.loads(JsonFormatter().format(_record(pipeline="other")))
    assert explicit["pipeline"] == "other"


def test_console_lines_are_readable() -> None:
    line = _format_in_pipeline(ConsoleFormatter(), "payments", trace_id="abc", step="map")
    assert "WARNING" in line and line.endswith("[payments trace=abc step=map] got 3")
    assert "[" not in ConsoleFormatter().format(_record())


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_component_log_lines_carry_the_records_trace_id() -> None:
    spec = PipelineSpec.model_validate(
        {
            "pipeline": "p",
            "source": {"topic": "in"},
            "steps": [{"component": {"class": "tests.fixtures.components:LogEach"}}],
            "sink": {"topic": "out"},
        }
    )
    capture = _Capture()
    logger = logging.getLogger("sluice.component.component")
    logger.addHandler(capture)
    logger.setLevel(logging.INFO)
    try:
        traced = continue_trace([])
        events = [
            Event(None, raw=b'{"user": "a"}', headers=traced),
            Event(None, raw=b'{"user": "b"}'),
        ]
        asyncio.run(Pipeline(spec).process(events))
    finally:
        logger.removeHandler(capture)
    assert [r.getMessage() for r in capture.records] == ["component saw a", "component saw b"]
    assert [r.trace_id for r in capture.records] == [trace_id_in(traced), None]
    assert {r.step for r in capture.records} == {"component"}
