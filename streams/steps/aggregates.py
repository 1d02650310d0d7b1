"""Window aggregates: one small class per function, in the shape of Quix Streams'
aggregators plus `merge` (hopping windows and sessions combine partial states).

Each keeps a JSON-serializable state: windows live in changelog-backed tables, written
with orjson, so a state never holds an integer beyond 64 bits (a record that would put one
there is a dead letter instead). `add` skips nulls (except `count()`), as SQL aggregates do.

A record's aggregates change together or not at all: `add` either raises before it changes
anything or returns a new state, except for the aggregates that grow a state in place
(`in_place`: percentile, count_distinct); those take a value `prepare`d beforehand and
then cannot fail.
"""

from __future__ import annotations

import base64
import math
from typing import Any, ClassVar

import datasketches
from ddsketch import DDSketch

from streams.errors import ExpressionRuntimeError
from streams.expressions import AggregateCall
from streams.jsonl import INT64_MIN, UINT64_MAX, state_problem

PERCENTILE_ACCURACY = 0.01  # DDSketch: every quantile within 1% relative error
DISTINCT_EXACT_LIMIT = 1000
HLL_LG_K = 14  # about 0.8% standard error; the contract allows 2%


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


def _checked_sum(total: Any) -> Any:
    if total.__class__ is int and not INT64_MIN <= total <= UINT64_MAX:
        raise ExpressionRuntimeError(
            "sum() goes beyond 64-bit integers, which window state cannot hold exactly"
        )
    return total


