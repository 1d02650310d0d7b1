"""Event time: what a record's time field means, and how a time is written.

An event time is epoch milliseconds, read from epoch seconds, epoch milliseconds (>= 1e11)
or ISO-8601 text (`event_time_ms`); written as ISO-8601 UTC with milliseconds (`iso_ms`,
as window bounds and alert times are). Both are total: any input gives a time or a
`timestamp` RecordError, any time gives text. The pipeline (decoding) and the steps
(windows, alerts) share them, so they live apart from both.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from models.durations import format_duration_ms
from streams.core.errors import RecordError
from streams.core.jsonl import json_type

_EPOCH_MS_THRESHOLD = 100_000_000_000  # 1e11: below are epoch seconds, above milliseconds


def second_ms(text: str) -> int | None:
    """Epoch ms of `YYYY-MM-DDTHH:MM:SS` (UTC), None for any other text."""
    if not (text[4] == text[7] == "-" and text[10] == "T" and text[13] == text[16] == ":"):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return _epoch_ms(moment.replace(tzinfo=UTC)) if moment.tzinfo is None else None


def out_of_range(epoch_ms: int, field: str | None, skew_ms: int) -> RecordError:
    what = f"event time {field!r}" if field is not None else "the message timestamp"
    # beyond ±3 million years the date says nothing a reader can use
    if abs(epoch_ms) < 10**17:
        when = iso_ms(epoch_ms)
    else:
        when = f"{'-' if epoch_ms < 0 else ''}10^{len(str(abs(epoch_ms))) - 1} ms after 1970"
    if epoch_ms < 0:
        return RecordError(f"{what} is {when}, before 1970-01-01", "timestamp")
    return RecordError(
        f"{what} is {when}, more than {format_duration_ms(skew_ms)} ahead of the "
        "clock (processing.max_event_time_skew)",
        "timestamp",
    )


def event_time_ms(value: object, field: str) -> int:
    """An event time as epoch milliseconds: epoch seconds, epoch ms (>= 1e11) or ISO-8601.

    Total: any input gives an int or a `timestamp` RecordError (never an OverflowError);
    the range check against the clock is the pipeline's.
    """
    if value is None:
        raise RecordError(f"event time field {field!r} is missing or null", "timestamp")
    if value.__class__ is int or (isinstance(value, int) and not isinstance(value, bool)):
        # ints stay ints: float() of a big one overflows, or rounds
        number = int(value)
        return number if abs(number) >= _EPOCH_MS_THRESHOLD else number * 1000
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RecordError(f"event time {field!r} is not a finite number", "timestamp")
        return int(value) if abs(value) >= _EPOCH_MS_THRESHOLD else int(value * 1000)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return _epoch_ms(parsed)
        except (ValueError, OverflowError):
            raise RecordError(
                f"event time {field!r} is {value[:60]!r}: expected epoch seconds, epoch ms "
                "or ISO-8601 such as 2026-11-25T10:00:00Z",
                "timestamp",
            ) from None
    raise RecordError(
        f"event time {field!r} is {json_type(value)}: expected a number or ISO-8601 text",
        "timestamp",
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def _epoch_ms(moment: datetime) -> int:
    # exact integer arithmetic: timestamp() goes through a float
    return (moment - _EPOCH) // _MS


# the Gregorian calendar repeats every 400 years (146,097 days)
_CYCLE_MS = 146_097 * 86_400_000
_LOWEST_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z, datetime's first instant
_HIGHEST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, its last


def iso_ms(epoch_ms: int) -> str:
    """Epoch milliseconds as ISO-8601 UTC with milliseconds: 2026-11-25T10:01:00.000Z.

    Total: a time outside years 1-9999 uses ISO-8601's expanded years (+10000-01-01…,
    -0001-…), so formatting a time can never raise.
    """
    years = 0
    if not _LOWEST_MS <= epoch_ms <= _HIGHEST_MS:
        cycles = epoch_ms // _CYCLE_MS  # shift into 1970-2369, then name the real year
        epoch_ms -= cycles * _CYCLE_MS
        years = cycles * 400
    moment = _EPOCH + timedelta(milliseconds=epoch_ms)
    year = moment.year + years
    text = f"{year:04d}" if 0 < year <= 9999 else f"{year:+05d}"
    return f"{text}-{moment:%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"
