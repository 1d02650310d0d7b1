"""The exact aggregates: count, sum, avg, min, max, first, last, earliest, latest. Each
is the small protocol (streams.steps.window.protocol) plus, where C loops pay, the batch
protocol's `add_all` and `results_of`."""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce
from itertools import repeat
from operator import add as _ADD
from operator import truediv
from typing import Any, ClassVar

from streams.core.errors import ExpressionRuntimeError
from streams.core.jsonl import INT64_MIN, UINT64_MAX
from streams.steps.window.protocol import (
    NONE,
    NUMBERS,
    TEXT,
    JsonState,
    Looped,
    Number,
    ValueKinds,
    number,
    storable,
)

# sum() takes a batch of ints this small: a window holds fewer than 2**21 pending records
# (streams.steps.window.plan.BATCH_LIMIT), so their partial sums stay within 2**52 of the
# state, and a window whose int sum passes SUM_STATE_LIMIT leaves the batch path
# (`near_limit`): a sum past 64 bits is the one record's dead letter, as one by one
SUM_INT_LIMIT = 2**31
SUM_STATE_LIMIT = 2**62


def _checked_sum(total: Number) -> Number:
    if total.__class__ is int and not INT64_MIN <= total <= UINT64_MAX:
        raise ExpressionRuntimeError(
            "sum() goes beyond 64-bit integers, which window state cannot hold exactly"
        )
    return total


class CountAll(JsonState[int], Looped[int]):
    """count(): every record, nulls too."""

    skips_nulls = False
    uses_times = False

    def init(self) -> int:
        return 0

    def add(self, state: int, value: Any, t: int) -> int:
        return state + 1

    def merge(self, a: int, b: int) -> int:
        return a + b

    def accepts(self, kinds: ValueKinds) -> bool:
        return True

    def add_all(self, state: int, values: Sequence[Any], times: Sequence[int]) -> int:
        return state + len(values)

    def results_of(self, columns: list[Sequence[Any]], times: Sequence[Sequence[int]]) -> list[Any]:
        return list(map(len, columns))


class CountValues(CountAll):
    """count(x): the values that are not null (CountAll's loops, given no nulls)."""

    skips_nulls = True


class Sum(JsonState[Number | None], Looped[Number | None]):
    uses_times = False

    def init(self) -> Number | None:
        return None

    def add(self, state: Number | None, value: Any, t: int) -> Number | None:
        value = number("sum", value)
        return _checked_sum(value if state is None else state + value)

    def merge(self, a: Number | None, b: Number | None) -> Number | None:
        return b if a is None else a if b is None else _checked_sum(a + b)

    def accepts(self, kinds: ValueKinds) -> bool:
        return kinds.only(NUMBERS) and kinds.ints_within(-SUM_INT_LIMIT, SUM_INT_LIMIT)

    def add_all(
        self, state: Number | None, values: Sequence[Any], times: Sequence[int]
    ) -> Number | None:
        if not values:
            return state
        # reduce adds left to right as `add` does (sum() of floats compensates from 3.12)
        total = reduce(_ADD, values) if state is None else reduce(_ADD, values, state)
        return _checked_sum(total)

    def results_of(self, columns: list[Sequence[Any]], times: Sequence[Sequence[int]]) -> list[Any]:
        if not all(columns):
            return [_checked_sum(reduce(_ADD, c)) if c else None for c in columns]
        totals = list(map(reduce, repeat(_ADD, len(columns)), columns))
        return [_checked_sum(t) if t.__class__ is int else t for t in totals]

    def near_limit(self, state: Number | None) -> bool:
        """Whether the batch path must leave this state alone (see SUM_STATE_LIMIT)."""
        return state.__class__ is int and not -SUM_STATE_LIMIT < state < SUM_STATE_LIMIT


