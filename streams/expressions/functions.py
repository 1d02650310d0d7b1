"""The whitelisted SQL functions an expression may call, as plain Python functions.

Each function receives already-evaluated arguments. Unless a function is registered with
`nulls="custom"`, the compiler returns NULL (None) before calling it when any argument
is NULL, so implementations here only see non-null values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import re2

from streams.core.errors import ExpressionRuntimeError
from streams.expressions.numbers import (
    sql_abs,
    sql_ceil,
    sql_coalesce,
    sql_exp,
    sql_floor,
    sql_greatest,
    sql_least,
    sql_ln,
    sql_log,
    sql_mod,
    sql_nullif,
    sql_power,
    sql_round,
    sql_sign,
    sql_sqrt,
    sql_trunc,
)
from streams.expressions.values import (
    MAX_TEXT_LENGTH,
    as_int,
    as_text,
    text_too_long,
    to_text,
    type_error,
)

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
