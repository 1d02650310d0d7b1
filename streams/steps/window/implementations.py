"""Each aggregate name of the SQL table (streams.expressions.AGGREGATE_FUNCTIONS, the one
list of names) with its implementation; a name without one fails at import, not at the
first pipeline that uses it."""

from __future__ import annotations

from typing import Any

from streams.expressions import AGGREGATE_FUNCTIONS, AggregateCall
from streams.steps.window.exact import (
    ArrivalFirst,
    ArrivalLast,
    Avg,
    CountAll,
    CountValues,
    Earliest,
    First,
    Last,
    Latest,
    Max,
    Min,
    Sum,
)
from streams.steps.window.protocol import Aggregate
from streams.steps.window.sketches import CountDistinct, Percentile

IMPLEMENTATIONS: dict[str, type[Any]] = {
    "count": CountValues,  # count(x); count() is CountAll
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
if set(IMPLEMENTATIONS) != set(AGGREGATE_FUNCTIONS):
    raise ImportError(  # a programming error: the two tables must name the same functions
        f"aggregate implementations {sorted(IMPLEMENTATIONS)} do not match the SQL names "
        f"{sorted(AGGREGATE_FUNCTIONS)}"
    )


# session windows merge: their first/last keep each value's arrival number
IN_SESSIONS: dict[str, type[Any]] = {"first": ArrivalFirst, "last": ArrivalLast}


def make_aggregate(call: AggregateCall, *, session: bool = False) -> Aggregate[Any]:
    """The implementation of one parsed call (its parameter: percentile's fraction), in
    a session window if `session`."""
    if call.function == "count" and call.argument is None:
        return CountAll()
    implementation = IN_SESSIONS.get(call.function) if session else None
    aggregate: Aggregate[Any] = (implementation or IMPLEMENTATIONS[call.function])(call.parameter)
    return aggregate
