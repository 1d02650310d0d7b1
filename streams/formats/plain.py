"""Values decoded from Avro or Protobuf as the plain records steps see (and JSON can hold).

The contract (DESIGN.md, "Record formats"): timestamps become ISO-8601 UTC strings
(`2026-11-25T10:00:00.000Z`, as window results write them, so `source.timestamp` reads them);
dates `YYYY-MM-DD`, times `HH:MM:SS[.ffffff]`; decimals stay exact (`decimal.Decimal`; JSON
outputs write their text); bytes become base64 text; UUIDs their text.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


# Avro logical types whose values become plain JSON text or numbers (times, dates, UUIDs)
PLAIN_LOGICAL_TYPES = frozenset(
    {
        "timestamp-millis",
        "timestamp-micros",
        "local-timestamp-millis",
        "local-timestamp-micros",
        "date",
        "time-millis",
        "time-micros",
        "uuid",
    }
)


def iso_utc(value: dt.datetime) -> str:
    """`2026-11-25T10:00:00.000Z` (microseconds kept when there are any below the ms)."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    if value.microsecond % 1000:
        return value.isoformat(timespec="microseconds") + "Z"
    return value.isoformat(timespec="milliseconds") + "Z"


def plain(value: Any) -> Any:
    """`value` with every datetime, date, time, bytes and UUID in it as text."""
    kind = value.__class__
    if kind is dict:
        return {k: plain(v) for k, v in value.items()}
    if kind is list:
        return [plain(v) for v in value]
    if kind is dt.datetime:
        return iso_utc(value)
    if kind is dt.date or kind is dt.time:
        return value.isoformat()
    if kind is bytes:
        return base64.b64encode(value).decode()
    if kind is uuid.UUID:
        return str(value)
    return value


def parse_iso_utc(text: str) -> dt.datetime:
    """The inverse of `iso_utc` (any ISO-8601; naive means UTC)."""
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def epoch_datetime(millis: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=millis)


__all__ = ["Decimal", "epoch_datetime", "iso_utc", "parse_iso_utc", "plain"]
