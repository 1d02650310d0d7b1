"""Durations (`500ms`, `10s`, `1m`, `2h`, `1d`) parsed to whole milliseconds: a value
format of the settings and pipeline files (models.durations re-exports it)."""

from __future__ import annotations

import math
import re

MAX_DURATION_MS = 100 * 365 * 86_400_000  # a century: longer is a typo, not a window
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")


def parse_duration_ms(value: object) -> int:
    """Milliseconds in `value`: a string such as `10m`, or a number of seconds.

    Raises ValueError with a message that shows the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError(
            f"invalid duration {value!r}: use a number with a unit, e.g. 500ms, 10s, 1m"
        )
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"invalid duration {value!r}: must be a finite number of seconds")
        if value < 0:
            raise ValueError(f"invalid duration {value!r}: must not be negative")
        return _bounded(value * 1000, value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return _bounded(float(match.group(1)) * _UNITS_MS[match.group(2)], value)
    raise ValueError(
        f"invalid duration {value!r}: use a number with a unit (ms, s, m, h, d), "
        "e.g. 500ms, 10s, 1m"
    )


def _bounded(ms: float, value: object) -> int:
    if ms > MAX_DURATION_MS:
        shown = repr(value) if len(str(value)[:40]) < 40 else "(a huge number)"
        raise ValueError(f"invalid duration {shown}: longer than 100 years")
    return round(ms)


def format_duration_ms(ms: int) -> str:
    """The shortest exact spelling of `ms`, e.g. 60000 -> `1m`."""
    for unit in ("d", "h", "m", "s"):
        size = _UNITS_MS[unit]
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
