"""Window aggregates: one small class per function, in the shape of Quix Streams'
aggregators plus `merge` (hopping windows and sessions combine partial states).

Each keeps a JSON-serializable state: windows live in changelog-backed tables, written
with orjson, so a state never holds an integer beyond 64 bits (a record that would put one
there is a dead letter instead). `add` skips nulls (except `count()`), as SQL aggregates do.

A record's aggregates change together or not at all: `add` either raises before it changes
anything or returns a new state, except for the aggregates that grow a state in place
(`in_place`: percentile, count_distinct); those take a value `prepare`d beforehand and
then cannot fail.

The batch path: `fits(kinds)` says whether `add_all` can take every value of a batch
whose classes (and integer range) are `kinds` without an error; `add_all(state, values,
times)` then adds them in order and gives the same state as `add` one by one, with the
loops in C (`functools.reduce`, `max`, `list.extend`, `set.update`). The window step
checks `fits` before it accepts a batch's records, so `add_all` never fails later.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce
from itertools import chain, repeat
from operator import add as _ADD
from operator import truediv
from typing import Any, ClassVar, Generic, TypeAlias, TypeVar

import datasketches
from ddsketch import DDSketch

from streams.core.errors import ExpressionRuntimeError
from streams.core.jsonl import INT64_MIN, UINT64_MAX, state_problem
from streams.expressions import AggregateCall

PERCENTILE_ACCURACY = 0.01  # DDSketch: every quantile within 1% relative error
DISTINCT_EXACT_LIMIT = 1000
HLL_LG_K = 14  # about 0.8% standard error; the contract allows 2%

Number: TypeAlias = int | float
S = TypeVar("S")  # an aggregate's state


_NONE = type(None)
_NO_TIMES: tuple[int, ...] = ()
_NUMBERS = frozenset({int, float})
_TEXT = frozenset({str})
_FLOATS = frozenset({float})
_SCALARS = frozenset({str, int, float, bool})
# sum() takes a batch of ints this small: a window holds fewer than 2**21 pending records
# (see streams.steps.window), so their partial sums stay within 2**52 of the state, and a
# window whose int sum passes SUM_STATE_LIMIT leaves the batch path (`near_limit`)
SUM_INT_LIMIT = 2**31
SUM_STATE_LIMIT = 2**62


@dataclass(frozen=True, slots=True)
class ValueKinds:
    """What a batch of one argument's values holds: their classes (nulls included) and
    the range of the ints among them."""

    classes: frozenset[type]
    low: int = 0
    high: int = 0

    @classmethod
    def of(cls, values: list[Any]) -> ValueKinds:
        classes = frozenset(map(type, values))
        if int not in classes:
            return cls(classes)
        ints = values if classes == {int} else [v for v in values if v.__class__ is int]
        return cls(classes, min(ints), max(ints))

    def only(self, allowed: frozenset[type]) -> bool:
        """Every value is null or of an `allowed` class."""
        return self.classes <= allowed or self.classes - {_NONE} <= allowed

    def ints_within(self, low: int, high: int) -> bool:
        return int not in self.classes or (low <= self.low and self.high <= high)


def _number(function: str, value: Any) -> float | int:
    if value.__class__ is int or value.__class__ is float:
        return value
    raise ExpressionRuntimeError(
        f"{function}() needs numbers, got {type(value).__name__} {value!r}"
    )


def _storable(function: str, value: Any) -> Any:
    """`value` if a changelog can hold it exactly, else an ExpressionRuntimeError."""
    cls = value.__class__
    if cls is str or cls is float or cls is bool:
        return value
    if cls is int:
        if INT64_MIN <= value <= UINT64_MAX:
            return value
        raise ExpressionRuntimeError(
            f"{function}(): {value} is an integer beyond 64 bits, which window state cannot "
            "hold exactly"
        )
    problem = state_problem(value)
    if problem is not None:
        raise ExpressionRuntimeError(f"{function}(): window state cannot hold {problem}")
    return value


def _checked_sum(total: Number) -> Number:
    if total.__class__ is int and not INT64_MIN <= total <= UINT64_MAX:
        raise ExpressionRuntimeError(
            "sum() goes beyond 64-bit integers, which window state cannot hold exactly"
        )
    return total


class Aggregate(Generic[S]):
    """Generic over its state `S`: `init()` → state; `add(state, value, t)` → state;
    `merge(a, b)`; `result(state)`; `dump(state)` → JSON for the table, `load(json)` →
    state. States may be live objects (sketches); they are dumped once per touched window
    per batch. A record's values are JSON values (`Any`).

    `in_place` aggregates change their state inside `add`: the window calls
    `prepare(value)` first (which may raise) and passes `add` what it returned."""

    name: ClassVar[str] = ""
    skips_nulls: ClassVar[bool] = True
    in_place: ClassVar[bool] = False
    uses_times: ClassVar[bool] = True  # `add_all` reads the times (the default one does)

    def __init__(self, parameter: float | None = None) -> None:
        self.parameter = parameter
        self.seen: set[type] | None = None  # the classes `saw` was told of (None: never)

    def init(self) -> S:
        raise NotImplementedError

    def prepare(self, value: Any) -> Any:
        return value

    def add(self, state: S, value: Any, t: int) -> S:
        raise NotImplementedError

    def fits(self, kinds: ValueKinds) -> bool:
        """Whether `add_all` takes any values of these kinds without an error."""
        return False

    def saw(self, kinds: ValueKinds) -> None:
        """Values of these kinds may have been added (by either path). The window calls
        it for every batch; `result_of_many` may rely on it for the values it gets."""
        if self.seen is None:
            self.seen = set()
        self.seen.update(kinds.classes - {_NONE})

    def _saw_only(self, classes: frozenset[type]) -> bool:
        """Whether every value given so far (see `saw`) is of these classes."""
        return self.seen is not None and self.seen <= classes

    def add_all(self, state: S, values: Sequence[Any], times: Sequence[int]) -> S:
        """`add` of each value in order; only for values that `fits` accepted. `values`
        holds no nulls if the aggregate skips them; `times` are their event times when
        the aggregate `uses_times` (else it may be empty). The default is that loop."""
        prepare = self.prepare
        add = self.add
        for value, t in zip(values, times, strict=True):
            state = add(state, prepare(value), t)
        return state

    def result_of(self, values: Sequence[Any], times: Sequence[int]) -> Any:
        """`result` of a fresh state given `add_all(values, times)`: a window whose
        records all came in one fold skips its states (most windows close that way)."""
        return self.result(self.add_all(self.init(), values, times))

    def result_of_many(self, columns: list[Sequence[Any]]) -> list[Any]:
        """`result_of` of each window's values (no nulls, no times: the window asks only
        then), several windows at once."""
        result_of = self.result_of
        return [result_of(values, _NO_TIMES) for values in columns]

    def near_limit(self, state: S) -> bool:
        """Whether the batch path must leave this state alone (sum: see SUM_STATE_LIMIT)."""
        return False

    def merge(self, a: S, b: S) -> S:
        raise NotImplementedError

    def result(self, state: S) -> Any:
        return state

    def dump(self, state: S) -> Any:
        """The state as JSON (what the window's table holds)."""
        return state

    def load(self, data: Any) -> S:
        """The state from `dump`'s JSON."""
        state: S = data  # the states of the JSON kind are their JSON
        return state


class CountAll(Aggregate[int]):
    name = "count"
    uses_times = False
    skips_nulls = False

    def init(self) -> int:
        return 0

    def add(self, state: int, value: Any, t: int) -> int:
        return state + 1

    def merge(self, a: int, b: int) -> int:
        return a + b

    def fits(self, kinds: ValueKinds) -> bool:
        return True

    def add_all(self, state: int, values: Sequence[Any], times: Sequence[int]) -> int:
        return state + len(values)

    def result_of(self, values: Sequence[Any], times: Sequence[int]) -> Any:
        return len(values)

    def result_of_many(self, columns: list[Sequence[Any]]) -> list[Any]:
        return list(map(len, columns))


class CountValues(CountAll):
    skips_nulls = True

    # add_all: CountAll's, given the values without nulls


class Sum(Aggregate[Number | None]):
    name = "sum"
    uses_times = False

    def init(self) -> Number | None:
        return None

    def add(self, state: Number | None, value: Any, t: int) -> Number | None:
        number = _number("sum", value)
        return _checked_sum(number if state is None else state + number)

    def merge(self, a: Number | None, b: Number | None) -> Number | None:
        return b if a is None else a if b is None else _checked_sum(a + b)

    def fits(self, kinds: ValueKinds) -> bool:
        return kinds.only(_NUMBERS) and kinds.ints_within(-SUM_INT_LIMIT, SUM_INT_LIMIT)

    def add_all(
        self, state: Number | None, values: Sequence[Any], times: Sequence[int]
    ) -> Number | None:
        if not values:
            return state
        # reduce adds left to right as `add` does (sum() of floats compensates from 3.12)
        total = reduce(_ADD, values) if state is None else reduce(_ADD, values, state)
        return _checked_sum(total)

    def result_of(self, values: Sequence[Any], times: Sequence[int]) -> Any:
        return _checked_sum(reduce(_ADD, values)) if values else None

    def result_of_many(self, columns: list[Sequence[Any]]) -> list[Any]:
        if not all(columns):
            return super().result_of_many(columns)
        totals = list(map(reduce, repeat(_ADD, len(columns)), columns))
        return [_checked_sum(t) if t.__class__ is int else t for t in totals]

    def near_limit(self, state: Number | None) -> bool:
        return state.__class__ is int and not -SUM_STATE_LIMIT < state < SUM_STATE_LIMIT


class Avg(Aggregate[list[float]]):
    name = "avg"
    uses_times = False

    def init(self) -> list[float]:
        return [0.0, 0]

    def add(self, state: list[float], value: Any, t: int) -> list[float]:
        return [state[0] + _number("avg", value), state[1] + 1]

    def merge(self, a: list[float], b: list[float]) -> list[float]:
        return [a[0] + b[0], a[1] + b[1]]

    def fits(self, kinds: ValueKinds) -> bool:
        return kinds.only(_NUMBERS) and kinds.ints_within(INT64_MIN, UINT64_MAX)

    def add_all(
        self, state: list[float], values: Sequence[Any], times: Sequence[int]
    ) -> list[float]:
        if not values:
            return state
        return [reduce(_ADD, values, state[0]), state[1] + len(values)]

    def result_of(self, values: Sequence[Any], times: Sequence[int]) -> Any:
        return reduce(_ADD, values, 0.0) / len(values) if values else None

    def result_of_many(self, columns: list[Sequence[Any]]) -> list[Any]:
        if not all(columns):
            return super().result_of_many(columns)
        count = len(columns)
        totals = map(reduce, repeat(_ADD, count), columns, repeat(0.0, count))
        return list(map(truediv, totals, map(len, columns)))

    def result(self, state: list[float]) -> Any:
        return state[0] / state[1] if state[1] else None


class Min(Aggregate[Any]):
    """The batch path needs every window's state comparable with the batch's values, so
    the aggregate remembers which families (numbers, text, others) any window may hold."""

    name = "min"
    uses_times = False

    def __init__(self, parameter: float | None = None) -> None:
        super().__init__(parameter)
        self.families: set[str] = set()

    def init(self) -> Any:
        return None

    def add(self, state: Any, value: Any, t: int) -> Any:
        try:
            return _storable("min", value) if state is None or value < state else state
        except TypeError:
            raise ExpressionRuntimeError(f"min() cannot compare {value!r} with {state!r}") from None

    def merge(self, a: Any, b: Any) -> Any:
        return b if a is None else a if b is None else self.add(a, b, 0)

    @staticmethod
    def _family(kinds: ValueKinds) -> str | None:
        if kinds.classes <= {_NONE}:
            return None
        if kinds.only(_NUMBERS):
            return "numbers" if kinds.ints_within(INT64_MIN, UINT64_MAX) else "others"
        return "text" if kinds.only(_TEXT) else "others"

    def fits(self, kinds: ValueKinds) -> bool:
        family = self._family(kinds)
        return family is None or (family != "others" and self.families <= {family})

    def saw(self, kinds: ValueKinds) -> None:
        family = self._family(kinds)
        if family is not None:
            self.families.add(family)

    def load(self, data: Any) -> Any:
        if data is not None:
            self.saw(ValueKinds.of([data]))
        return data

    def add_all(self, state: Any, values: Sequence[Any], times: Sequence[int]) -> Any:
        if not values:
            return state
        best = min(values)  # the first of equal values, as `add` keeps
        return best if state is None or best < state else state

    def result_of(self, values: Sequence[Any], times: Sequence[int]) -> Any:
        return min(values) if values else None

    def result_of_many(self, columns: list[Sequence[Any]]) -> list[Any]:
        return list(map(min, columns)) if all(columns) else super().result_of_many(columns)


class Max(Min):
    name = "max"

    def add(self, state: Any, value: Any, t: int) -> Any:
        try:
            return _storable("max", value) if state is None or value > state else state
        except TypeError:
            raise ExpressionRuntimeError(f"max() cannot compare {value!r} with {state!r}") from None

    def add_all(self, state: Any, values: Sequence[Any], times: Sequence[int]) -> Any:
        if not values:
            return state
        best = max(values)
        return best if state is None or best > state else state

    def result_of(self, values: Sequence[Any], times: Sequence[int]) -> Any:
        return max(values) if values else None

    def result_of_many(self, columns: list[Sequence[Any]]) -> list[Any]:
        return list(map(max, columns)) if all(columns) else super().result_of_many(columns)


class First(Aggregate[Any]):
    """The first value to arrive (arrival order, as quix-streams' First); `earliest` is
    the one with the smallest event time. Merged sessions: the older window's first."""

    name = "first"
    uses_times = False

    def init(self) -> Any:
        return None

    def add(self, state: Any, value: Any, t: int) -> Any:
        return _storable(self.name, value) if state is None else state

    def add_all(self, state: Any, values: Sequence[Any], times: Sequence[int]) -> Any:
        return state if state is not None or not values else _storable(self.name, values[0])

    def merge(self, a: Any, b: Any) -> Any:
        return b if a is None else a

    def fits(self, kinds: ValueKinds) -> bool:
        return kinds.only(_SCALARS) and kinds.ints_within(INT64_MIN, UINT64_MAX)


class Last(First):
    """The last value to arrive; `latest` is the one with the largest event time."""

    name = "last"

    def add(self, state: Any, value: Any, t: int) -> Any:
        return _storable(self.name, value)

    def add_all(self, state: Any, values: Sequence[Any], times: Sequence[int]) -> Any:
        return _storable(self.name, values[-1]) if values else state

    def merge(self, a: Any, b: Any) -> Any:
        return a if b is None else b


class Earliest(Aggregate[list[Any] | None]):
    """The value with the smallest event time (the first to arrive among equal times),
    as quix-streams' Earliest."""

    name = "earliest"

    def init(self) -> list[Any] | None:
        return None

    def add(self, state: list[Any] | None, value: Any, t: int) -> list[Any] | None:
        return [t, _storable(self.name, value)] if state is None or t < state[0] else state

    def merge(self, a: list[Any] | None, b: list[Any] | None) -> list[Any] | None:
        return b if a is None else a if b is None else (b if b[0] < a[0] else a)

    def fits(self, kinds: ValueKinds) -> bool:
        return kinds.only(_SCALARS) and kinds.ints_within(INT64_MIN, UINT64_MAX)

    def result(self, state: list[Any] | None) -> Any:
        return None if state is None else state[1]


class Latest(Earliest):
    """The value with the largest event time (the last to arrive among equal times)."""

    name = "latest"

    def add(self, state: list[Any] | None, value: Any, t: int) -> list[Any] | None:
        return [t, _storable(self.name, value)] if state is None or t >= state[0] else state

    def merge(self, a: list[Any] | None, b: list[Any] | None) -> list[Any] | None:
        return b if a is None else a if b is None else (b if b[0] >= a[0] else a)


def _store_dump(store: Any) -> list[Any]:
    return [store.offset, store.min_key, store.max_key, store.count, list(store.bins)]


def _store_load(store: Any, data: list[Any]) -> None:
    store.offset, store.min_key, store.max_key, store.count, store.bins = data


def _sketch_dump(sketch: DDSketch) -> list[Any]:
    """A DDSketch as JSON, every field it has. Why not its own protobuf form
    (`ddsketch.pb.proto.DDSketchProto`), measured on 3,000 values (2026-11-27): that form
    drops count/min/max/sum and rebuilds the index mapping from gamma, so quantiles came
    back different in the 14th digit (a restored window would not equal one that never
    restarted), it is 2.6x larger in base64 (11.0 kB vs 4.2 kB) and 28x slower to load
    (885 vs 32 µs, one protobuf message per bin)."""
    return [
        sketch._count,
        sketch._zero_count,
        sketch._sum,
        sketch._min,
        sketch._max,
        _store_dump(sketch._store),
        _store_dump(sketch._negative_store),
    ]


def _sketch_load(data: list[Any]) -> DDSketch:
    sketch = DDSketch(relative_accuracy=PERCENTILE_ACCURACY)
    count, zero, total, low, high, positive, negative = data
    sketch._count, sketch._zero_count, sketch._sum = count, zero, total
    sketch._min, sketch._max = low, high
    _store_load(sketch._store, positive)
    _store_load(sketch._negative_store, negative)
    return sketch


PercentileState: TypeAlias = list[float] | DDSketch


class Percentile(Aggregate[PercentileState]):
    """Exact (the values) up to 256 values, then DDSketch (Datadog's `ddsketch`):
    mergeable, every quantile within 1% relative error. Nearest-rank, as SQL's
    PERCENTILE_DISC: the value at rank ceil(q*n) of the sorted values."""

    name = "percentile"
    in_place = True
    uses_times = False
    exact_limit = 256

    def init(self) -> PercentileState:
        return []

    def _sketch(self, values: list[float]) -> DDSketch:
        sketch = DDSketch(relative_accuracy=PERCENTILE_ACCURACY)
        for value in values:
            sketch.add(value)
        return sketch

    def prepare(self, value: Any) -> float:
        number = _number("percentile", value)
        try:
            return float(number)
        except OverflowError:
            raise ExpressionRuntimeError("percentile(): a number too large for a float") from None

    def add(self, state: PercentileState, value: Any, t: int) -> PercentileState:
        number = value  # prepared: a float
        if isinstance(state, list):
            state.append(number)
            return state if len(state) <= self.exact_limit else self._sketch(state)
        state.add(number)
        return state

    def fits(self, kinds: ValueKinds) -> bool:
        return kinds.only(_NUMBERS) and kinds.ints_within(INT64_MIN, UINT64_MAX)

    def add_all(
        self, state: PercentileState, values: Sequence[Any], times: Sequence[int]
    ) -> PercentileState:
        numbers = list(map(float, values))  # as `prepare` gives them
        if isinstance(state, list):
            # the sketch then sees the values in the order `add` would have given them
            state.extend(numbers)
            return state if len(state) <= self.exact_limit else self._sketch(state)
        for number in numbers:
            state.add(number)
        return state

    def result_of(self, values: Sequence[Any], times: Sequence[int]) -> Any:
        if not values or len(values) > self.exact_limit:
            return super().result_of(values, times)
        q = self.parameter if self.parameter is not None else 0.5
        ordered = sorted(map(float, values))
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    def result_of_many(self, columns: list[Sequence[Any]]) -> list[Any]:
        if not all(columns) or max(map(len, columns), default=0) > self.exact_limit:
            return super().result_of_many(columns)
        q = self.parameter if self.parameter is not None else 0.5
        ceil = math.ceil
        count = len(columns)
        floats = columns if self._saw_only(_FLOATS) else map(map, repeat(float, count), columns)
        return [ordered[max(0, ceil(q * len(ordered)) - 1)] for ordered in map(sorted, floats)]

    def merge(self, a: PercentileState, b: PercentileState) -> PercentileState:
        if isinstance(a, list) and isinstance(b, list) and len(a) + len(b) <= self.exact_limit:
            return a + b
        left = self._sketch(a) if isinstance(a, list) else a
        left.merge(self._sketch(b) if isinstance(b, list) else b)
        return left

    def result(self, state: PercentileState) -> Any:
        q = self.parameter if self.parameter is not None else 0.5
        if isinstance(state, list):
            if not state:
                return None
            ordered = sorted(state)
            return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
        count = int(state._count)
        rank = max(0, math.ceil(q * count) - 1)
        # DDSketch ranks by floor(q' * (n - 1)): ask for the q' that lands on `rank`
        sketch_q = min(1.0, (rank + 1e-9) / (count - 1)) if count > 1 else 0.0
        value = state.get_quantile_value(sketch_q)
        return None if value is None or math.isnan(value) else value

    def dump(self, state: PercentileState) -> Any:
        return state if isinstance(state, list) else {"sketch": _sketch_dump(state)}

    def load(self, data: Any) -> PercentileState:
        return data if isinstance(data, list) else _sketch_load(data["sketch"])


DistinctState: TypeAlias = set[str] | datasketches.hll_sketch


class CountDistinct(Aggregate[DistinctState]):
    """Exact (a set) up to 1,000 distinct values, then an HLL sketch (Apache
    DataSketches, lg_k 14). Dumped as a list of the values' text, or base64 sketch bytes."""

    name = "count_distinct"
    in_place = True
    uses_times = False

    def init(self) -> DistinctState:
        return set()

    @staticmethod
    def _text(value: Any) -> str:
        return value if value.__class__ is str else repr(value)

    @staticmethod
    def _to_sketch(values: Any) -> Any:
        sketch = datasketches.hll_sketch(HLL_LG_K)
        for item in values:
            sketch.update(item)
        return sketch

    def prepare(self, value: Any) -> str:
        try:
            return self._text(value)
        except (ValueError, RecursionError):  # too many digits, or nested too deeply
            raise ExpressionRuntimeError(
                "count_distinct(): the value has no text form (too large or too deep)"
            ) from None

    def add(self, state: DistinctState, value: Any, t: int) -> DistinctState:
        item = value  # prepared: its text
        if isinstance(state, set):
            state.add(item)
            if len(state) <= DISTINCT_EXACT_LIMIT:
                return state
            return self._to_sketch(state)
        state.update(item)
        return state

    def fits(self, kinds: ValueKinds) -> bool:
        return kinds.only(_SCALARS) and kinds.ints_within(INT64_MIN, UINT64_MAX)

    def add_all(
        self, state: DistinctState, values: Sequence[Any], times: Sequence[int]
    ) -> DistinctState:
        texts = values if _TEXT.issuperset(map(type, values)) else list(map(self._text, values))
        if isinstance(state, set) and len(state) + len(texts) <= DISTINCT_EXACT_LIMIT:
            state.update(texts)
            return state
        # across the switch to a sketch: one by one, so the sketch sees what `add` gives it
        for text in texts:
            state = self.add(state, text, 0)
        return state

    def result_of(self, values: Sequence[Any], times: Sequence[int]) -> Any:
        if _TEXT.issuperset(map(type, values)):
            distinct = len(set(values))
            if distinct <= DISTINCT_EXACT_LIMIT:
                return distinct
        return super().result_of(values, times)

    def result_of_many(self, columns: list[Sequence[Any]]) -> list[Any]:
        if self._saw_only(_TEXT) or _TEXT.issuperset(map(type, chain.from_iterable(columns))):
            counts = list(map(len, map(set, columns)))
            if max(counts, default=0) <= DISTINCT_EXACT_LIMIT:
                return counts
        return super().result_of_many(columns)

    def merge(self, a: DistinctState, b: DistinctState) -> DistinctState:
        if isinstance(a, set) and isinstance(b, set):
            union = a | b
            if len(union) <= DISTINCT_EXACT_LIMIT:
                return union
        merged = datasketches.hll_union(HLL_LG_K)
        merged.update(self._to_sketch(a) if isinstance(a, set) else a)
        merged.update(self._to_sketch(b) if isinstance(b, set) else b)
        return merged.get_result()

    def result(self, state: DistinctState) -> Any:
        return len(state) if isinstance(state, set) else round(state.get_estimate())

    def dump(self, state: DistinctState) -> Any:
        if isinstance(state, set):
            return list(state)  # the order does not matter; sorting showed in profiles
        return base64.b64encode(state.serialize_compact()).decode()

    def load(self, data: Any) -> DistinctState:
        if isinstance(data, list):
            return set(data)
        return datasketches.hll_sketch.deserialize(base64.b64decode(data))


_BY_NAME: dict[str, type[Aggregate[Any]]] = {
    "sum": Sum,
    "avg": Avg,
    "min": Min,
    "max": Max,
    "first": First,
    "last": Last,
    "earliest": Earliest,
    "latest": Latest,
    "percentile": Percentile,
    "count_distinct": CountDistinct,
}


def make_aggregate(call: AggregateCall) -> Aggregate[Any]:
    if call.function == "count":
        return CountAll() if call.argument is None else CountValues()
    return _BY_NAME[call.function](call.parameter)
