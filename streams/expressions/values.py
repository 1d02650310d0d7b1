"""What the SQL functions share: the bounds on what one record can make an expression
build, type names for error messages, and the coercions that raise those errors."""

from __future__ import annotations

from datetime import date, datetime

from streams.core.errors import ExpressionRuntimeError

NUMBER_TYPES = (int, float)
# Bounds on what one record can make an expression build: text (repeat, replace…) and
# integers (exact, so `power(2, 10**9)` would take minutes and gigabytes otherwise)
MAX_TEXT_LENGTH = 4 * 1_048_576
MAX_INT_BITS = 8192


def text_too_long(function: str, length: int) -> ExpressionRuntimeError:
    return ExpressionRuntimeError(
        f"{function}() would make text of {length:,} characters (limit {MAX_TEXT_LENGTH:,})"
    )


def int_too_large(function: str) -> ExpressionRuntimeError:
    return ExpressionRuntimeError(
        f"{function} gives an integer of more than {MAX_INT_BITS} bits: number too large"
    )


def type_name(value: object) -> str:
    """The SQL-ish name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, datetime | date):
        return "timestamp"
    return type(value).__name__


def type_error(function: str, expected: str, value: object) -> ExpressionRuntimeError:
    return ExpressionRuntimeError(
        f"{function}() expects {expected}, got {type_name(value)} {_preview(value)}"
    )


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def is_number(value: object) -> bool:
    return value.__class__ is int or value.__class__ is float


def as_number(function: str, value: object) -> int | float:
    if value.__class__ is int or value.__class__ is float:
        return value
    raise type_error(function, "a number", value)


def as_text(function: str, value: object) -> str:
    if value.__class__ is str:
        return value
    raise type_error(function, "text", value)


def as_int(function: str, value: object) -> int:
    if value.__class__ is int:
        return value
    if value.__class__ is float and value.is_integer():
        return int(value)
    raise type_error(function, "a whole number", value)


def to_text(value: object) -> str:
    """SQL's text form of a value: what `||` and CAST(... AS TEXT) produce."""
    if value.__class__ is str:
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | dict):
        import orjson

        return orjson.dumps(value).decode()
    return str(value)
