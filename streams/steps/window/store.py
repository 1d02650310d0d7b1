"""The window store: each key's open windows with their aggregate states (read from the
state store once, kept in memory, written once per `persist`), the close index, the
watermarks, and late events.

The watermark is the largest event time taken per partition (a bookkeeping key per
partition, in that partition's changelog); a window closes once the watermark reaches
`window_end + grace`, and an event whose windows are all closed is late (counted;
dropped or dead-lettered). A key's entry: `{"k": key values, "p": partition, "w":
[[start, end, last, [dumped state per aggregate]], ...]}`; its layout is checked at
load (streams.steps.window.layout).

A window taken on the batch path may hold `pending` rows instead of states: they are
folded in (`AggregatePlan.fold`) when its states are needed, or when too many wait.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

from models.pipeline_spec import WindowSpec
from streams.core.errors import RecordError
from streams.core.event_time import iso_ms
from streams.core.records import Event
from streams.core.state import StateStore, bookkeeping_key, is_bookkeeping
from streams.steps.contract import BatchContext
from streams.steps.window.layout import LAYOUT, check_count, layout_of, read_order
from streams.steps.window.plan import AggregatePlan, Row

WATERMARK = "watermark"  # a bookkeeping key per partition, in that partition's changelog
_WATERMARK_PREFIX = bookkeeping_key(WATERMARK, 0).removesuffix("0")
# session windows: how many records the partition has given the step (first/last keep
# their value's number, exact.ArrivalFirst); stored beside the watermark, so numbers go on
# rising after a restart or a move to another worker
ARRIVALS = "arrivals"
_ARRIVALS_PREFIX = bookkeeping_key(ARRIVALS, 0).removesuffix("0")
_LAYOUT_PREFIX = bookkeeping_key(LAYOUT, 0).removesuffix("0")
# records waiting in windows' pending lists, all windows together, before they are folded
# in: bounds the memory they hold, and (with plan.BATCH_LIMIT) what sum() must allow for
PENDING_LIMIT = 20_000


@dataclass(slots=True, eq=False)
class Window:
    start: int
    end: int
    states: list[Any] | None  # None: a batch-path window never folded (pending holds all)
    last: int = 0  # session windows: the latest event time (end = last + gap)
    # records taken but not yet added to `states` (the batch path): per record a row of
    # the fields the aggregates read, and its event time if one reads it
    pending: list[Row] | None = None


@dataclass(slots=True)
class KeyWindows:
    key_values: list[Any]
    partition: int
    windows: dict[int, Window]


Closed = tuple[str, KeyWindows, Window]


class WindowStore:
    def __init__(
        self, spec: WindowSpec, plan: AggregatePlan, store: StateStore, *, pipeline: str, step: str
    ) -> None:
        self.plan = plan
        self.store = store
        self.pipeline = pipeline
        self.step = step
        self.layout = layout_of(spec)  # what the state is built from (layout)
        self.grace = spec.grace
        self.key_fields = spec.key
        self.late_to_dlq = spec.late == "dlq"
        self.reset()

    def reset(self) -> None:
        self.cache: dict[str, KeyWindows] = {}
        self.dirty: set[str] = set()  # keys changed since the last persist
        self.watermarks: dict[int, int] = {}
        self.arrivals: dict[int, int] = {}  # session windows: records numbered per partition
        # per partition: the times windows close at (a heap, each time once), and per time
        # the (key, start) of the windows that close then; tumbling windows of one start
        # all close at once, so this heap is a key count smaller than one entry a window
        self.heaps: dict[int, list[int]] = {}
        self.due: dict[int, dict[int, list[tuple[str, int]]]] = {}
        self.last_seen_ms: dict[int, int] = {}
        self.open_count = 0
        self.loaded = False
        self.pending_windows: list[Window] = []
        self.pending_count = 0
        # windows whose int sum is too large for the batch path's bound (exact.Sum)
        self.near_limit: set[Window] = set()
        # per partition: where each aggregate's state is in the stored states (None: in
        # its place); partitions whose stored layout is the current one
        self._orders: dict[int, list[int] | None] = {}
        self._layout_written: set[int] = set()

    @property
    def _store_name(self) -> str:
        return str(getattr(self.store, "name", self.step))

    def load_all(self, now_ms: int) -> None:
        """Rebuild the close-time index from the store (after a restart or rebalance).
        A restored partition counts as seen now: without a record after the restore it
        is idle from now on, and its windows close by wall clock like any idle
        partition's (issue 22: a quiet topic kept its restored windows open forever).
        The stored layout is checked first."""
        self.loaded = True
        keys = list(self.store.keys())
        for key in keys:
            if key.startswith(_LAYOUT_PREFIX):
                partition = int(key.rpartition(":")[2])
                self._orders[partition] = read_order(
                    self.store.get(key),
                    self.layout,
                    pipeline=self.pipeline,
                    step=self.step,
                    store=self._store_name,
                )
        for key in keys:
            if key.startswith(_WATERMARK_PREFIX):
                partition = int(key.rpartition(":")[2])
                self.watermarks[partition] = int(self.store.get(key))
                self.last_seen_ms.setdefault(partition, now_ms)
                continue
            if key.startswith(_ARRIVALS_PREFIX):
                self.arrivals[int(key.rpartition(":")[2])] = int(self.store.get(key))
                continue
            if is_bookkeeping(key):
                continue
            entry = self.entry(key)
            if entry is None:
                continue
            if self._orders.get(entry.partition) is not None:
                self.dirty.add(key)  # written back in the current order
            for window in entry.windows.values():
                self.index(entry.partition, key, window)
        for partition in {*self.watermarks, *self._orders}:
            if self._orders.get(partition) is not None or partition not in self._orders:
                self._write_layout(partition)  # reordered, or state from before layouts
            self._layout_written.add(partition)

    def _write_layout(self, partition: int) -> None:
        self.store.set(bookkeeping_key(LAYOUT, partition), self.layout, partition)
        self._layout_written.add(partition)

    def write_bookkeeping(self, partitions: set[int]) -> None:
        """The partitions' watermarks and arrival counts (and layout, once) into the store."""
        for partition in partitions & set(self.arrivals):
            self.store.set(bookkeeping_key(ARRIVALS, partition), self.arrivals[partition])
        for partition in partitions & set(self.watermarks):
            self.store.set(bookkeeping_key(WATERMARK, partition), self.watermarks[partition])
            if partition not in self._layout_written:
                self._write_layout(partition)

    def entry(self, key: str) -> KeyWindows | None:
        entry = self.cache.get(key)
        if entry is not None:
            return entry
        data = self.store.get(key)
        if data is None:
            return None
        windows = {}
        partition = data["p"]
        order = self._orders.get(partition)
        aggregates = self.plan.aggregates
        for start, end, last, dumped in data["w"]:
            if partition not in self._orders:  # written before layouts were stored
                check_count(
                    dumped,
                    len(aggregates),
                    pipeline=self.pipeline,
                    step=self.step,
                    store=self._store_name,
                )
            ordered = dumped if order is None else [dumped[i] for i in order]
            states = [agg.load(d) for agg, d in zip(aggregates, ordered, strict=True)]
            windows[start] = window = Window(start, end, states, last)
            self.check_limits(window)
        entry = KeyWindows(data["k"], data["p"], windows)
        self.cache[key] = entry
        self.open_count += len(windows)
        return entry

    def save(self, key: str) -> None:
        entry = self.cache.get(key)
        if entry is None or not entry.windows:
            self.cache.pop(key, None)
            self.store.delete(key, entry.partition if entry is not None else None)
            return
        aggregates = self.plan.aggregates
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
                        [agg.dump(s) for agg, s in zip(aggregates, self.states(w), strict=True)],
                    ]
                    for w in entry.windows.values()
                ],
            },
            entry.partition,
        )

    def persist(self) -> None:
        """Each key whose windows changed since the last persist, written once."""
        for key in self.dirty:
            self.save(key)
        self.dirty.clear()
        # every key read in another order was dirty: the store holds the current order now
        self._orders = dict.fromkeys(self._orders)
        # every window with pending records has a dirty key: all are folded now
        self.pending_windows.clear()
        self.pending_count = 0

    def index(self, partition: int, key: str, window: Window) -> None:
        close_at = window.end + self.grace
        due = self.due.get(partition)
        if due is None:
            due = self.due[partition] = {}
        closing = due.get(close_at)
        if closing is None:
            due[close_at] = [(key, window.start)]
            heapq.heappush(self.heaps.setdefault(partition, []), close_at)
        else:
            closing.append((key, window.start))

    def close(
        self, touched: dict[str, set[int]], *, final: bool, watermarks: dict[int, int]
    ) -> list[list[Closed]]:
        """Take out the windows the watermarks (all: `final`) close, in groups that close
        at the same time, each group by key and start; their keys join `touched`."""
        groups = []
        cache = self.cache
        grace = self.grace
        pop = heapq.heappop
        # partitions in order: which one registered a window first depends on the path
        # (batch or one by one) and on set order, and the results' order must not
        for partition in sorted(self.heaps):
            heap = self.heaps[partition]
            watermark = watermarks.get(partition)
            due = self.due[partition]
            while heap and (final or (watermark is not None and heap[0] <= watermark)):
                close_at = pop(heap)
                closing = due.pop(close_at)
                closing.sort()  # by key, then start: the order does not depend on arrival
                closed: list[Closed] = []
                for key, start in closing:
                    entry = cache.get(key) or self.entry(key)
                    window = entry.windows.get(start) if entry is not None else None
                    if entry is None or window is None or window.end + grace != close_at:
                        continue  # merged, extended or already closed: a stale index entry
                    del entry.windows[start]
                    self.open_count -= 1
                    if self.near_limit:
                        self.near_limit.discard(window)
                    closed.append((key, entry, window))
                    if key not in touched:
                        touched[key] = set()
                if closed:
                    groups.append(closed)
        return groups

    # --- pending rows ----------------------------------------------------------------------

    def fold(self, window: Window) -> None:
        """Add a window's pending records to its states."""
        rows = window.pending
        if rows is None:
            return
        window.pending = None
        self.pending_count -= len(rows)
        window.states = self.plan.fold(window.states, rows)
        if self.plan.limited:
            self.check_limits(window)

    def take_pending(self, window: Window) -> list[Row]:
        """A closing window's pending rows, taken out (its results come from them)."""
        rows = window.pending or []
        window.pending = None
        self.pending_count -= len(rows)
        return rows

    def states(self, window: Window) -> list[Any]:
        """The window's states, its pending records folded in."""
        if window.pending is not None:
            self.fold(window)
        if window.states is None:  # only a window with pending records has none
            window.states = self.plan.fresh_states()
        return window.states

    def fold_all(self) -> None:
        for window in self.pending_windows:
            if window.pending is not None:
                self.fold(window)
        self.pending_windows.clear()
        self.pending_count = 0

    def trim_pending(self) -> None:
        """Fold everything when too many records wait; forget folded windows."""
        if self.pending_count > PENDING_LIMIT:
            self.fold_all()
        elif len(self.pending_windows) > PENDING_LIMIT:
            self.pending_windows = [w for w in self.pending_windows if w.pending is not None]

    def check_limits(self, window: Window) -> None:
        states = window.states
        if self.plan.batched and states is not None:
            for i, agg in self.plan.limited:
                if agg.near_limit(states[i]):
                    self.near_limit.add(window)
                    return

    # --- records the windows do not take ---------------------------------------------------

    def missing_key(self, event: Event, ctx: BatchContext) -> None:
        fields = ", ".join(self.key_fields or ())
        error = RecordError(f"window key field(s) {fields} missing or null", "key")
        ctx.dead_letter(event, self.step, error)

    def late(self, event: Event, t: int, watermark: int, ctx: BatchContext) -> None:
        message = (
            f"late event: its window closed (event time {iso_ms(t)}, "
            f"watermark {iso_ms(watermark)}, grace {self.grace} ms)"
        )
        ctx.late_event(event, self.step, message, to_dlq=self.late_to_dlq)