class Avg(JsonState[list[float]], Looped[list[float]]):
    uses_times = False

    def init(self) -> list[float]:
        return [0.0, 0]

    def add(self, state: list[float], value: Any, t: int) -> list[float]:
        return [state[0] + number("avg", value), state[1] + 1]

    def merge(self, a: list[float], b: list[float]) -> list[float]:
        return [a[0] + b[0], a[1] + b[1]]

    def result(self, state: list[float]) -> Any:
        return state[0] / state[1] if state[1] else None

    def accepts(self, kinds: ValueKinds) -> bool:
        return kinds.only(NUMBERS) and kinds.ints_within(INT64_MIN, UINT64_MAX)

    def add_all(
        self, state: list[float], values: Sequence[Any], times: Sequence[int]
    ) -> list[float]:
        if not values:
            return state
        return [reduce(_ADD, values, state[0]), state[1] + len(values)]

    def results_of(self, columns: list[Sequence[Any]], times: Sequence[Sequence[int]]) -> list[Any]:
        if not all(columns):
            return [reduce(_ADD, c, 0.0) / len(c) if c else None for c in columns]
        count = len(columns)
        totals = map(reduce, repeat(_ADD, count), columns, repeat(0.0, count))
        return list(map(truediv, totals, map(len, columns)))


class Min(JsonState[Any], Looped[Any]):
    """The batch path needs every window's state comparable with the batch's values, so
    the aggregate remembers which families (numbers, text, others) any window may hold."""

    uses_times = False
    best: ClassVar[Any] = min

    def __init__(self, parameter: float | None = None) -> None:
        super().__init__(parameter)
        self.families: set[str] = set()

    def init(self) -> Any:
        return None

    def add(self, state: Any, value: Any, t: int) -> Any:
        try:
            return storable("min", value) if state is None or value < state else state
        except TypeError:
            raise ExpressionRuntimeError(f"min() cannot compare {value!r} with {state!r}") from None

    def merge(self, a: Any, b: Any) -> Any:
        return b if a is None else a if b is None else self.add(a, b, 0)

    @staticmethod
    def _family(kinds: ValueKinds) -> str | None:
        if kinds.classes <= {NONE}:
            return None
        if kinds.only(NUMBERS):
            return "numbers" if kinds.ints_within(INT64_MIN, UINT64_MAX) else "others"
        return "text" if kinds.only(TEXT) else "others"

    def accepts(self, kinds: ValueKinds) -> bool:
        family = self._family(kinds)
        if family is None:
            return True
        self.families.add(family)
        return family != "others" and self.families <= {family}

    def load(self, data: Any) -> Any:
        if data is not None:
            self.accepts(ValueKinds.of([data]))
        return data

    def add_all(self, state: Any, values: Sequence[Any], times: Sequence[int]) -> Any:
        if not values:
            return state
        best = min(values)  # the first of equal values, as `add` keeps
        return best if state is None or best < state else state

    def results_of(self, columns: list[Sequence[Any]], times: Sequence[Sequence[int]]) -> list[Any]:
        if all(columns):
            return list(map(self.best, columns))
        best = self.best
        return [best(c) if c else None for c in columns]


class Max(Min):
    best: ClassVar[Any] = max

    def add(self, state: Any, value: Any, t: int) -> Any:
        try:
            return storable("max", value) if state is None or value > state else state
        except TypeError:
            raise ExpressionRuntimeError(f"max() cannot compare {value!r} with {state!r}") from None

    def add_all(self, state: Any, values: Sequence[Any], times: Sequence[int]) -> Any:
        if not values:
            return state
        best = max(values)
        return best if state is None or best > state else state


class First(JsonState[Any], Looped[Any]):
    """The first value to arrive (arrival order, as quix-streams' First); `earliest` is
    the one with the smallest event time. Session windows use `ArrivalFirst`."""

    uses_times = False
    function: ClassVar[str] = "first"

    def init(self) -> Any:
        return None

    def add(self, state: Any, value: Any, t: int) -> Any:
        return storable(self.function, value) if state is None else state

    def add_all(self, state: Any, values: Sequence[Any], times: Sequence[int]) -> Any:
        return state if state is not None or not values else storable(self.function, values[0])

    def merge(self, a: Any, b: Any) -> Any:
        return b if a is None else a

    def accepts(self, kinds: ValueKinds) -> bool:
        super().accepts(kinds)
        return kinds.storable_scalars()


