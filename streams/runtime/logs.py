"""Logging: one JSON object per line in the product spec's shape, or console text for
humans (`--log-format console`).

A JSON line has exactly six keys, on every line the process writes, sluice's own and its
libraries' (aiokafka, asyncio, aiohttp, …) alike:

    {"timestamp": "2026-11-27T09:25:12.502Z", "level": "WARNING",
     "component": "sluice.pipeline", "trace_id": "4bf9…", "message": "dead letter at …",
     "metadata": {"pipeline": "payments-clean", "step": "validate", …}}

`component` is the logger's name; `trace_id` comes from the call's `extra` (lines about
one record) and is null otherwise; `metadata` holds every other context field: the
pipeline (from `extra`, else the task's current pipeline, streams.core.tracing.current_pipeline,
left out when neither knows it), the call's other `extra` fields, and `exception` (the
traceback) when the line carries one. Log collectors (Loki, Elasticsearch, Cloud Logging)
can then index six fixed fields and treat `metadata` as a free-form object.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from types import TracebackType
from typing import Any

import orjson

from models.settings import LogSettings
from streams.core.tracing import current_pipeline

# attributes every LogRecord has: anything else on a record came from `extra`
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "context",  # set by ConsoleFormatter
}
_FIRST = ("pipeline", "trace_id")
_LEVELS = (
    (logging.CRITICAL, "CRITICAL"),
    (logging.ERROR, "ERROR"),
    (logging.WARNING, "WARNING"),
    (logging.INFO, "INFO"),
)
_OPTIONS = orjson.OPT_NON_STR_KEYS

uncaught = logging.getLogger("sluice.uncaught")


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


def level_name(levelno: int) -> str:
    """The standard name at or below `levelno`: a library's custom level (mode's, say, or
    `Level 25`) still lands on a name a collector's level filter knows."""
    for number, name in _LEVELS:
        if levelno >= number:
            return name
    return "DEBUG"


def utc_timestamp(created: float) -> str:
    """`2026-11-27T09:25:12.502Z`: ISO-8601 UTC with milliseconds, as DESIGN.md fixes."""
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{millis:03d}Z"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = context_fields(record)
        trace_id = fields.pop("trace_id")
        if fields["pipeline"] is None:
            del fields["pipeline"]
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            fields["exception"] = record.exc_text
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        try:
            message = record.getMessage()
        except Exception as exc:  # bad %-arguments: still one JSON line, not logging's
            # "--- Logging error ---" block of plain text on stderr
            message = str(record.msg)
            fields["format_error"] = f"{type(exc).__name__}: {exc}; args {record.args!r}"
        entry = {
            "timestamp": utc_timestamp(record.created),
            "level": level_name(record.levelno),
            "component": record.name,
            "trace_id": None if trace_id is None else str(trace_id),
            "message": message,
            "metadata": fields,
        }
        try:
            return orjson.dumps(entry, default=str, option=_OPTIONS).decode()
        except TypeError:  # what `default` cannot help with: an int beyond 64 bits
            entry["metadata"] = {name: _encodable(value) for name, value in fields.items()}
            return orjson.dumps(entry, default=str, option=_OPTIONS).decode()


def _encodable(value: Any) -> Any:
    try:
        orjson.dumps(value, default=str, option=_OPTIONS)
    except TypeError:
        return str(value)
    return value


class ConsoleFormatter(logging.Formatter):
    """`12:00:01.234 WARNING sluice.pipeline [payments-clean trace=4bf9…] message k=v`"""

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
    """One handler on the root logger, so every library's lines take the same format.

    In JSON mode the other ways Python writes plain text to stderr are routed through
    logging as well: warnings (`warnings.warn`), uncaught exceptions in the main thread
    and in other threads, and unraisable ones (in `__del__`, at shutdown). asyncio's
    "Task exception was never retrieved" already goes through the `asyncio` logger. In
    console mode Python's own tracebacks are what a person at a terminal expects.
    """
    handler = logging.StreamHandler(sys.stderr)
    json_mode = settings.format == "json"
    handler.setFormatter(JsonFormatter() if json_mode else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    # aiokafka is chatty at INFO (every rebalance step); its warnings still show
    for noisy in ("aiokafka",):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # off first: turning it on is a no-op while logging believes it is on, even when
    # warnings.showwarning was replaced since (a second configuration in one process)
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    if json_mode:
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_thread_exception
        sys.unraisablehook = _log_unraisable


def _log_uncaught(
    kind: type[BaseException], exc: BaseException, traceback: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):  # Ctrl-C at an unguarded moment: no traceback
        uncaught.warning("interrupted (KeyboardInterrupt)")
        return
    uncaught.critical("uncaught %s: %s", kind.__name__, exc, exc_info=(kind, exc, traceback))


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:  # as threading's own hook: a thread's quiet exit
        return
    thread = args.thread.name if args.thread is not None else "?"
    uncaught.error(
        "uncaught %s in thread %s: %s",
        args.exc_type.__name__,
        thread,
        args.exc_value,
        exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
        extra={"thread_name": thread},
    )


def _log_unraisable(args: Any) -> None:  # sys.UnraisableHookArgs: not a public type
    what = args.err_msg or "Exception ignored in"
    exc_info = (args.exc_type, args.exc_value, args.exc_traceback) if args.exc_value else None
    uncaught.warning("%s: %r", what, args.object, exc_info=exc_info)
