"""Durations, keys, JSON encoding and function edge cases."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.durations import format_duration_ms, parse_duration_ms
from streams.core.errors import ExpressionRuntimeError
from streams.core.jsonl import dumps, text_of
from streams.core.records import Event, key_of
from streams.core.state import DictStateStore, MemoryStateBackend
from streams.expressions import compile_expression


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("500ms", 500),
        ("10s", 10_000),
        ("1m", 60_000),
        ("2h", 7_200_000),
        ("1d", 86_400_000),
        ("1.5s", 1500),
        (" 3 m ", 180_000),
        (5, 5000),
        (0.25, 250),
    ],
)
def test_durations(text: Any, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("bad", ["10 minutes", "m", "-1s", "", True, -3, None, [1]])
def test_bad_durations_say_what_is_accepted(bad: Any) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration_ms(bad)


@given(st.integers(min_value=0, max_value=10**12))
def test_format_duration_round_trips(ms: int) -> None:
    assert parse_duration_ms(format_duration_ms(ms)) == ms


def test_keys() -> None:
    assert key_of({"a": 1}, ("a",)) == "1"
    assert key_of({"a": True, "b": "x"}, ("a", "b")) == "true|x"
    assert key_of({"a": False}, ("a",)) == "false"
    assert key_of({"a": 1}, ("a", "b")) is None
    assert key_of({}, ("a",)) is None


def test_event_derive_keeps_position() -> None:
    event = Event(
        {"a": 1}, key="k", timestamp_ms=9, headers=[("h", b"v")], raw=b"r", partition=2, offset=7
    )
    child = event.derive({"b": 2})
    assert (child.key, child.timestamp_ms, child.raw, child.partition, child.offset) == (
        "k",
        9,
        b"r",
        2,
        7,
    )
    assert child.derive({}, key="other").key == "other"
    assert "Event(" in repr(event)


def test_json_encoding_of_odd_values() -> None:
    moment = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    encoded = orjson.loads(dumps({"t": moment, "s": {1}, "d": Decimal("1.5"), 3: "int key"}))
    assert encoded == {"t": "2026-11-25T10:00:00Z", "s": [1], "d": "1.5", "3": "int key"}
    assert text_of(b"caf\xc3\xa9 \xff") == "café \\xff"


def test_state_stores() -> None:
    backend = MemoryStateBackend()
    store = backend.store("p.s")
    assert backend.store("p.s") is store
    store.set("a", 1)
    assert list(store.keys()) == ["a"] and len(store) == 1
    store.delete("a")
    store.delete("missing")
    assert store.get("a", 5) == 5
    assert "p.s" in repr(DictStateStore("p.s"))


@pytest.mark.parametrize(
    "source",
    [
        "length(a)",
        "substr(s, 'x')",
        "repeat(s, -1.5)",
        "round(s)",
        "power(s, 2)",
        "ln(0 * a)",
        "ln(a - a)",
        "log(a - a)",
        "split_part(s, ',', 0)",
        "mod(s, 2)",
        "greatest(a, s)",
        "CAST(l AS INT)",
        "CAST(s AS BOOLEAN)",
        "CAST(s AS TIMESTAMP)",
        "s BETWEEN 1 AND 2",
        "s LIKE a",
        "substr(s, 1, -1)",
        "sign(s)",
        "abs(s)",
        "floor(s)",
        "ceil(s)",
        "trunc(s)",
        "sqrt(s)",
        "exp(s)",
    ],
)
def test_function_type_errors(source: str) -> None:
    record = {"a": 3, "s": "text", "l": [1]}
    with pytest.raises(ExpressionRuntimeError):
        result = compile_expression(source).evaluate(record)
        pytest.fail(f"{source} gave {result!r}")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("length(l)", 1),
        ("l || ''", "[1]"),
        ("CAST(t AS TEXT)", "true"),
        ("CAST(1 AS BOOLEAN)", True),
        ("CAST(0.0 AS BOOLEAN)", False),
        ("CAST('no' AS BOOLEAN)", False),
        ("CAST(1.9 AS INT)", 1),
        ("CAST(1795600800 AS TIMESTAMP)", datetime(2026, 11, 25, 10, tzinfo=UTC)),
        ("CAST(1795600800000 AS TIMESTAMP)", datetime(2026, 11, 25, 10, tzinfo=UTC)),
        ("CAST(d AS TEXT)", "2026-11-25T10:00:00+00:00"),
        ("trim('xxaxx', 'x')", "a"),
        ("substr(s, 0, 2)", "t"),
        ("substr(s, -2)", "text"),
        ("round(2.345, 1)", 2.3),
        ("log(2, 8)", 3.0),
        ("power(2, -1)", 0.5),
        ("a = 3.0", True),
        ("t = true", True),
        ("d > '2026-01-01'", True),
        ("d = d", True),
    ],
)
def test_function_edges(source: str, expected: Any) -> None:
    record = {"a": 3, "s": "text", "l": [1], "t": True, "d": datetime(2026, 11, 25, 10, tzinfo=UTC)}
    result = compile_expression(source).evaluate(record)
    assert result == pytest.approx(expected) if isinstance(expected, float) else result == expected


def test_demo_main_writes_lines(
    capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    from streams.offline import demo_data as demo

    monkeypatch.setattr("sys.argv", ["demo", "25"])
    demo.main()
    lines = capsysbinary.readouterr().out.splitlines()
    assert len(lines) == 25