class Last(First):
    """The last value to arrive; `latest` is the one with the largest event time."""

    function: ClassVar[str] = "last"

    def add(self, state: Any, value: Any, t: int) -> Any:
        return storable(self.function, value)

    def add_all(self, state: Any, values: Sequence[Any], times: Sequence[int]) -> Any:
        return storable(self.function, values[-1]) if values else state

    def merge(self, a: Any, b: Any) -> Any:
        return a if b is None else b


class Earliest(JsonState[list[Any] | None], Looped[list[Any] | None]):
    """The value with the smallest event time (the first to arrive among equal times),
    as quix-streams' Earliest. Batches: `Looped`, which reads the times."""

    function: ClassVar[str] = "earliest"

    def init(self) -> list[Any] | None:
        return None

    def add(self, state: list[Any] | None, value: Any, t: int) -> list[Any] | None:
        return [t, storable(self.function, value)] if state is None or t < state[0] else state

    def merge(self, a: list[Any] | None, b: list[Any] | None) -> list[Any] | None:
        return b if a is None else a if b is None else (b if b[0] < a[0] else a)

    def accepts(self, kinds: ValueKinds) -> bool:
        super().accepts(kinds)
        return kinds.storable_scalars()

    def result(self, state: list[Any] | None) -> Any:
        return None if state is None else state[1]


class Latest(Earliest):
    """The value with the largest event time (the last to arrive among equal times)."""

    function: ClassVar[str] = "latest"

    def add(self, state: list[Any] | None, value: Any, t: int) -> list[Any] | None:
        return [t, storable(self.function, value)] if state is None or t >= state[0] else state

    def merge(self, a: list[Any] | None, b: list[Any] | None) -> list[Any] | None:
        return b if a is None else a if b is None else (b if b[0] >= a[0] else a)


class ArrivalFirst(JsonState[list[Any] | None]):
    """first() of session windows: the state keeps the value's arrival number (per
    partition, streams.steps.window.store), so sessions that a record joins together give
    the value that arrived first of all their records. A plain first value can only keep
    one session's: with records arriving at t=N (x=1), N-2000 (x=0), then N-1 bridging the
    2 s gap, that was 0, and DESIGN.md's arrival order says 1 (a property test found it).
    A state from before arrival numbers (the plain value) counts as arrived before any
    record since. One by one only: sessions never take the batch path."""

    function: ClassVar[str] = "first"
    by_arrival: ClassVar[bool] = True  # `add` is given the record's arrival number

    def init(self) -> list[Any] | None:
        return None

    def add(self, state: list[Any] | None, value: Any, arrival: int) -> list[Any] | None:
        return [arrival, storable(self.function, value)] if state is None else state

    def merge(self, a: list[Any] | None, b: list[Any] | None) -> list[Any] | None:
        return b if a is None else a if b is None else (b if b[0] < a[0] else a)

    def result(self, state: list[Any] | None) -> Any:
        return None if state is None else state[1]

    def load(self, data: Any) -> list[Any] | None:
        # a stored state is [arrival, value]; a plain scalar is one from before
        return data if data is None or isinstance(data, list) else [-1, data]


class ArrivalLast(ArrivalFirst):
    """last() of session windows: the value that arrived last of all merged records."""

    function: ClassVar[str] = "last"

    def add(self, state: list[Any] | None, value: Any, arrival: int) -> list[Any] | None:
        return [arrival, storable(self.function, value)]

    def merge(self, a: list[Any] | None, b: list[Any] | None) -> list[Any] | None:
        return b if a is None else a if b is None else (b if b[0] > a[0] else a)
