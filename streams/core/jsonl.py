"""JSON at sluice's edges: decoding messages, encoding outputs, and what state may hold.

orjson does the work, with three gaps that a hostile record can reach:

- it decodes an integer beyond 64 bits as a float (`18446744073709551616` becomes
  `1.8446744073709552e+19`) and refuses to encode one;
- it decodes values nested up to 1,024 levels but encodes only up to 254;
- it refuses text holding lone surrogates.

`loads` sends the rare message whose bytes hold a digit run long enough to be such an
integer to the stdlib parser instead (exact ints); `dumps` falls back to an iterative
encoder for whatever orjson refuses. The fast paths stay orjson's: the digit-run test costs
~0.3 µs on a 200-byte message (orjson.loads of it: ~0.6 µs), and `dumps` pays nothing
until orjson raises.

State is stricter (`state_problem`): a worker's changelog is written with plain orjson, so
state holds only what orjson encodes exactly: JSON types, integers within 64 bits.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from itertools import repeat
from typing import Any

import orjson

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
# state: what a changelog (orjson) writes and reads back unchanged. Datetimes, str and
# int subclasses and non-text keys would come back as something else, so they are refused
STATE_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS
# digits (and '-') become '0': a run of 20 means an integer literal orjson may not hold
_DIGITS = bytes.maketrans(b"123456789-", b"0000000000")
_LONG_DIGIT_RUN = b"0" * 20
INT64_MIN = -(2**63)
UINT64_MAX = 2**64 - 1
MAX_DEPTH = 2048  # decoded records are at most 1,024 deep (orjson's limit)


def may_need_exact(data: bytes) -> bool:
    """Whether `data` holds a digit run long enough for an integer orjson would not keep
    exact. Messages joined with b"\n" are tested at once (a run cannot cross the line
    break): when none does, `orjson.loads` of each is what `loads` would give. One test
    of a 1,000-message batch costs about what ten `loads` prechecks do."""
    return _LONG_DIGIT_RUN in data.translate(_DIGITS)


def loads(raw: bytes | str) -> Any:
    """Decode one JSON document; integers of any size stay exact.

    Raises ValueError (orjson.JSONDecodeError is one) for anything that is not JSON,
    including NaN/Infinity, numbers that overflow a float, invalid UTF-8 and lone
    surrogates — the same documents orjson refuses.
    """
    data = raw.encode() if isinstance(raw, str) else raw
    if _LONG_DIGIT_RUN in data.translate(_DIGITS):
        return _exact_loads(data)
    return orjson.loads(data)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text[:40]} is too large for a float")
    return number


def _exact_loads(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    _reject_surrogates(value)
    return value


def _reject_surrogates(value: Any) -> None:
    # orjson refuses lone surrogates (they are not UTF-8); so must this path
    stack = [value]
    while stack:
        item = stack.pop()
        if item.__class__ is str:
            _encodable(item)
        elif item.__class__ is dict:
            for key, child in item.items():
                _encodable(key)
                stack.append(child)
        elif item.__class__ is list:
            stack.extend(item)


def _encodable(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text holds a lone surrogate (not UTF-8)") from None


# --- encoding --------------------------------------------------------------------------


def _fallback(value: Any) -> Any:
    # sets and tuples become lists; Decimals and other objects that a validating model
    # may produce, their text
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def dumps(value: Any) -> bytes:
    """A record as compact JSON bytes (datetimes as ISO-8601, UTC as Z). Never raises for
    a decoded record, however deep or big its numbers."""
    try:
        return orjson.dumps(value, default=_fallback, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return _slow_dumps(value, _fallback)


def dumps_lines(values: list[Any]) -> bytes:
    """Values as JSON Lines (each line `dumps` of it, then a line break): one C-level
    `map` of orjson over the values while none needs `dumps`'s fallback."""
    try:
        count = len(values)  # orjson.dumps(value, default, option), positionally
        lines = list(map(orjson.dumps, values, repeat(_fallback, count), repeat(_OPTIONS, count)))
    except orjson.JSONEncodeError:
        lines = [dumps(value) for value in values]
    lines.append(b"")
    return b"\n".join(lines)


def strict_dumps(value: Any) -> bytes:
    """Like `dumps`, but a value JSON cannot represent (a set, an arbitrary object) raises
    TypeError naming where it is, instead of becoming text."""
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return _slow_dumps(value, None)


