"""The per-record evaluators the compiler builds, one builder per kind of node."""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

from streams.core.errors import ExpressionRuntimeError
from streams.expressions import functions as fn
from streams.expressions.casts import NUMBERS, aware, parse_timestamp
from streams.expressions.expression import Evaluator, Record
from streams.expressions.values import (
    MAX_INT_BITS,
    as_number,
    as_text,
    int_too_large,
    to_text,
    type_name,
)

# --- closures --------------------------------------------------------------------------
# Each builder returns a closure over already-compiled children. They are written out (not
# generic) because they run once per record: every avoided call or allocation counts.


def _field_getter(path: list[str]) -> Evaluator:
    if len(path) == 1:
        name = path[0]

        def get(record: Record) -> Any:
            return record.get(name)

        return get
    head, *rest = path

    def get_nested(record: Record) -> Any:
        value = record.get(head)
        for part in rest:
            if value.__class__ is not dict:
                return None
            value = value.get(part)
        return value

    return get_nested


def _truth(value: object, source: str) -> bool | None:
    if value is True or value is False or value is None:
        return value
    raise ExpressionRuntimeError(
        f"expected true/false in {source!r}, got {type_name(value)} {value!r}"
    )


def _and(operands: list[Evaluator], source: str) -> Evaluator:
    def evaluate_and(record: Record) -> bool | None:
        unknown = False
        for operand in operands:
            value = operand(record)
            if value is False:
                return False
            if value is None:
                unknown = True
            elif value is not True:
                _truth(value, source)
        return None if unknown else True

    return evaluate_and


def _or(operands: list[Evaluator], source: str) -> Evaluator:
    def evaluate_or(record: Record) -> bool | None:
        unknown = False
        for operand in operands:
            value = operand(record)
            if value is True:
                return True
            if value is None:
                unknown = True
            elif value is not False:
                _truth(value, source)
        return None if unknown else False

    return evaluate_or


def _not(operand: Evaluator, source: str) -> Evaluator:
    def evaluate_not(record: Record) -> bool | None:
        value = operand(record)
        if value is True:
            return False
        if value is False:
            return True
        return _truth(value, source)

    return evaluate_not


def compare_mixed(symbol: str, op: Callable[[Any, Any], bool], left: object, right: object) -> bool:
    """Compare values whose types differ; a timestamp and ISO-8601 text compare as times."""
    if isinstance(left, datetime) and isinstance(right, str):
        parsed = parse_timestamp(right)
        if parsed is not None:
            return op(aware(left), parsed)
    if isinstance(right, datetime) and isinstance(left, str):
        parsed = parse_timestamp(left)
        if parsed is not None:
            return op(parsed, aware(right))
    if isinstance(left, datetime) and isinstance(right, datetime):
        return op(aware(left), aware(right))
    raise ExpressionRuntimeError(
        f"cannot compare {type_name(left)} {left!r} with {type_name(right)} {right!r} "
        f"using {symbol}"
    )


def _compare(
    left: Evaluator, right: Evaluator, symbol: str, op: Callable[[Any, Any], bool]
) -> Evaluator:
    def evaluate_compare(record: Record) -> bool | None:
        a = left(record)
        if a is None:
            return None
        b = right(record)
        if b is None:
            return None
        if (a.__class__ is str) is not (b.__class__ is str):
            return compare_mixed(symbol, op, a, b)
        try:
            return op(a, b)
        except TypeError:
            return compare_mixed(symbol, op, a, b)

    return evaluate_compare


def _compare_constant(
    left: Evaluator, constant: object, symbol: str, op: Callable[[Any, Any], bool]
) -> Evaluator:
    if constant is None:
        return lambda _record: None
    constant_is_text = constant.__class__ is str

    def evaluate_compare_constant(record: Record) -> bool | None:
        a = left(record)
        if a is None:
            return None
        if (a.__class__ is str) is not constant_is_text:
            return compare_mixed(symbol, op, a, constant)
        try:
            return op(a, constant)
        except TypeError:
            return compare_mixed(symbol, op, a, constant)

    return evaluate_compare_constant


def _arithmetic(left: Evaluator, right: Evaluator, symbol: str) -> Evaluator:
    def numbers(a: object, b: object) -> None:
        bad = b if a.__class__ in _NUMBERS else a
        raise ExpressionRuntimeError(
            f"arithmetic '{symbol}' needs numbers, got {type_name(bad)} {bad!r}"
        )

    if symbol == "+":

        def add(record: Record) -> Any:
            a = left(record)
            b = right(record)
            if a is None or b is None:
                return None
            if a.__class__ not in _NUMBERS or b.__class__ not in _NUMBERS:
                numbers(a, b)
            return a + b

        return add
    if symbol == "-":

        def subtract(record: Record) -> Any:
            a = left(record)
            b = right(record)
            if a is None or b is None:
                return None
            if a.__class__ not in _NUMBERS or b.__class__ not in _NUMBERS:
                numbers(a, b)
            return a - b

        return subtract
    if symbol == "*":

        def multiply(record: Record) -> Any:
            a = left(record)
            b = right(record)
            if a is None or b is None:
                return None
            if a.__class__ not in _NUMBERS or b.__class__ not in _NUMBERS:
                numbers(a, b)
            product = a * b
            if product.__class__ is int and not -_INT_LIMIT < product < _INT_LIMIT:
                raise int_too_large("'*'")
            return product

        return multiply

    def divide(record: Record) -> Any:
        a = left(record)
        b = right(record)
        if a is None or b is None:
            return None
        if a.__class__ not in _NUMBERS or b.__class__ not in _NUMBERS:
            numbers(a, b)
        if b == 0:
            return None  # SQLite and MySQL: division by zero is NULL
        return a / b

    return divide


