"""The numeric SQL functions (abs, round, power, log, greatest, coalesce …)."""

from __future__ import annotations

import math

from streams.core.errors import ExpressionRuntimeError
from streams.expressions.values import MAX_INT_BITS, as_int, as_number, int_too_large


def sql_abs(value: object) -> int | float:
    return abs(as_number("abs", value))


def sql_round(value: object, decimals: object = 0) -> int | float:
    """Half away from zero, as SQL rounds (Python's round() rounds half to even)."""
    number = as_number("round", value)
    places = as_int("round", decimals)
    if number.__class__ is int and places >= 0:
        return number
    scale = 10.0**places
    rounded = math.floor(abs(number) * scale + 0.5) / scale
    return math.copysign(rounded, number)


def sql_floor(value: object) -> int:
    return math.floor(as_number("floor", value))


def sql_ceil(value: object) -> int:
    return math.ceil(as_number("ceil", value))


def sql_trunc(value: object) -> int:
    return math.trunc(as_number("trunc", value))


def sql_sqrt(value: object) -> float:
    number = as_number("sqrt", value)
    if number < 0:
        raise ExpressionRuntimeError(f"sqrt() of a negative number ({number})")
    return math.sqrt(number)


def _power_too_large(a: int | float, b: int | float) -> bool:
    if isinstance(a, float) or isinstance(b, float) or b <= 0 or abs(a) <= 1:
        return False  # floats overflow to an error; these stay small
    return (abs(a).bit_length() - 1) * b > MAX_INT_BITS


def sql_power(base: object, exponent: object) -> int | float:
    a = as_number("power", base)
    b = as_number("power", exponent)
    if _power_too_large(a, b):  # checked before the work, which could take minutes
        raise int_too_large("power()")
    try:
        result = a**b
    except ZeroDivisionError:
        raise ExpressionRuntimeError("power() of zero to a negative exponent") from None
    if isinstance(result, complex):
        raise ExpressionRuntimeError(f"power({a}, {b}) is not a real number")
    return result


def _positive(function: str, value: object) -> float:
    number = as_number(function, value)
    if number <= 0:
        raise ExpressionRuntimeError(f"{function}() of a number that is not positive ({number})")
    return number


def sql_ln(value: object) -> float:
    return math.log(_positive("ln", value))


def sql_log(base_or_value: object, value: object = None) -> float:
    """log(x) is base 10 as in PostgreSQL; log(b, x) is base b."""
    if value is None:
        return math.log10(_positive("log", base_or_value))
    base = _positive("log", base_or_value)
    if base == 1:
        raise ExpressionRuntimeError("log() base must not be 1")
    return math.log(_positive("log", value), base)


def sql_exp(value: object) -> float:
    try:
        return math.exp(as_number("exp", value))
    except OverflowError:
        raise ExpressionRuntimeError("exp() overflowed") from None


def sql_sign(value: object) -> int:
    number = as_number("sign", value)
    return (number > 0) - (number < 0)


def sql_mod(dividend: object, divisor: object) -> int | float | None:
    """The remainder with the dividend's sign (SQL/C semantics); NULL when dividing by 0."""
    a = as_number("mod", dividend)
    b = as_number("mod", divisor)
    if b == 0:
        return None
    if a.__class__ is int and b.__class__ is int:
        remainder = abs(a) % abs(b)
        return -remainder if a < 0 else remainder
    return math.fmod(a, b)


def _comparable_values(function: str, values: tuple[object, ...]) -> list[object]:
    present = [v for v in values if v is not None]
    kinds = {str if v.__class__ is str else float for v in present}
    if len(kinds) > 1:
        raise ExpressionRuntimeError(f"{function}() cannot compare text with numbers")
    return present


def sql_greatest(*values: object) -> object:
    """NULLs are skipped, as in PostgreSQL; NULL only when every argument is NULL."""
    present = _comparable_values("greatest", values)
    return max(present) if present else None  # type: ignore[type-var]


def sql_least(*values: object) -> object:
    present = _comparable_values("least", values)
    return min(present) if present else None  # type: ignore[type-var]


def sql_coalesce(*values: object) -> object:
    for value in values:
        if value is not None:
            return value
    return None


def sql_nullif(value: object, other: object) -> object:
    if value is None:
        return None
    if other is not None and value == other:
        return None
    return value
