"""`window`: event-time windows per key — tumbling, hopping, session — with grace.

Windows are aligned to the Unix epoch. The watermark is the largest event time seen per
partition; a window closes once the watermark reaches `window_end + grace`, and an event
whose windows are all closed is late (counted; dropped or dead-lettered). `emit: final`
sends each window's result when it closes; `emit: updates` sends the current result of
every window a batch touched. State per key (the open windows with their aggregate
states) is read once per batch and written once; closed windows are deleted.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

from models.pipeline import WindowSpec
from streams.errors import ExpressionRuntimeError, RecordError
from streams.expressions import Expression, describe_failure
from streams.jsonl import INT64_MIN, UINT64_MAX, state_problem
from streams.records import Event, key_of
from streams.state import StateStore
from streams.steps.aggregates import Aggregate, make_aggregate
from streams.steps.base import BatchContext, Step

BOOKKEEPING = "\x00"  # keys starting with it are bookkeeping, not record keys
WATERMARK_KEY = "\x00watermark:{partition}"  # one per partition, in that partition's changelog
WINDOWS_KEY_PREFIX_FREE = BOOKKEEPING


def _none(_: Any) -> None:
    return None


def iso_ms(epoch_ms: int) -> str:
    from streams.pipeline import iso_ms as format_iso

    return format_iso(epoch_ms)


def _key_value(value: Any) -> Any:
    """A key field's value as the window keeps it in its state (to name the key in results):
    only what a changelog holds exactly."""
    cls = value.__class__
    if cls is str or cls is bool or cls is float:
        return value
    if cls is int and INT64_MIN <= value <= UINT64_MAX:
        return value
    problem = (
        "an integer beyond 64 bits"
        if isinstance(value, int) and not isinstance(value, bool)
        else state_problem(value)
    )
    if problem is not None:
        raise RecordError(
            f"window key value is {problem}, which window state cannot hold exactly; "
            "CAST it to TEXT in a map before the window",
            "key",
        )
    return value


@dataclass(slots=True)
class Window:
    start: int
    end: int
    states: list[Any]
    last: int = 0  # session windows: the latest event time (end = last + gap)


@dataclass(slots=True)
class KeyWindows:
    key_values: list[Any]
    partition: int
    windows: dict[int, Window]


class WindowStep(Step):
    kind = "window"

    def __init__(self, name: str, spec: WindowSpec, store: StateStore) -> None:
        super().__init__(name)
        self.spec = spec
        self.store = store
        self.type = spec.type
        self.size = spec.size or 0
        self.hop = spec.hop or self.size
        self.gap = spec.gap or 0
        self.grace = spec.grace
        self.key_fields = spec.key
        self.emit_updates = spec.emit == "updates"
        self.late_to_dlq = spec.late == "dlq"
        self.names = list(spec.aggregates)
        self.aggregates: list[Aggregate] = [make_aggregate(c) for c in spec.aggregates.values()]
        # each distinct argument is evaluated once per record: sum(x), avg(x), max(x) and
        # percentile(x, q) all read x
        distinct: dict[str, int] = {}
        self.arguments: list[Expression | None] = []
        positions = []
        for call in spec.aggregates.values():
            text = call.argument.source if call.argument is not None else ""
            if text not in distinct:
                distinct[text] = len(self.arguments)
                self.arguments.append(call.argument)
            positions.append(distinct[text])
        self._argument_fns = [a.fn if a is not None else _none for a in self.arguments]
        # aggregates that return a new state (rolled back by dropping it) apart from those
        # that grow theirs in place (given a prepared value, they cannot fail)
        self._adders = [
            (i, positions[i], agg.add, agg.skips_nulls)
            for i, agg in enumerate(self.aggregates)
            if not agg.in_place
        ]
        self._growers = [
            (i, positions[i], agg.prepare, agg.add, agg.skips_nulls)
            for i, agg in enumerate(self.aggregates)
            if agg.in_place
        ]
        self._iso: dict[int, str] = {}  # window bounds as text: shared by every key's window
        self.reset()

    # --- state -------------------------------------------------------------------------

    def reset(self) -> None:
        self.cache: dict[str, KeyWindows] = {}
        self.dirty: set[str] = set()  # keys changed since the last persist
        self.watermarks: dict[int, int] = {}
        self.heaps: dict[int, list[tuple[int, str, int]]] = {}
        self.last_seen_ms: dict[int, int] = {}
        self.open_count = 0
        self._loaded = False

    def _load_all(self) -> None:
        """Rebuild the close-time index from the store (after a restart or rebalance)."""
        self._loaded = True
        for key in list(self.store.keys()):
            if key.startswith("\x00watermark:"):
                self.watermarks[int(key.rpartition(":")[2])] = int(self.store.get(key))
                continue
            if key.startswith(BOOKKEEPING):
                continue
            entry = self._entry(key)
            if entry is None:
                continue
            for window in entry.windows.values():
                self._index(entry.partition, key, window)

    def _entry(self, key: str) -> KeyWindows | None:
        entry = self.cache.get(key)
        if entry is not None:
            return entry
        data = self.store.get(key)
        if data is None:
            return None
        windows = {}
        for start, end, last, dumped in data["w"]:
            states = [agg.load(d) for agg, d in zip(self.aggregates, dumped, strict=True)]
            windows[start] = Window(start, end, states, last)
        entry = KeyWindows(data["k"], data["p"], windows)
        self.cache[key] = entry
        self.open_count += len(windows)
        return entry

    def _save(self, key: str) -> None:
        entry = self.cache.get(key)
        if entry is None or not entry.windows:
            self.cache.pop(key, None)
            self.store.delete(key, entry.partition if entry is not None else None)
            return
        self.store.set(
            key,
            {
                "k": entry.key_values,
                "p": entry.partition,
                "w": [
                    [
                        w.start,
                        w.end,
                        w.last,
                        [agg.dump(s) for agg, s in zip(self.aggregates, w.states, strict=True)],
                    ]
                    for w in entry.windows.values()
                ],
            },
            entry.partition,
        )

    def _index(self, partition: int, key: str, window: Window) -> None:
        heapq.heappush(
            self.heaps.setdefault(partition, []), (window.end + self.grace, key, window.start)
        )

    # --- processing --------------------------------------------------------------------

    def _starts(self, t: int) -> list[int] | tuple[int]:
        if self.type == "tumbling":
            return (t - t % self.size,)
        last = t - t % self.hop
        first = last - ((self.size - 1) // self.hop) * self.hop
        return [s for s in range(first, last + 1, self.hop) if s <= t < s + self.size]

    def process(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        if not self._loaded:
            self._load_all()
        touched: dict[str, set[int]] = {}
        key_fields = self.key_fields
        for event in events:
            value = event.value
            key = key_of(value, key_fields) if key_fields is not None else ""
            if key is None:
                ctx.dead_letter(
                    event,
                    self.name,
                    RecordError(
                        f"window key field(s) {', '.join(self.key_fields or ())} missing or null",
                        "key",
                    ),
                )
                continue
            try:
                arguments = [fn(value) for fn in self._argument_fns]
            except Exception:  # find which, with the expression's message
                try:
                    arguments = [a.evaluate(value) if a else None for a in self.arguments]
                except RecordError as error:
                    ctx.dead_letter(event, self.name, error)
                    continue
            t = event.timestamp_ms
            partition = event.partition
            watermark = max(self.watermarks.get(partition, t), t)
            entry = self._entry(key)
            created = entry is None
            try:
                if entry is None:
                    key_values = [_key_value(value.get(f)) for f in key_fields or ()]
                    entry = KeyWindows(key_values, partition, {})
                if self.type == "session":
                    start = self._add_session(entry, key, t, arguments, watermark)
                    starts = [start] if start is not None else []
                else:
                    starts = self._add_fixed(entry, key, t, arguments, watermark)
            except RecordError as error:  # nothing changed: the record is a dead letter
                ctx.dead_letter(event, self.name, error)
                continue
            # only a record the window took (or found late) moves the watermark
            self.watermarks[partition] = watermark
            self.last_seen_ms[partition] = ctx.now_ms
            if created and entry.windows:
                self.cache[key] = entry
            if not starts:
                ctx.late += 1
                if self.late_to_dlq:
                    ctx.dead_letter(
                        event,
                        self.name,
                        RecordError(
                            f"late event: its window closed (event time {iso_ms(t)}, "
                            f"watermark {iso_ms(watermark)}, grace {self.grace} ms)",
                            "late",
                        ),
                    )
                else:
                    ctx.drop(self.name, "late")
                continue
            touched.setdefault(key, set()).update(starts)
        updates = self._updates(touched) if self.emit_updates else []
        results = updates + self._close(ctx, touched, final=False, watermarks=self.watermarks)
        self.dirty.update(touched)
        for partition in {event.partition for event in events} & set(self.watermarks):
            self.store.set(WATERMARK_KEY.format(partition=partition), self.watermarks[partition])
        ctx.gauges["windows_open"] = self.open_count
        return results

    def _prepare(self, arguments: list[Any]) -> list[Any]:
        """The in-place aggregates' values, prepared before any state changes."""
        prepared = []
        try:
            for _, position, prepare, _, skips_nulls in self._growers:
                value = arguments[position]
                prepared.append(None if value is None and skips_nulls else prepare(value))
        except RecordError:
            raise
        except Exception as exc:
            raise ExpressionRuntimeError(describe_failure(exc)) from None
        return prepared

    def _added(self, states: list[Any], arguments: list[Any], t: int) -> list[Any]:
        """A new states list with the record added by the aggregates that return new
        states; `states` itself is unchanged, so a failure leaves nothing half-added."""
        states = states.copy()
        try:
            for i, position, add, skips_nulls in self._adders:
                value = arguments[position]
                if value is None and skips_nulls:
                    continue
                states[i] = add(states[i], value, t)
        except RecordError:
            raise
        except Exception as exc:  # an overflow, say: the record's fault
            raise ExpressionRuntimeError(describe_failure(exc)) from None
        return states

    def _grow(self, states: list[Any], prepared: list[Any], t: int) -> None:
        for (i, _, _, add, skips_nulls), value in zip(self._growers, prepared, strict=True):
            if value is None and skips_nulls:
                continue
            states[i] = add(states[i], value, t)

    def _fresh_states(self) -> list[Any]:
        return [agg.init() for agg in self.aggregates]

    def _new_window(self, start: int, end: int) -> Window:
        self.open_count += 1
        return Window(start, end, self._fresh_states())

    def _add_fixed(
        self, entry: KeyWindows, key: str, t: int, arguments: list[Any], watermark: int
    ) -> list[int]:
        starts = [s for s in self._starts(t) if s + self.size + self.grace > watermark]
        if not starts:
            return []  # every window of t is closed: late
        prepared = self._prepare(arguments) if self._growers else None
        windows = entry.windows
        changes = []
        for start in starts:  # first every window's new states (may raise)...
            window = windows.get(start)
            base = window.states if window is not None else self._fresh_states()
            changes.append((start, window, self._added(base, arguments, t)))
        for start, found, states in changes:  # ...then the commit, which cannot fail
            window = found
            if window is None:
                window = windows[start] = self._new_window(start, start + self.size)
                self._index(entry.partition, key, window)
            window.states = states
            if prepared is not None:
                self._grow(states, prepared, t)
        return starts

    def _add_session(
        self, entry: KeyWindows, key: str, t: int, arguments: list[Any], watermark: int
    ) -> int | None:
        gap = self.gap
        joined = [w for w in entry.windows.values() if w.start - gap < t < w.end]
        start = min([t, *(w.start for w in joined)])
        last = max([t, *(w.last for w in joined)])
        if last + gap + self.grace <= watermark:
            return None  # a session of its own, already closed: late
        prepared = self._prepare(arguments) if self._growers else None
        states = self._fresh_states()
        try:  # merging makes new states; the joined windows' stay as they are
            for other in joined:
                states = [
                    agg.merge(a, b)
                    for agg, a, b in zip(self.aggregates, states, other.states, strict=True)
                ]
        except RecordError:
            raise
        except Exception as exc:
            raise ExpressionRuntimeError(describe_failure(exc)) from None
        states = self._added(states, arguments, t)
        for other in joined:
            del entry.windows[other.start]
            self.open_count -= 1
        window = self._new_window(start, last + gap)
        window.last = last
        window.states = states
        if prepared is not None:
            self._grow(states, prepared, t)
        entry.windows[start] = window
        self._index(entry.partition, key, window)
        return start

    def _result(self, entry: KeyWindows, window: Window) -> dict[str, Any]:
        record: dict[str, Any] = dict(zip(self.key_fields or (), entry.key_values, strict=True))
        record["window_start"] = self._text(window.start)
        record["window_end"] = self._text(window.end)
        for name, agg, state in zip(self.names, self.aggregates, window.states, strict=True):
            record[name] = agg.result(state)
        return record

    def _text(self, epoch_ms: int) -> str:
        text = self._iso.get(epoch_ms)
        if text is None:
            if len(self._iso) >= 4096:
                self._iso.clear()
            text = self._iso[epoch_ms] = iso_ms(epoch_ms)
        return text

    def _event(self, key: str, record: dict[str, Any], window: Window) -> Event:
        return Event(record, key=key or None, timestamp_ms=window.end - 1)

    def _updates(self, touched: dict[str, set[int]]) -> list[Event]:
        results = []
        for key, starts in touched.items():
            entry = self.cache.get(key)
            if entry is None:
                continue
            for start in sorted(starts):
                window = entry.windows.get(start)
                if window is not None:
                    results.append(self._event(key, self._result(entry, window), window))
        return results

    def _close(
        self,
        ctx: BatchContext,
        touched: dict[str, set[int]],
        *,
        final: bool,
        watermarks: dict[int, int],
    ) -> list[Event]:
        results = []
        for partition, heap in self.heaps.items():
            watermark = watermarks.get(partition)
            while heap and (final or (watermark is not None and heap[0][0] <= watermark)):
                close_at, key, start = heapq.heappop(heap)
                entry = self._entry(key)
                window = entry.windows.get(start) if entry is not None else None
                if entry is None or window is None or window.end + self.grace != close_at:
                    continue  # merged, extended or already closed: a stale index entry
                del entry.windows[start]
                self.open_count -= 1
                if not self.emit_updates:  # with updates, its last state was already sent
                    results.append(self._event(key, self._result(entry, window), window))
                touched.setdefault(key, set())
        return results

    def flush(self, ctx: BatchContext, *, final: bool) -> list[Event]:
        """End of input (`final`): close every window. Otherwise close the windows of
        partitions idle for `grace` (at least a second) of wall-clock time, as if their
        event time had advanced with the clock."""
        if not self._loaded:
            self._load_all()
        touched: dict[str, set[int]] = {}
        if final:
            results = self._close(ctx, touched, final=True, watermarks=self.watermarks)
        else:
            idle_after = max(self.grace, 1000)
            advanced = {}
            for partition, watermark in self.watermarks.items():
                idle = ctx.now_ms - self.last_seen_ms.get(partition, ctx.now_ms)
                if idle >= idle_after:
                    advanced[partition] = watermark + idle
            results = (
                self._close(ctx, touched, final=False, watermarks=advanced) if advanced else []
            )
        self.dirty.update(touched)
        ctx.gauges["windows_open"] = self.open_count
        return results

    def persist(self) -> None:
        """Each key whose windows changed since the last persist, written once."""
        for key in self.dirty:
            self._save(key)
        self.dirty.clear()
