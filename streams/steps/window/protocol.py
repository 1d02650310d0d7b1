"""The aggregate protocol of windows and running aggregates, in the shape of Quix Streams'
`BaseAggregator` (`initialize`, `agg`, `result`) plus `merge` (hopping windows and
sessions combine partial states) and `dump`/`load` (states live in changelog-backed
tables, written with orjson: a state never holds an integer beyond 64 bits).

`Aggregate` is all an aggregate must have. A record's aggregates change together or not
at all: `add` either raises before it changes anything or returns a new state. An
aggregate that grows its state in place (a sketch) is `GrowsInPlace`: the step calls its
`prepare(value)` first (which may raise) and gives `add` what it returned, which then
cannot fail. `add` skips nulls (`skips_nulls`; not `count()`), as SQL aggregates do.

`Batched` is the optional fast path (see streams.steps.window.step): told what a batch
holds (`accepts(kinds)`), an aggregate says whether `add_all` takes every value of it
without an error; `add_all(state, values, times)` then gives the state `add` one by one
would, with the loops in C (`functools.reduce`, `max`, `list.extend`, `set.update`), and
`results_of` the results of fresh states given each window's values, many windows at
once. An aggregate without it makes its windows take records one by one. One more,
optional: `near_limit(state)` (sum's), whether a window's state must leave the batch path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeAlias, TypeVar, runtime_checkable

from streams.core.errors import ExpressionRuntimeError
from streams.core.jsonl import INT64_MIN, UINT64_MAX, state_problem

S = TypeVar("S")  # an aggregate's state
Number: TypeAlias = int | float

NONE = type(None)
NUMBERS = frozenset({int, float})
TEXT = frozenset({str})
FLOATS = frozenset({float})
SCALARS = frozenset({str, int, float, bool})


class Aggregate(Protocol[S]):
    """One aggregate function over a window's (or a key's) values."""

    skips_nulls: ClassVar[bool]

    def init(self) -> S: ...

    def add(self, state: S, value: Any, t: int) -> S: ...

    def merge(self, a: S, b: S) -> S: ...

    def result(self, state: S) -> Any: ...

    def dump(self, state: S) -> Any:
        """The state as JSON (what the table holds)."""
        ...

    def load(self, data: Any) -> S:
        """The state from `dump`'s JSON."""
        ...


@runtime_checkable
class GrowsInPlace(Protocol):
    """An aggregate whose `add` changes the state it is given (sketches)."""

    def prepare(self, value: Any) -> Any:
        """The value as `add` takes it; raises (ExpressionRuntimeError) before any state
        of the record changes."""
        ...


@runtime_checkable
class Batched(Protocol):
    """The fast path: many values of a batch at once."""

    uses_times: ClassVar[bool]  # `add_all` reads the values' event times

    def accepts(self, kinds: ValueKinds) -> bool:
        """Values of these kinds may be added (by either path: remember them); whether
        `add_all` takes any values of these kinds without an error."""
        ...

    def add_all(self, state: Any, values: Sequence[Any], times: Sequence[int]) -> Any:
        """`add` of each value in order; only for values `accepts` accepted. `values` hold
        no nulls if the aggregate skips them; `times` are their event times when the
        aggregate `uses_times` (else possibly empty)."""
        ...

    def results_of(self, columns: list[Sequence[Any]], times: Sequence[Sequence[int]]) -> list[Any]:
        """Per window, `result` of a fresh state given `add_all(column, its times)`:
        windows whose records all came in one go skip their states (most close so)."""
        ...


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
        return self.classes <= allowed or self.classes - {NONE} <= allowed

    def ints_within(self, low: int, high: int) -> bool:
        return int not in self.classes or (low <= self.low and self.high <= high)

    def storable_scalars(self) -> bool:
        """Only text, numbers and booleans a changelog holds exactly (or nulls)."""
        return self.only(SCALARS) and self.ints_within(INT64_MIN, UINT64_MAX)


class JsonState(Generic[S]):
    """Defaults of `Aggregate` for a state that is its own JSON and its own result;
    `parameter`: the call's constant (percentile's fraction)."""

    skips_nulls: ClassVar[bool] = True

    def __init__(self, parameter: float | None = None) -> None:
        self.parameter = parameter

    def result(self, state: S) -> Any:
        return state

    def dump(self, state: S) -> Any:
        return state

    def load(self, data: Any) -> S:
        state: S = data  # the states of the JSON kind are their JSON
        return state


def result_is_state(aggregate: object) -> bool:
    """Whether the aggregate's result is its state (JsonState's): no call needed."""
    return getattr(type(aggregate), "result", None) is JsonState.result


class Looped(Generic[S]):
    """`Batched` by looping over `add` (the aggregate says which kinds `accepts`, after
    `Looped.accepts` has remembered them): for aggregates that gain nothing from C loops."""

    uses_times: ClassVar[bool] = True
    seen: set[type] | None = None  # the classes `accepts` was told of (None: never)

    def init(self) -> S:
        raise NotImplementedError

    def add(self, state: S, value: Any, t: int) -> S:
        raise NotImplementedError

    def result(self, state: S) -> Any:
        raise NotImplementedError

    def accepts(self, kinds: ValueKinds) -> bool:
        if self.seen is None:
            self.seen = set()
        self.seen.update(kinds.classes - {NONE})
        return False

    def saw_only(self, classes: frozenset[type]) -> bool:
        """Whether every value given so far (see `accepts`) is of these classes."""
        return self.seen is not None and self.seen <= classes

    def add_all(self, state: S, values: Sequence[Any], times: Sequence[int]) -> S:
        add = self.add
        for value, t in zip(values, times, strict=True):
            state = add(state, value, t)
        return state

    def results_of(self, columns: list[Sequence[Any]], times: Sequence[Sequence[int]]) -> list[Any]:
        add_all, init, result = self.add_all, self.init, self.result
        if not times:
            return [result(add_all(init(), values, ())) for values in columns]
        return [
            result(add_all(init(), values, ts)) for values, ts in zip(columns, times, strict=True)
        ]


def number(function: str, value: Any) -> float | int:
    if value.__class__ is int or value.__class__ is float:
        return value
    raise ExpressionRuntimeError(
        f"{function}() needs numbers, got {type(value).__name__} {value!r}"
    )


def storable(function: str, value: Any) -> Any:
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
