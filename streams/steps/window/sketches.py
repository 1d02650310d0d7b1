"""The approximate aggregates: percentile (Datadog's DDSketch) and count_distinct (Apache
DataSketches' HLL), each exact up to a limit and a mergeable sketch beyond it. Both grow
their state in place (streams.steps.window.protocol.GrowsInPlace)."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from itertools import chain, repeat
from typing import Any, TypeAlias

import datasketches
from ddsketch import DDSketch

from streams.core.errors import ExpressionRuntimeError
from streams.core.jsonl import INT64_MIN, UINT64_MAX
from streams.steps.window.protocol import (
    FLOATS,
    NUMBERS,
    TEXT,
    JsonState,
    Looped,
    ValueKinds,
    number,
)

PERCENTILE_ACCURACY = 0.01  # DDSketch: every quantile within 1% relative error
DISTINCT_EXACT_LIMIT = 1000
HLL_LG_K = 14  # about 0.8% standard error; the contract allows 2%


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


class Percentile(JsonState[PercentileState], Looped[PercentileState]):
    """Exact (the values) up to 256 values, then DDSketch (Datadog's `ddsketch`):
    mergeable, every quantile within 1% relative error. Nearest-rank, as SQL's
    PERCENTILE_DISC: the value at rank ceil(q*n) of the sorted values."""

    skips_nulls = True
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
        checked = number("percentile", value)
        try:
            return float(checked)
        except OverflowError:
            raise ExpressionRuntimeError("percentile(): a number too large for a float") from None

    def add(self, state: PercentileState, value: Any, t: int) -> PercentileState:
        # `value` was prepared: a float
        if isinstance(state, list):
            state.append(value)
            return state if len(state) <= self.exact_limit else self._sketch(state)
        state.add(value)
        return state

    def accepts(self, kinds: ValueKinds) -> bool:
        super().accepts(kinds)
        return kinds.only(NUMBERS) and kinds.ints_within(INT64_MIN, UINT64_MAX)

    def add_all(
        self, state: PercentileState, values: Sequence[Any], times: Sequence[int]
    ) -> PercentileState:
        numbers = list(map(float, values))  # as `prepare` gives them
        if isinstance(state, list):
            # the sketch then sees the values in the order `add` would have given them
            state.extend(numbers)
            return state if len(state) <= self.exact_limit else self._sketch(state)
        for item in numbers:
            state.add(item)
        return state

    def results_of(self, columns: list[Sequence[Any]], times: Sequence[Sequence[int]]) -> list[Any]:
        limit = self.exact_limit
        q = self.parameter if self.parameter is not None else 0.5
        ceil = math.ceil
        if all(columns) and max(map(len, columns), default=0) <= limit:
            count = len(columns)
            floats = columns if self.saw_only(FLOATS) else map(map, repeat(float, count), columns)
            return [ordered[max(0, ceil(q * len(ordered)) - 1)] for ordered in map(sorted, floats)]
        results = []
        for values in columns:  # past the exact limit: the sketch, as `add` would build it
            if not values or len(values) > limit:
                results.append(self.result(self.add_all(self.init(), values, ())))
            else:
                ordered = sorted(map(float, values))
                results.append(ordered[max(0, ceil(q * len(ordered)) - 1)])
        return results

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


class CountDistinct(JsonState[DistinctState], Looped[DistinctState]):
    """Exact (a set) up to 1,000 distinct values, then an HLL sketch (Apache
    DataSketches, lg_k 14). Dumped as a list of the values' text, or base64 sketch bytes."""

    skips_nulls = True
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

    def accepts(self, kinds: ValueKinds) -> bool:
        super().accepts(kinds)
        return kinds.storable_scalars()

    def add_all(
        self, state: DistinctState, values: Sequence[Any], times: Sequence[int]
    ) -> DistinctState:
        texts = values if TEXT.issuperset(map(type, values)) else list(map(self._text, values))
        if isinstance(state, set) and len(state) + len(texts) <= DISTINCT_EXACT_LIMIT:
            state.update(texts)
            return state
        # across the switch to a sketch: one by one, so the sketch sees what `add` gives it
        for text in texts:
            state = self.add(state, text, 0)
        return state

    def results_of(self, columns: list[Sequence[Any]], times: Sequence[Sequence[int]]) -> list[Any]:
        if self.saw_only(TEXT) or TEXT.issuperset(map(type, chain.from_iterable(columns))):
            counts = list(map(len, map(set, columns)))
            if max(counts, default=0) <= DISTINCT_EXACT_LIMIT:
                return counts
        return [self.result(self.add_all(self.init(), values, ())) for values in columns]

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
