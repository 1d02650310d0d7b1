"""Window (and running aggregate) keys: the key fields' values as state keeps them, and a
batch's keys at once for the batch path."""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from streams.core.errors import RecordError
from streams.core.jsonl import INT64_MIN, UINT64_MAX, state_problem
from streams.core.records import key_of
from streams.steps.window.protocol import ValueKinds

_KEY_CLASSES = frozenset({str, int, float, bool})
_TEXT = frozenset({str})


def key_value(value: Any) -> Any:
    """A key field's value as the state keeps it (to name the key in results): only what
    a changelog holds exactly."""
    cls = value.__class__
    if cls is str or cls is bool or cls is float:
        return value
    if cls is int and INT64_MIN <= value <= UINT64_MAX:
        return value
    problem = (
        "an integer beyond 64 bits"
        if isinstance(value, int) and not isinstance(value, bool)
        else state_problem(value)
    )
    if problem is not None:
        raise RecordError(
            f"window key value is {problem}, which window state cannot hold exactly; "
            "CAST it to TEXT in a map before the window",
            "key",
        )
    return value


def column(values: list[Any], field: str, objects: bool) -> list[Any]:
    """Each record's `field` (null when missing); `objects`: every record is a dict."""
    if objects:
        try:
            return list(map(itemgetter(field), values))
        except KeyError:
            return [value.get(field) for value in values]
    return [value.get(field) if isinstance(value, dict) else None for value in values]


def batch_keys(
    values: list[dict[str, Any]], key_fields: Sequence[str] | None
) -> list[str | None] | None:
    """Each record's key (None: a key field missing or null), or None when some key value
    is one `key_value` would refuse or whose text is JSON (the batch goes one by one)."""
    if key_fields is None:
        return [""] * len(values)
    for field in key_fields:
        keys = column(values, field, True)
        kinds = ValueKinds.of(keys)
        if not (kinds.only(_KEY_CLASSES) and kinds.ints_within(INT64_MIN, UINT64_MAX)):
            return None
        if len(key_fields) == 1:
            return keys if kinds.only(_TEXT) else [key_of(v, key_fields) for v in values]
    return [key_of(v, key_fields) for v in values]
