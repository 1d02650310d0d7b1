"""CAST and the times expressions compare: what a value becomes as text, int, float, bool or
timestamp, and how ISO-8601 text and epoch numbers are read as times."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Final

from streams.core.errors import ExpressionRuntimeError
from streams.expressions import values
from streams.expressions.expression import Evaluator, Record

NUMBERS: Final = frozenset({int, float})


def parse_timestamp(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


_TRUE_TEXT: Final = frozenset({"true", "t", "yes", "y", "1", "on"})
_FALSE_TEXT: Final = frozenset({"false", "f", "no", "n", "0", "off"})


def cast_value(value: object, target: str) -> object:
    """CAST semantics; raises ExpressionRuntimeError when the value does not convert."""
    try:
        if target == "text":
            return values.to_text(value)
        if target == "int":
            if isinstance(value, bool):
                return int(value)
            if value.__class__ is int:
                return value
            if value.__class__ is float:
                if not math.isfinite(value):
                    raise ValueError
                return math.trunc(value)
            if value.__class__ is str:
                text = value.strip()
                try:
                    return int(text)
                except ValueError:
                    return math.trunc(float(text))
        if target == "float":
            if isinstance(value, bool | int | float):
                return float(value)
            if value.__class__ is str:
                return float(value)
        if target == "bool":
            if isinstance(value, bool):
                return value
            if value.__class__ in NUMBERS:
                return value != 0
            if value.__class__ is str:
                text = value.strip().lower()
                if text in _TRUE_TEXT:
                    return True
                if text in _FALSE_TEXT:
                    return False
        if target == "timestamp":
            if isinstance(value, datetime):
                return aware(value)
            if value.__class__ is str:
                parsed = parse_timestamp(value)
                if parsed is not None:
                    return parsed
            if isinstance(value, int | float) and not isinstance(value, bool):
                seconds = value / 1000 if value >= 1e11 else value
                return datetime.fromtimestamp(seconds, tz=UTC)
    except (ValueError, OverflowError):
        pass
    raise ExpressionRuntimeError(f"cannot cast {values.type_name(value)} {value!r} to {target}")


def cast_evaluator(value: Evaluator, target: str, safe: bool) -> Evaluator:
    def evaluate_cast(record: Record) -> Any:
        raw = value(record)
        if raw is None:
            return None
        if safe:
            try:
                return cast_value(raw, target)
            except ExpressionRuntimeError:
                return None
        return cast_value(raw, target)

    return evaluate_cast