_NUMBERS: Final = NUMBERS
_INT_LIMIT: Final = 1 << MAX_INT_BITS  # products stay exact, and below this


def _negate(operand: Evaluator) -> Evaluator:
    def evaluate_negate(record: Record) -> Any:
        value = operand(record)
        if value is None:
            return None
        return -as_number("negation", value)

    return evaluate_negate


def _concat_pipe(left: Evaluator, right: Evaluator) -> Evaluator:
    def evaluate_concat(record: Record) -> str | None:
        a = left(record)
        b = right(record)
        if a is None or b is None:
            return None
        return to_text(a) + to_text(b)

    return evaluate_concat


def _in_constants(needle: Evaluator, values: list[object]) -> Evaluator:
    has_null = any(v is None for v in values)
    present = [v for v in values if v is not None]
    text_options = all(v.__class__ is str for v in present)
    number_options = all(v.__class__ in _NUMBERS or isinstance(v, bool) for v in present)
    try:
        lookup: frozenset[object] | list[object] = frozenset(present)
    except TypeError:
        lookup = present

    def evaluate_in(record: Record) -> bool | None:
        value = needle(record)
        if value is None:
            return None
        if (text_options and value.__class__ is not str) or (
            number_options and value.__class__ is str
        ):
            raise ExpressionRuntimeError(
                f"IN compares {type_name(value)} {value!r} with a list of "
                f"{'text' if text_options else 'numbers'}"
            )
        try:
            if value in lookup:
                return True
        except TypeError:  # unhashable value (a list or object) never equals a constant
            pass
        return None if has_null else False

    return evaluate_in


def _in_dynamic(needle: Evaluator, options: list[Evaluator]) -> Evaluator:
    def evaluate_in(record: Record) -> bool | None:
        value = needle(record)
        if value is None:
            return None
        unknown = False
        for option in options:
            candidate = option(record)
            if candidate is None:
                unknown = True
            elif _compare_values("IN", operator.eq, value, candidate):
                return True
        return None if unknown else False

    return evaluate_in


def _compare_values(symbol: str, op: Callable[[Any, Any], bool], a: object, b: object) -> bool:
    if (a.__class__ is str) is not (b.__class__ is str):
        return compare_mixed(symbol, op, a, b)
    return op(a, b)


def _like_regex(pattern: str, escape: str | None, insensitive: bool) -> fn.Regex:
    """A LIKE pattern as an RE2 regex (linear-time matching, whatever the pattern)."""
    parts: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if escape is not None and char == escape:
            parts.append(fn.escape_regex(next(chars, "")))
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(fn.escape_regex(char))
    try:
        return fn.compile_regex("".join(parts), ignore_case=insensitive, dot_all=True)
    except fn.RegexError as exc:  # a pattern too large for RE2's memory budget
        raise ExpressionRuntimeError(f"LIKE pattern: {exc}") from None


def _like(
    value: Evaluator, regex_of: Callable[[Record], fn.Regex | None], negate: bool
) -> Evaluator:
    def evaluate_like(record: Record) -> bool | None:
        text = value(record)
        if text is None:
            return None
        regex = regex_of(record)
        if regex is None:
            return None
        matched = regex.fullmatch(as_text("LIKE", text)) is not None
        return not matched if negate else matched

    return evaluate_like


def _case(
    subject: Evaluator | None,
    branches: list[tuple[Evaluator, Evaluator]],
    default: Evaluator | None,
) -> Evaluator:
    def evaluate_case(record: Record) -> Any:
        if subject is not None:
            target = subject(record)
            for when, then in branches:
                candidate = when(record)
                if (
                    target is not None
                    and candidate is not None
                    and _compare_values("CASE", operator.eq, target, candidate)
                ):
                    return then(record)
        else:
            for when, then in branches:
                condition = when(record)
                if condition is True:
                    return then(record)
                if condition is not False and condition is not None:
                    _truth(condition, "CASE WHEN")
        return default(record) if default is not None else None

    return evaluate_case


def _call(function: fn.SqlFunction, args: list[Evaluator]) -> Evaluator:
    impl = function.impl
    if function.nulls == "custom":
        return lambda record: impl(*[a(record) for a in args])
    if len(args) == 1:
        (only,) = args

        def call_one(record: Record) -> Any:
            value = only(record)
            return None if value is None else impl(value)

        return call_one

    def call(record: Record) -> Any:
        values = [a(record) for a in args]
        if None in values:
            return None
        return impl(*values)

    return call
