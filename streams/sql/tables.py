"""The two kinds of `CREATE TABLE … AS SELECT … GROUP BY`:

- `WindowedTable`: with `WINDOW TUMBLING|HOPPING|SESSION (…)`, a `window` step; results
  carry `window_start` and `window_end`; EMIT FINAL (the default) or EMIT CHANGES.
- `RunningTable`: without WINDOW, an `aggregate` step: running aggregates per key, an
  update per record (EMIT CHANGES; EMIT FINAL needs a window to close).
"""

from __future__ import annotations

from typing import Any

from models.durations import format_duration_ms
from streams.sql.grouped import WINDOW_BOUNDS, GroupedTable


class WindowedTable(GroupedTable):
    """`CREATE TABLE t AS SELECT … WINDOW … GROUP BY …`: a windowed aggregation."""

    def step(self) -> dict[str, Any]:
        window = self.statement.window
        assert window is not None
        document: dict[str, Any] = {"type": window.kind}
        for slot, duration in (
            ("size", window.size),
            ("hop", window.advance),
            ("gap", window.gap),
            ("grace", window.grace),
        ):
            if duration is not None:
                document[slot] = format_duration_ms(duration.ms)
        names = [k.name for k in self.keys]
        document["key"] = names if len(names) > 1 else names[0]
        document["emit"] = "updates" if self.statement.emit_mode == "CHANGES" else "final"
        document["aggregates"] = dict(self.aggregates)
        return {"window": document}

    def bounds(self) -> tuple[str, ...]:
        return WINDOW_BOUNDS


class RunningTable(GroupedTable):
    """`CREATE TABLE t AS SELECT … GROUP BY … [EMIT CHANGES]`: running aggregates."""

    def check_emit(self) -> None:
        emit = self.statement.emit
        if emit is not None and emit[0] == "FINAL":
            self.diagnostics.fail(
                self.error(
                    "EMIT FINAL needs a WINDOW (a running aggregate without one emits its "
                    "changes: EMIT CHANGES)",
                    emit[1],
                )
            )

    def step(self) -> dict[str, Any]:
        """The `aggregate` step, an update per record."""
        names = [k.name for k in self.keys]
        return {
            "aggregate": {
                "key": names if len(names) > 1 else names[0],
                "emit": "updates",
                "aggregates": dict(self.aggregates),
            }
        }