def _slow_dumps(value: Any, fallback: Callable[[Any], Any] | None) -> bytes:
    """An iterative encoder for what orjson refuses: integers beyond 64 bits, nesting
    deeper than 254 levels, lone surrogates. Leaves go through orjson where it can."""
    parts: list[str] = []
    # each entry: (is a literal piece of output, the piece or a value, its path, depth)
    stack: list[tuple[bool, Any, str, int]] = [(False, value, "", 0)]
    while stack:
        literal, item, where, depth = stack.pop()
        if literal:
            parts.append(item)
            continue
        if depth > MAX_DEPTH:  # a cycle, or deeper than any decoded record
            raise TypeError(f"value nested deeper than {MAX_DEPTH} levels (a cycle?)")
        if isinstance(item, dict):
            parts.append("{")
            entries = list(item.items())
            stack.append((True, "}", where, depth))
            for index in range(len(entries) - 1, -1, -1):
                key, child = entries[index]
                stack.append((False, child, _child(where, f".{key}"), depth + 1))
                stack.append((True, _key_text(key) + ":", where, depth))
                if index:
                    stack.append((True, ",", where, depth))
        elif isinstance(item, list | tuple):
            parts.append("[")
            stack.append((True, "]", where, depth))
            for index in range(len(item) - 1, -1, -1):
                stack.append((False, item[index], _child(where, f"[{index}]"), depth + 1))
                if index:
                    stack.append((True, ",", where, depth))
        else:
            leaf = _leaf_text(item, where, fallback)
            if leaf is None:  # the fallback made a container (a set's list): encode it
                stack.append((False, fallback(item) if fallback else None, where, depth))
            else:
                parts.append(leaf)
    return "".join(parts).encode()


def _leaf_text(item: Any, where: str, fallback: Callable[[Any], Any] | None) -> str | None:
    if item.__class__ is int or (isinstance(item, int) and not isinstance(item, bool)):
        if INT64_MIN <= item <= UINT64_MAX:
            return str(int(item))
        try:
            return str(int(item))
        except ValueError:  # more digits than Python converts to text
            raise TypeError(f"integer at {_place(where)} has too many digits") from None
    if item.__class__ is float and not math.isfinite(item):
        return "null"  # as orjson writes NaN and infinities
    if isinstance(item, str):
        try:
            return orjson.dumps(item).decode()
        except orjson.JSONEncodeError:
            return json.dumps(item)  # \u-escapes the lone surrogates
    try:
        return orjson.dumps(item, option=_OPTIONS).decode()
    except orjson.JSONEncodeError:
        if fallback is None:
            raise TypeError(f"{type(item).__name__} at {_place(where)} is not JSON") from None
        converted = fallback(item)
        if isinstance(converted, list | dict | tuple | set):
            return None
        return _leaf_text(converted, where, None)


def _child(where: str, part: str) -> str:
    # paths only name a place in messages: past 80 characters they stop growing, so a
    # deep value costs linear, not quadratic, time
    if len(where) > 80:
        return where
    return where + part if where else part.removeprefix(".")


def _place(where: str) -> str:
    if not where:
        return "top level"
    return repr(where if len(where) <= 60 else where[:57] + "...")


def _key_text(key: Any) -> str:
    if key.__class__ is str:
        try:
            return orjson.dumps(key).decode()
        except orjson.JSONEncodeError:
            return json.dumps(key)
    if isinstance(key, int) and not isinstance(key, bool):
        return f'"{key}"'
    try:  # orjson's text for a non-str key: {key: null} without the braces and value
        return orjson.dumps({key: None}, option=_OPTIONS).decode()[1:-6]
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(str(key))


# --- state -----------------------------------------------------------------------------


def state_problem(value: Any) -> str | None:
    """None when `value` can be state (what orjson writes to a changelog and reads back
    unchanged: JSON types, integers within 64 bits); else what is wrong and where, e.g.
    "set at key 'x'"."""
    try:
        orjson.dumps(value, option=STATE_OPTIONS)
    except orjson.JSONEncodeError:
        return _find_problem(value)
    return None


def _find_problem(value: Any) -> str:
    stack: list[tuple[Any, str]] = [(value, "")]
    depth_of: dict[int, int] = {}
    while stack:
        item, where = stack.pop()
        at = f" at key {where!r}" if where else ""
        cls = item.__class__
        if cls is dict:
            depth = depth_of.get(id(item), 0)
            if depth > 250:
                return f"nested deeper than 250 levels{at}"
            for key, child in item.items():
                if key.__class__ is not str:
                    return f"key {key!r} is not text{at}"
                path = _child(where, f".{key}")
                if isinstance(child, dict | list):
                    depth_of[id(child)] = depth + 1
                stack.append((child, path))
        elif cls is list:
            depth = depth_of.get(id(item), 0)
            if depth > 250:
                return f"nested deeper than 250 levels{at}"
            for index, child in enumerate(item):
                if isinstance(child, dict | list):
                    depth_of[id(child)] = depth + 1
                stack.append((child, _child(where, f"[{index}]")))
        elif cls is int:
            if not INT64_MIN <= item <= UINT64_MAX:
                return f"integer beyond 64 bits{at}"
        elif cls is str:
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return f"text with a lone surrogate{at}"
        elif item is None or cls is bool or cls is float:
            continue
        else:
            return f"{type(item).__name__}{at}"
    return "not JSON"  # orjson refused it for a reason not found above


def text_of(raw: bytes) -> str:
    """Message bytes as text for a JSON field, without losing bytes that are not UTF-8."""
    return raw.decode("utf-8", errors="backslashreplace")


def json_type(value: object) -> str:
    """How an error message names a JSON value's type: "a number", "an array", …."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    return type(value).__name__
