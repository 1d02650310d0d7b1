"""The whitelisted SQL functions an expression may call, as plain Python functions.

Each function receives already-evaluated arguments. Unless a function is registered with
`nulls="custom"`, the compiler returns NULL (None) before calling it when any argument
is NULL, so implementations here only see non-null values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import re2

from streams.errors import ExpressionRuntimeError

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


# --- text ------------------------------------------------------------------------------


def sql_length(value: object) -> int:
    if isinstance(value, str | list | dict):
        return len(value)
    raise type_error("length", "text or a list", value)


def sql_lower(value: object) -> str:
    return as_text("lower", value).lower()


def sql_upper(value: object) -> str:
    return as_text("upper", value).upper()


def sql_trim(value: object, chars: object = None) -> str:
    return as_text("trim", value).strip(None if chars is None else as_text("trim", chars))


def sql_ltrim(value: object, chars: object = None) -> str:
    return as_text("ltrim", value).lstrip(None if chars is None else as_text("ltrim", chars))


def sql_rtrim(value: object, chars: object = None) -> str:
    return as_text("rtrim", value).rstrip(None if chars is None else as_text("rtrim", chars))


def sql_substr(value: object, start: object, length: object = None) -> str:
    """1-based like SQL; a start before 1 eats into the length, as in PostgreSQL."""
    text = as_text("substr", value)
    first = as_int("substr", start)
    if length is None:
        return text[max(first, 1) - 1 :]
    count = as_int("substr", length)
    if count < 0:
        raise ExpressionRuntimeError("substr() length must not be negative")
    end = first + count  # exclusive, 1-based
    begin = max(first, 1)
    return text[begin - 1 : max(end - 1, begin - 1)]


def sql_replace(value: object, old: object, new: object) -> str:
    text, before, after = (as_text("replace", v) for v in (value, old, new))
    if len(after) > len(before):
        grown = len(text) + text.count(before) * (len(after) - len(before))
        if grown > MAX_TEXT_LENGTH:
            raise text_too_long("replace", grown)
    return text.replace(before, after)


def sql_left(value: object, count: object) -> str:
    n = as_int("left", count)
    text = as_text("left", value)
    return text[:n]  # negative n: all but the last -n, as in PostgreSQL


def sql_right(value: object, count: object) -> str:
    n = as_int("right", count)
    text = as_text("right", value)
    if n <= 0:
        return text[-n:] if n < 0 else ""
    return text[-n:]


def sql_starts_with(value: object, prefix: object) -> bool:
    return as_text("starts_with", value).startswith(as_text("starts_with", prefix))


def sql_ends_with(value: object, suffix: object) -> bool:
    return as_text("ends_with", value).endswith(as_text("ends_with", suffix))


def sql_contains(value: object, part: object) -> bool:
    if isinstance(value, list):
        return part in value
    return as_text("contains", part) in as_text("contains", value)


def sql_strpos(value: object, part: object) -> int:
    return as_text("strpos", value).find(as_text("strpos", part)) + 1


def sql_concat(*values: object) -> str:
    """PostgreSQL's concat(): NULL arguments are skipped, unlike `||`."""
    return "".join(to_text(v) for v in values if v is not None)


def sql_concat_ws(separator: object, *values: object) -> str | None:
    if separator is None:
        return None
    return as_text("concat_ws", separator).join(to_text(v) for v in values if v is not None)


def sql_reverse(value: object) -> str:
    return as_text("reverse", value)[::-1]


def sql_repeat(value: object, times: object) -> str:
    text = as_text("repeat", value)
    count = max(as_int("repeat", times), 0)
    if len(text) * count > MAX_TEXT_LENGTH:
        raise text_too_long("repeat", len(text) * count)
    return text * count


def sql_split_part(value: object, delimiter: object, index: object) -> str:
    parts = as_text("split_part", value).split(as_text("split_part", delimiter))
    n = as_int("split_part", index)
    if n == 0:
        raise ExpressionRuntimeError("split_part() field position must not be 0")
    position = n - 1 if n > 0 else len(parts) + n
    return parts[position] if 0 <= position < len(parts) else ""


# Regular expressions are RE2's (google-re2): matching time is linear in the text, whatever
# the pattern, so no record can make one run for seconds (Python's `re` backtracks:
# '^(a+)+$' on 28 characters took 17 s). RE2 has no backreferences or lookaround.
Regex = Any  # re2._Regexp: the module ships no type information


class RegexError(ValueError):
    """RE2 cannot compile a pattern; the message says why."""


