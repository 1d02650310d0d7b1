"""JSON encoding of output records, shared by replay and the Kafka producer side."""

from __future__ import annotations

from typing import Any

import orjson

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _fallback(value: Any) -> Any:
    # sets, Decimals and user objects a component may return: text rather than a crash
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def dumps(value: Any) -> bytes:
    """A record as compact JSON bytes (datetimes as ISO-8601, UTC as Z)."""
    return orjson.dumps(value, default=_fallback, option=_OPTIONS)


def text_of(raw: bytes) -> str:
    """Message bytes as text for a JSON field, without losing bytes that are not UTF-8."""
    return raw.decode("utf-8", errors="backslashreplace")
