"""Window results: a record per window with the key field(s), `window_start`,
`window_end` (ISO text) and each named aggregate's result, keyed by the window key and
stamped with the window's last millisecond."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import starmap
from operator import itemgetter
from typing import Any, cast

from streams.core.event_time import iso_ms
from streams.core.records import Event
from streams.steps.window.plan import AggregatePlan, Row
from streams.steps.window.store import Closed, KeyWindows, Window, WindowStore


class Results:
    def __init__(self, plan: AggregatePlan, store: WindowStore) -> None:
        self.plan = plan
        self.store = store
        self.key_fields = store.key_fields or ()
        self._iso: dict[int, str] = {}  # window bounds as text: shared by every key's window

    def text(self, epoch_ms: int) -> str:
        text = self._iso.get(epoch_ms)
        if text is None:
            if len(self._iso) >= 4096:
                self._iso.clear()
            text = self._iso[epoch_ms] = iso_ms(epoch_ms)
        return text

    def record(self, entry: KeyWindows, window: Window, *, closing: bool) -> dict[str, Any]:
        record: dict[str, Any] = dict(zip(self.key_fields, entry.key_values, strict=True))
        record["window_start"] = self.text(window.start)
        record["window_end"] = self.text(window.end)
        if closing and window.states is None and window.pending is not None:
            # all its records in one go: results straight from the rows
            columns, times = self.plan.columns(self.store.take_pending(window))
            for name, position, skips_nulls, results_of in self.plan.results_of:
                every, values, value_times = columns[position]
                if skips_nulls:
                    (record[name],) = results_of([values], (value_times,))
                else:
                    (record[name],) = results_of([every], (times,))
            return record
        states = self.store.states(window)
        for (name, result), state in zip(self.plan.results, states, strict=True):
            record[name] = state if result is None else result(state)
        return record

    def updates(self, touched: dict[str, set[int]]) -> list[Event]:
        """emit: updates: the current result of every window a batch touched."""
        results = []
        cache = self.store.cache
        for key, starts in touched.items():
            entry = cache.get(key)
            if entry is None:
                continue
            for start in sorted(starts):
                window = entry.windows.get(start)
                if window is not None:
                    record = self.record(entry, window, closing=False)
                    results.append(Event(record, key or None, window.end - 1))
        return results

    def closed(self, closed: list[Closed]) -> list[Event]:
        """The result events of windows that closed together, in that order. When every
        one still has all its records pending (the common case: it never had to fold),
        each aggregate computes all the windows' results at once (`results_of`: C-level
        maps over the windows' columns) instead of six calls a window."""
        plan = self.plan
        pendings = [window.pending for _, _, window in closed]
        if (
            len(closed) < 8
            or plan.uses_times
            or any(plan.nullable)
            or any(window.states is not None for _, _, window in closed)
            or None in pendings
        ):
            return [
                # Event(value, key, timestamp_ms): positional is cheaper
                Event(self.record(entry, window, closing=True), key or None, window.end - 1)
                for key, entry, window in closed
            ]
        rows_of = cast(list[list[Row]], pendings)  # no None: checked above
        for _, _, window in closed:
            window.pending = None
        self.store.pending_count -= sum(map(len, rows_of))
        # per window, its columns: the fields of its rows
        columns = list(map(tuple, starmap(zip, rows_of)))
        by_field: list[list[Sequence[Any]]] = [
            list(map(itemgetter(i), columns)) for i in range(len(plan.row_fields))
        ]
        counted: list[Sequence[Any]] = list(rows_of)
        text = self.text
        records: list[dict[str, Any]] = []
        key_fields = self.key_fields
        if len(key_fields) == 1:
            (key_field,) = key_fields
            records = [
                {
                    key_field: entry.key_values[0],
                    "window_start": text(window.start),
                    "window_end": text(window.end),
                }
                for _, entry, window in closed
            ]
        else:
            for _, entry, window in closed:
                record = dict(zip(key_fields, entry.key_values, strict=True))
                record["window_start"] = text(window.start)
                record["window_end"] = text(window.end)
                records.append(record)
        for name, index, results_of in plan.results_of_many:
            values = results_of(counted if index is None else by_field[index], ())
            for record, value in zip(records, values, strict=True):
                record[name] = value
        return [
            Event(record, key or None, window.end - 1)
            for record, (key, _, window) in zip(records, closed, strict=True)
        ]
