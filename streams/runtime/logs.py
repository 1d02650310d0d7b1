"""Logging: one JSON object per line (ts, level, msg, pipeline, trace_id), or console text."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson

from models.settings import LogSettings


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "msg": record.getMessage(),
            "logger": record.name,
            "pipeline": getattr(record, "pipeline", None),
            "trace_id": getattr(record, "trace_id", None),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(settings: LogSettings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    # Faust and aiokafka are chatty at INFO; their warnings still show
    for noisy in ("faust", "mode", "aiokafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