def compile_regex(pattern: str, *, ignore_case: bool = False, dot_all: bool = False) -> Regex:
    """Compile `pattern` with RE2, or raise RegexError with RE2's reason."""
    options = re2.Options()
    options.log_errors = False  # RE2 would print every error to stderr
    options.case_sensitive = not ignore_case
    options.dot_nl = dot_all
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid pattern"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", errors="replace")
        raise RegexError(str(reason)) from None


def escape_regex(text: str) -> str:
    return str(re2.escape(text))


def sql_regexp_like(value: object, regex: Regex) -> bool:
    """`regex` is compiled once, from the literal pattern, by the expression compiler."""
    return regex.search(as_text("regexp_like", value)) is not None


def sql_regexp_replace(value: object, regex: Regex, replacement: object) -> str:
    text = as_text("regexp_replace", value)
    new = as_text("regexp_replace", replacement)
    if len(text) + (len(text) + 1) * len(new) > MAX_TEXT_LENGTH:  # worst case: look
        grown = len(text) + len(regex.findall(text)) * len(new)
        if grown > MAX_TEXT_LENGTH:
            raise text_too_long("regexp_replace", grown)
    try:
        return str(regex.sub(new, text))
    except (re2.error, IndexError, ValueError) as exc:  # a bad group reference in it
        raise ExpressionRuntimeError(f"regexp_replace() replacement: {exc}") from None


# --- numbers ---------------------------------------------------------------------------


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


# --- registry --------------------------------------------------------------------------

NullHandling = Literal["propagate", "custom"]


@dataclass(frozen=True, slots=True)
class SqlFunction:
    name: str
    impl: Callable[..., Any]
    min_args: int
    max_args: int | None  # None: any number
    nulls: NullHandling = "propagate"


def _fn(
    name: str,
    impl: Callable[..., Any],
    min_args: int,
    max_args: int | None = -1,
    nulls: NullHandling = "propagate",
) -> SqlFunction:
    return SqlFunction(name, impl, min_args, min_args if max_args == -1 else max_args, nulls)


FUNCTIONS: dict[str, SqlFunction] = {
    f.name: f
    for f in (
        _fn("length", sql_length, 1),
        _fn("lower", sql_lower, 1),
        _fn("upper", sql_upper, 1),
        _fn("trim", sql_trim, 1, 2),
        _fn("ltrim", sql_ltrim, 1, 2),
        _fn("rtrim", sql_rtrim, 1, 2),
        _fn("substr", sql_substr, 2, 3),
        _fn("replace", sql_replace, 3),
        _fn("left", sql_left, 2),
        _fn("right", sql_right, 2),
        _fn("starts_with", sql_starts_with, 2),
        _fn("ends_with", sql_ends_with, 2),
        _fn("contains", sql_contains, 2),
        _fn("strpos", sql_strpos, 2),
        _fn("concat", sql_concat, 1, None, nulls="custom"),
        _fn("concat_ws", sql_concat_ws, 2, None, nulls="custom"),
        _fn("reverse", sql_reverse, 1),
        _fn("repeat", sql_repeat, 2),
        _fn("split_part", sql_split_part, 3),
        _fn("regexp_like", sql_regexp_like, 2),  # the pattern: a literal, compiled once
        _fn("regexp_replace", sql_regexp_replace, 3),
        _fn("abs", sql_abs, 1),
        _fn("round", sql_round, 1, 2),
        _fn("floor", sql_floor, 1),
        _fn("ceil", sql_ceil, 1),
        _fn("trunc", sql_trunc, 1),
        _fn("sqrt", sql_sqrt, 1),
        _fn("power", sql_power, 2),
        _fn("ln", sql_ln, 1),
        _fn("log", sql_log, 1, 2),
        _fn("exp", sql_exp, 1),
        _fn("sign", sql_sign, 1),
        _fn("mod", sql_mod, 2),
        _fn("greatest", sql_greatest, 1, None, nulls="custom"),
        _fn("least", sql_least, 1, None, nulls="custom"),
        _fn("coalesce", sql_coalesce, 1, None, nulls="custom"),
        _fn("nullif", sql_nullif, 2, nulls="custom"),
    )
}

# Names users type that sqlglot or other databases spell differently.
ALIASES = {
    "char_length": "length",
    "character_length": "length",
    "substring": "substr",
    "position": "strpos",
    "instr": "strpos",
    "ceiling": "ceil",
    "pow": "power",
    "truncate": "trunc",
    "ifnull": "coalesce",
    "nvl": "coalesce",
    "log10": "log",
}

# functions whose second argument is a regular expression: a literal, compiled at check
REGEX_FUNCTIONS = frozenset({"regexp_like", "regexp_replace"})
