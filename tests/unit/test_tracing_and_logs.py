"""Trace context on records, and the log formats that carry it."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import sys
import threading
import warnings
from types import SimpleNamespace

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.pipeline_spec import PipelineSpec
from models.settings import LogSettings
from streams.core.records import Event
from streams.core.tracing import (
    TRACEPARENT,
    continue_trace,
    current_pipeline,
    new_traceparent,
    trace_id_in,
    trace_id_of,
)
from streams.runtime.logs import (
    ConsoleFormatter,
    JsonFormatter,
    configure_logging,
    level_name,
    utc_timestamp,
)
from streams.steps.pipeline import Pipeline

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
    """A line logged while `pipeline` runs (the runtime sets current_pipeline)."""
    token = current_pipeline.set(pipeline)
    try:
        return formatter.format(_record(**extra))
    finally:
        current_pipeline.reset(token)


SHAPE = ["timestamp", "level", "component", "trace_id", "message", "metadata"]
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_json_lines_have_the_product_specs_shape() -> None:
    line = _format_in_pipeline(JsonFormatter(), "payments", trace_id="abc", step="map")
    entry = orjson.loads(line)
    assert list(entry) == SHAPE
    assert entry["message"] == "got 3" and entry["level"] == "WARNING"
    assert entry["component"] == "sluice.test" and entry["trace_id"] == "abc"
    assert entry["metadata"] == {"pipeline": "payments", "step": "map"}
    assert TIMESTAMP.match(entry["timestamp"]), entry["timestamp"]
    bare = orjson.loads(JsonFormatter().format(_record()))
    assert list(bare) == SHAPE
    assert bare["trace_id"] is None and bare["metadata"] == {}
    explicit = orjson.loads(JsonFormatter().format(_record(pipeline="other")))
    assert explicit["metadata"] == {"pipeline": "other"}


def test_json_timestamp_is_utc_with_milliseconds() -> None:
    record = _record()
    record.created = 1_795_771_512.502_9  # 2026-11-27T09:25:12.5029Z
    assert orjson.loads(JsonFormatter().format(record))["timestamp"] == "2026-11-27T09:25:12.502Z"
    assert utc_timestamp(0.0) == "1970-01-01T00:00:00.000Z"


def test_json_exceptions_and_odd_values_stay_inside_metadata() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "aiokafka.consumer", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    record.__dict__.update(partition=3, big=2**70, when=object(), keys={1: "a"})
    entry = orjson.loads(JsonFormatter().format(record))
    assert list(entry) == SHAPE and entry["component"] == "aiokafka.consumer"
    metadata = entry["metadata"]
    assert (
        metadata["exception"].startswith("Traceback")
        and "ValueError: boom" in metadata["exception"]
    )
    assert metadata["partition"] == 3 and metadata["big"] == str(2**70)  # stringified, not lost
    assert metadata["keys"] == {"1": "a"} and metadata["when"].startswith("<object")


def test_a_message_that_cannot_be_formatted_is_still_a_json_line() -> None:
    record = logging.LogRecord("lib", logging.INFO, __file__, 1, "%d items", ("many",), None)
    entry = orjson.loads(JsonFormatter().format(record))
    assert list(entry) == SHAPE and entry["message"] == "%d items"
    assert "TypeError" in entry["metadata"]["format_error"]


def test_custom_levels_map_to_standard_names() -> None:
    assert [level_name(n) for n in (5, 10, 15, 20, 25, 30, 40, 50, 60)] == [
        "DEBUG",
        "DEBUG",
        "DEBUG",
        "INFO",
        "INFO",
        "WARNING",
        "ERROR",
        "CRITICAL",
        "CRITICAL",
    ]


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
    # trace_id and step are set on the records by sluice's log filter
    assert [getattr(r, "trace_id") for r in capture.records] == [trace_id_in(traced), None]  # noqa: B009
    assert {getattr(r, "step") for r in capture.records} == {"component"}  # noqa: B009


def test_json_mode_routes_warnings_and_uncaught_exceptions_through_the_formatter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Python's own plain-text writers (warnings, thread and unraisable exceptions) would
    break a log collector's one-object-per-line parsing."""
    stderr = io.StringIO()
    root = logging.getLogger()
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    for module, hook in ((sys, "excepthook"), (threading, "excepthook"), (sys, "unraisablehook")):
        monkeypatch.setattr(module, hook, getattr(module, hook))
    configure_logging(LogSettings(format="json", level="INFO"))
    try:
        with warnings.catch_warnings():  # shown even when an earlier test showed it once
            warnings.simplefilter("always")
            warnings.warn("a library's warning", RuntimeWarning, stacklevel=1)

        def fail() -> None:
            raise RuntimeError("thread died")

        thread = threading.Thread(target=fail, name="worker-thread")
        thread.start()
        thread.join()
        sys.unraisablehook(
            SimpleNamespace(
                exc_type=ValueError,
                exc_value=ValueError("in __del__"),
                exc_traceback=None,
                err_msg=None,
                object="obj",
            )
        )
        sys.excepthook(KeyError, KeyError("main"), None)
        sys.excepthook(KeyboardInterrupt, KeyboardInterrupt(), None)
    finally:
        logging.captureWarnings(False)
    entries = [orjson.loads(line) for line in stderr.getvalue().splitlines()]
    assert all(list(e) == SHAPE for e in entries), stderr.getvalue()
    by_component = {(e["component"], e["level"]) for e in entries}
    assert ("py.warnings", "WARNING") in by_component
    thread_line = next(e for e in entries if "thread died" in e["message"])
    assert thread_line["metadata"]["thread_name"] == "worker-thread"
    assert "RuntimeError: thread died" in thread_line["metadata"]["exception"]
    assert any("in __del__" in e["metadata"].get("exception", "") for e in entries)
    assert any(e["level"] == "CRITICAL" and "KeyError" in e["message"] for e in entries)
    assert entries[-1]["message"] == "interrupted (KeyboardInterrupt)"


def test_a_cli_failure_after_json_logging_started_is_a_json_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streams.cli import app as cli

    stderr = io.StringIO()
    root = logging.getLogger()
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    for module, hook in ((sys, "excepthook"), (threading, "excepthook"), (sys, "unraisablehook")):
        monkeypatch.setattr(module, hook, getattr(module, hook))
    try:
        configure_logging(LogSettings(format="json", level="INFO"))
        with pytest.raises(SystemExit) as exit_:
            cli.fail("the embedded broker did not start")
    finally:
        logging.captureWarnings(False)
    assert exit_.value.code == 1
    [entry] = [orjson.loads(line) for line in stderr.getvalue().splitlines()]
    assert list(entry) == SHAPE and entry["level"] == "CRITICAL"
    assert entry["component"] == "sluice.cli"
    assert entry["message"] == "error: the embedded broker did not start"
