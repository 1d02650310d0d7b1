"""Record envelopes: the shapes records take at sluice's boundaries.

Inside the engine records are slotted `streams.core.records.Event`s (cheap to make); these
models describe what leaves it: `sluice consume --envelope` lines, replay dead-letter
lines, window results and alerts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DEAD_LETTER_HEADERS = (
    "sluice.error.step",
    "sluice.error.type",
    "sluice.error.message",
    "sluice.source.topic",
    "sluice.source.partition",
    "sluice.source.offset",
)


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventEnvelope(_Envelope):
    """A message with its position, as `sluice consume --envelope` prints it."""

    topic: str
    partition: int
    offset: int
    key: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    value: Any
    timestamp_ms: int | None = Field(None, description="the event time, epoch milliseconds")


class DeadLetterError(_Envelope):
    step: str = Field(description="the step that rejected the record, or 'source'/'sink'")
    type: str = Field(description="invalid_json, oversize, timestamp, schema, expression, ...")
    message: str


class ReplayDeadLetter(_Envelope):
    """A line of the dead-letter file `sluice replay` writes. A payload that is not valid
    UTF-8 is stored base64, with `"payload_encoding": "base64"` (absent otherwise)."""

    error: DeadLetterError
    payload: str = Field(description="the original input line, unchanged")
    payload_encoding: Literal["base64"] | None = Field(
        None, description="base64 when the original bytes are not valid UTF-8"
    )


class WindowResult(BaseModel):
    """A window's result: the key field(s), the window bounds and the named aggregates
    (extra fields, named by the pipeline)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    window_start: str = Field(description="ISO-8601 UTC, e.g. 2026-11-25T10:01:00.000Z")
    window_end: str


class AlertEvent(BaseModel):
    """An alert transition. Key fields of the alert appear as extra fields."""

    model_config = ConfigDict(extra="allow", frozen=True)

    alert: str
    status: Literal["firing", "resolved"]
    severity: Literal["info", "warning", "critical"]
    since: str
    until: str | None = None
    value: dict[str, Any]
