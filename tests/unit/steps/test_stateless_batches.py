"""validate, filter and map on whole batches (columns) give what they give record by
record: the same records on, the same values, the same dead letters in the same order."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.errors import RecordError, SchemaError
from streams.core.records import BatchResult, Event
from streams.expressions import compile_condition, compile_expression
from streams.steps.contract import BatchContext
from streams.steps.filter import FilterStep
from streams.steps.map import MapStep
from streams.steps.validate import SchemaValidator, ValidateStep

SCHEMA = {"id": "str", "amount": "float", "n": "int?", "ok": "bool", "at": "datetime?"}
value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([2**60, 2**70]),
    st.floats(-10, 10, allow_nan=False, allow_infinity=False),
    st.sampled_from(["p1", "3", "2.5", "EUR", "USD", "2026-11-25T10:00:00Z", "yes"]),
)
plain = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["p1", "p2"]),
        "amount": st.floats(-10, 10, allow_nan=False, allow_infinity=False),
        "n": st.one_of(st.none(), st.integers(-3, 3)),
        "ok": st.booleans(),
        "currency": st.sampled_from(["EUR", "USD", "GBP", "XXX"]),
    }
)
messy = st.dictionaries(
    st.sampled_from(["id", "amount", "n", "ok", "at", "currency"]), value, max_size=6
)
batches = st.lists(st.one_of(plain, plain, messy), min_size=1, max_size=40)


def _events(records: list[dict[str, Any]]) -> list[Event]:
    return [Event(copy.deepcopy(r), offset=i) for i, r in enumerate(records)]


def _letters(ctx: BatchContext) -> list[tuple[int, str, str]]:
    return [(d.offset, d.error_type, d.message) for d in ctx.result.dead_letters]


@settings(max_examples=300, deadline=None)
@given(records=batches)
def test_validate_batches_equal_record_by_record(records: list[dict[str, Any]]) -> None:
    validator = SchemaValidator(SCHEMA)
    ctx = BatchContext(BatchResult(), 0)
    kept = ValidateStep("validate", validator).process(_events(records), ctx)
    expected, letters = [], []
    for i, record in enumerate(copy.deepcopy(records)):
        try:
            expected.append((i, validator(record)))
        except SchemaError as error:
            letters.append((i, error.error_type, str(error)))
    assert [(e.offset, e.value) for e in kept] == expected
    assert _letters(ctx) == letters


CONDITIONS = [
    "amount > 0 AND currency IN ('EUR', 'USD', 'GBP')",
    "NOT ok OR n >= 1",
    "amount * 2 > n",
    "CASE WHEN currency = 'USD' THEN amount ELSE n END > 0",
    "amount",
]
PROJECTIONS = [
    {"id": "id", "eur": "CASE WHEN currency = 'USD' THEN amount * 0.92 ELSE amount END"},
    {"twice": "amount + amount", "flag": "ok AND n > 0", "ratio": "amount / n"},
]


def _reference(fn: Any, records: list[dict[str, Any]]) -> tuple[list[Any], list[int]]:
    values, failed = [], []
    for i, record in enumerate(records):
        try:
            values.append((i, fn(record)))
        except RecordError:
            failed.append(i)
    return values, failed


@settings(max_examples=300, deadline=None)
@given(records=batches, source=st.sampled_from(CONDITIONS))
def test_filter_batches_equal_record_by_record(records: list[dict[str, Any]], source: str) -> None:
    condition = compile_condition(source)
    ctx = BatchContext(BatchResult(), 0)
    kept = FilterStep("filter", condition).process(_events(records), ctx)
    verdicts, failed = _reference(condition.evaluate, records)
    assert [e.offset for e in kept] == [i for i, verdict in verdicts if verdict is True]
    assert [offset for offset, _, _ in _letters(ctx)] == failed
    assert sum(ctx.drops.values()) == len(records) - len(kept) - len(failed)


@settings(max_examples=300, deadline=None)
@given(records=batches, fields=st.sampled_from(PROJECTIONS))
def test_map_batches_equal_record_by_record(
    records: list[dict[str, Any]], fields: dict[str, str]
) -> None:
    expressions = {name: compile_expression(text) for name, text in fields.items()}
    ctx = BatchContext(BatchResult(), 0)
    out = MapStep("map", expressions).process(_events(records), ctx)

    def project(record: dict[str, Any]) -> list[tuple[str, type, Any]]:
        return [(n, type(v), v) for n, e in expressions.items() for v in [e.evaluate(record)]]

    projected, failed = _reference(project, records)
    assert [(e.offset, [(n, type(v), v) for n, v in e.value.items()]) for e in out] == projected
    assert [offset for offset, _, _ in _letters(ctx)] == failed


@settings(max_examples=500, deadline=None)
@given(
    step=st.text(max_size=8),
    kind=st.text(max_size=8),
    message=st.text(max_size=40),
    raw=st.one_of(st.binary(max_size=40), st.text(max_size=40).map(str.encode)),
)
def test_replay_dead_letter_lines_are_the_models_json(
    step: str, kind: str, message: str, raw: bytes
) -> None:
    from streams.core.records import DeadLetter
    from streams.offline.writing import _model_line, dead_letter_line

    letter = DeadLetter(raw=raw, step=step, error_type=kind, message=message, partition=0, offset=0)
    assert dead_letter_line(letter) == _model_line(letter)


def test_dumps_lines_falls_back_for_what_orjson_refuses() -> None:
    from streams.core import jsonl

    values = [{"a": 2**70}, {"b": 1.5}, {"c": "\ud800"}]
    assert jsonl.dumps_lines(values) == b"".join(jsonl.dumps(v) + b"\n" for v in values)
    assert jsonl.dumps_lines([]) == b""