class Aggregate:
    """`init()` → state; `add(state, value, t)` → state; `merge(a, b)`; `result(state)`;
    `dump(state)` → JSON for the table, `load(json)` → state. States may be live objects
    (sketches); they are dumped once per touched window per batch.

    `in_place` aggregates change their state inside `add`: the window calls
    `prepare(value)` first (which may raise) and passes `add` what it returned."""

    name: ClassVar[str] = ""
    skips_nulls: ClassVar[bool] = True
    in_place: ClassVar[bool] = False

    def __init__(self, parameter: float | None = None) -> None:
        self.parameter = parameter

    def init(self) -> Any:
        return None

    def prepare(self, value: Any) -> Any:
        return value

    def add(self, state: Any, value: Any, t: int) -> Any:
        raise NotImplementedError

    def merge(self, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def result(self, state: Any) -> Any:
        return state

    def dump(self, state: Any) -> Any:
        return state

    def load(self, data: Any) -> Any:
        return data


class CountAll(Aggregate):
    name = "count"
    skips_nulls = False

    def init(self) -> Any:
        return 0

    def add(self, state: Any, value: Any, t: int) -> Any:
        return state + 1

    def merge(self, a: Any, b: Any) -> Any:
        return a + b


class CountValues(CountAll):
    skips_nulls = True


class Sum(Aggregate):
    name = "sum"

    def add(self, state: Any, value: Any, t: int) -> Any:
        number = _number("sum", value)
        return _checked_sum(number if state is None else state + number)

    def merge(self, a: Any, b: Any) -> Any:
        return b if a is None else a if b is None else _checked_sum(a + b)


class Avg(Aggregate):
    name = "avg"

    def init(self) -> Any:
        return [0.0, 0]

    def add(self, state: Any, value: Any, t: int) -> Any:
        return [state[0] + _number("avg", value), state[1] + 1]

    def merge(self, a: Any, b: Any) -> Any:
        return [a[0] + b[0], a[1] + b[1]]

    def result(self, state: Any) -> Any:
        return state[0] / state[1] if state[1] else None


class Min(Aggregate):
    name = "min"

    def add(self, state: Any, value: Any, t: int) -> Any:
        try:
            return _storable("min", value) if state is None or value < state else state
        except TypeError:
            raise ExpressionRuntimeError(f"min() cannot compare {value!r} with {state!r}") from None

    def merge(self, a: Any, b: Any) -> Any:
        return b if a is None else a if b is None else self.add(a, b, 0)


class Max(Min):
    name = "max"

    def add(self, state: Any, value: Any, t: int) -> Any:
        try:
            return _storable("max", value) if state is None or value > state else state
        except TypeError:
            raise ExpressionRuntimeError(f"max() cannot compare {value!r} with {state!r}") from None


class First(Aggregate):
    """The value with the earliest event time (the first to arrive among equal times)."""

    name = "first"

    def add(self, state: Any, value: Any, t: int) -> Any:
        return [t, _storable(self.name, value)] if state is None or t < state[0] else state

    def merge(self, a: Any, b: Any) -> Any:
        return b if a is None else a if b is None else (b if b[0] < a[0] else a)

    def result(self, state: Any) -> Any:
        return None if state is None else state[1]


class Last(First):
    name = "last"

    def add(self, state: Any, value: Any, t: int) -> Any:
        return [t, _storable(self.name, value)] if state is None or t >= state[0] else state

    def merge(self, a: Any, b: Any) -> Any:
        return b if a is None else a if b is None else (b if b[0] >= a[0] else a)


def _store_dump(store: Any) -> list[Any]:
    return [store.offset, store.min_key, store.max_key, store.count, list(store.bins)]


def _store_load(store: Any, data: list[Any]) -> None:
    store.offset, store.min_key, store.max_key, store.count, store.bins = data


class Percentile(Aggregate):
    """Exact (the values) up to 256 values, then DDSketch (Datadog's `ddsketch`):
    mergeable, every quantile within 1% relative error. Nearest-rank, as SQL's
    PERCENTILE_DISC: the value at rank ceil(q*n) of the sorted values."""

    name = "percentile"
    in_place = True
    exact_limit = 256

    def init(self) -> Any:
        return []

    def _sketch(self, values: list[float]) -> Any:
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

    def add(self, state: Any, value: Any, t: int) -> Any:
        number = value  # prepared: a float
        if state.__class__ is list:
            state.append(number)
            return state if len(state) <= self.exact_limit else self._sketch(state)
        state.add(number)
        return state

    def merge(self, a: Any, b: Any) -> Any:
        if a.__class__ is list and b.__class__ is list and len(a) + len(b) <= self.exact_limit:
            return a + b
        left = self._sketch(a) if a.__class__ is list else a
        left.merge(self._sketch(b) if b.__class__ is list else b)
        return left

    def result(self, state: Any) -> Any:
        q = self.parameter if self.parameter is not None else 0.5
        if state.__class__ is list:
            if not state:
                return None
            ordered = sorted(state)
            return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
        count = int(state.count)
        rank = max(0, math.ceil(q * count) - 1)
        # DDSketch ranks by floor(q' * (n - 1)): ask for the q' that lands on `rank`
        sketch_q = min(1.0, (rank + 1e-9) / (count - 1)) if count > 1 else 0.0
        value = state.get_quantile_value(sketch_q)
        return None if value is None or math.isnan(value) else value

    def dump(self, state: Any) -> Any:
        if state.__class__ is list:
            return state
        return {
            "sketch": [
                state._count,
                state._zero_count,
                state._sum,
                state._min,
                state._max,
                _store_dump(state._store),
                _store_dump(state._negative_store),
            ]
        }

    def load(self, data: Any) -> Any:
        if isinstance(data, list):
            return data
        sketch = DDSketch(relative_accuracy=PERCENTILE_ACCURACY)
        count, zero, total, low, high, positive, negative = data["sketch"]
        sketch._count, sketch._zero_count, sketch._sum = count, zero, total
        sketch._min, sketch._max = low, high
        _store_load(sketch._store, positive)
        _store_load(sketch._negative_store, negative)
        return sketch


class CountDistinct(Aggregate):
    """Exact (a set) up to 1,000 distinct values, then an HLL sketch (Apache
    DataSketches, lg_k 14). Dumped as a list of the values' text, or base64 sketch bytes."""

    name = "count_distinct"
    in_place = True

    def init(self) -> Any:
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

    def add(self, state: Any, value: Any, t: int) -> Any:
        item = value  # prepared: its text
        if isinstance(state, set):
            state.add(item)
            if len(state) <= DISTINCT_EXACT_LIMIT:
                return state
            return self._to_sketch(state)
        state.update(item)
        return state

    def merge(self, a: Any, b: Any) -> Any:
        if isinstance(a, set) and isinstance(b, set):
            union = a | b
            if len(union) <= DISTINCT_EXACT_LIMIT:
                return union
        merged = datasketches.hll_union(HLL_LG_K)
        merged.update(self._to_sketch(a) if isinstance(a, set) else a)
        merged.update(self._to_sketch(b) if isinstance(b, set) else b)
        return merged.get_result()

    def result(self, state: Any) -> Any:
        return len(state) if isinstance(state, set) else round(state.get_estimate())

    def dump(self, state: Any) -> Any:
        if isinstance(state, set):
            return list(state)  # the order does not matter; sorting showed in profiles
        return base64.b64encode(state.serialize_compact()).decode()

    def load(self, data: Any) -> Any:
        if isinstance(data, list):
            return set(data)
        return datasketches.hll_sketch.deserialize(base64.b64decode(data))


_BY_NAME: dict[str, type[Aggregate]] = {
    "sum": Sum,
    "avg": Avg,
    "min": Min,
    "max": Max,
    "first": First,
    "last": Last,
    "percentile": Percentile,
    "count_distinct": CountDistinct,
}


def make_aggregate(call: AggregateCall) -> Aggregate:
    if call.function == "count":
        return CountAll() if call.argument is None else CountValues()
    return _BY_NAME[call.function](call.parameter)
