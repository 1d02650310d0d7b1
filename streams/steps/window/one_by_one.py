"""The one-by-one path: each record's arguments evaluated and added to its windows'
states as a transaction (all aggregates and windows or none; a value an aggregate
refuses makes the record a dead letter and changes nothing). It takes what the batch
path cannot: sessions, computed arguments, values an aggregate could refuse."""

from __future__ import annotations

from typing import Any

from models.pipeline_spec import WindowSpec
from streams.core.errors import RecordError
from streams.core.records import Event, key_of
from streams.steps.contract import BatchContext
from streams.steps.window.assigners import starts_of
from streams.steps.window.keys import key_value
from streams.steps.window.plan import AggregatePlan
from streams.steps.window.store import KeyWindows, Window, WindowStore


class OneByOne:
    def __init__(self, spec: WindowSpec, plan: AggregatePlan, store: WindowStore) -> None:
        self.plan = plan
        self.store = store
        self.size = spec.size or 0
        self.gap = spec.gap or 0
        self.session = spec.type == "session"
        self.starts = starts_of(spec)

    def take(self, events: list[Event], ctx: BatchContext) -> dict[str, set[int]]:
        store = self.store
        store.fold_all()  # this path works on up-to-date states
        plan = self.plan
        touched: dict[str, set[int]] = {}
        key_fields = store.key_fields
        argument_fns = plan.argument_fns
        for event in events:
            value = event.value
            key = key_of(value, key_fields) if key_fields is not None else ""
            if key is None:
                store.missing_key(event, ctx)
                continue
            try:
                arguments = [fn(value) for fn in argument_fns]
            except Exception:  # find which, with the expression's message
                try:
                    arguments = [a.evaluate(value) if a else None for a in plan.arguments]
                except RecordError as error:
                    ctx.dead_letter(event, store.step, error)
                    continue
            t = event.timestamp_ms
            partition = event.partition
            arrival = 0
            if self.session:
                arrival = store.arrivals.get(partition, 0)
                store.arrivals[partition] = arrival + 1
            watermark = max(store.watermarks.get(partition, t), t)
            entry = store.entry(key)
            created = entry is None
            try:
                if entry is None:
                    key_values = [key_value(value.get(f)) for f in key_fields or ()]
                    entry = KeyWindows(key_values, partition, {})
                if self.session:
                    start = self._add_session(entry, key, t, arguments, watermark, arrival)
                    starts = [start] if start is not None else []
                else:
                    starts = self._add_fixed(entry, key, t, arguments, watermark)
            except RecordError as error:  # nothing changed: the record is a dead letter
                ctx.dead_letter(event, store.step, error)
                continue
            # only a record the window took (or found late) moves the watermark
            store.watermarks[partition] = watermark
            store.last_seen_ms[partition] = ctx.now_ms
            if created and entry.windows:
                store.cache[key] = entry
            if not starts:
                store.late(event, t, watermark, ctx)
                continue
            touched.setdefault(key, set()).update(starts)
        if plan.batched:  # a sum near its limit keeps its window off the batch path
            for key, taken in touched.items():
                windows = store.cache[key].windows if key in store.cache else {}
                for start in taken:
                    if start in windows:
                        store.check_limits(windows[start])
        return touched

    def _new_window(self, start: int, end: int) -> Window:
        self.store.open_count += 1
        return Window(start, end, self.plan.fresh_states())

    def _add_fixed(
        self, entry: KeyWindows, key: str, t: int, arguments: list[Any], watermark: int
    ) -> list[int]:
        closed_after = self.size + self.store.grace
        starts = [s for s in self.starts(t) if s + closed_after > watermark]
        if not starts:
            return []  # every window of t is closed: late
        plan, store = self.plan, self.store
        prepared = plan.prepare(arguments)
        windows = entry.windows
        changes = []
        for start in starts:  # first every window's new states (may raise)...
            window = windows.get(start)
            base = store.states(window) if window is not None else plan.fresh_states()
            changes.append((start, window, plan.added(base, arguments, t)))
        for start, found, states in changes:  # ...then the commit, which cannot fail
            window = found
            if window is None:
                window = windows[start] = self._new_window(start, start + self.size)
                store.index(entry.partition, key, window)
            window.states = states
            plan.grow(states, prepared, t)
        return starts

    def _add_session(
        self,
        entry: KeyWindows,
        key: str,
        t: int,
        arguments: list[Any],
        watermark: int,
        arrival: int,
    ) -> int | None:
        gap = self.gap
        plan, store = self.plan, self.store
        joined = [w for w in entry.windows.values() if w.start - gap < t < w.end]
        start = min([t, *(w.start for w in joined)])
        last = max([t, *(w.last for w in joined)])
        if last + gap + store.grace <= watermark:
            return None  # a session of its own, already closed: late
        prepared = plan.prepare(arguments)
        states = plan.fresh_states()
        for other in joined:  # merging makes new states; the joined windows' stay as they are
            states = plan.merged(states, store.states(other))
        states = plan.added(states, arguments, t, arrival)
        for other in joined:
            del entry.windows[other.start]
            store.open_count -= 1
        window = self._new_window(start, last + gap)
        window.last = last
        window.states = states
        plan.grow(states, prepared, t)
        entry.windows[start] = window
        store.index(entry.partition, key, window)
        return start
