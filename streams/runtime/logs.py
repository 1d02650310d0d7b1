"""Logging: one JSON object per line (ts, level, msg, pipeline, trace_id, and context
fields), or console text for humans (`--log-format console`).

`pipeline` comes from the log call's `extra` or from the task's current pipeline
(streams.tracing.current_pipeline); `trace_id` from `extra`, for lines about one record.
Any other `extra` field is written as is.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from models.settings import LogSettings
from streams.tracing import current_pipeline

# attributes every LogRecord has: anything else on a record came from `extra`
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "context",  # set by ConsoleFormatter
}
_FIRST = ("pipeline", "trace_id")


def context_fields(record: logging.LogRecord) -> dict[str, Any]:
    """pipeline and trace_id (None when unknown), then the call's other extra fields."""
    fields: dict[str, Any] = {
        "pipeline": getattr(record, "pipeline", None) or current_pipeline.get(),
        "trace_id": getattr(record, "trace_id", None),
    }
    for name, value in record.__dict__.items():
        if name not in _STANDARD and name not in _FIRST:
            fields[name] = value
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "msg": record.getMessage(),
            "logger": record.name,
            **context_fields(record),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    """`12:00:01.234 WARNING sluice.agents [payments-clean trace=4bf9…] message k=v`"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s%(context)s %(message)s")
        self.datefmt = "%H:%M:%S"

    def format(self, record: logging.LogRecord) -> str:
        fields = context_fields(record)
        pipeline, trace_id = fields.pop("pipeline"), fields.pop("trace_id")
        parts = [pipeline] if pipeline else []
        if trace_id:
            parts.append(f"trace={trace_id}")
        parts += [f"{k}={v}" for k, v in fields.items()]
        record.context = f" [{' '.join(parts)}]" if parts else ""
        return super().format(record)


def configure_logging(settings: LogSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter = (
        JsonFormatter() if settings.format == "json" else ConsoleFormatter()
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    # Faust and aiokafka are chatty at INFO; their warnings still show
    for noisy in ("faust", "mode", "aiokafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
