"""The aggregate plan of a window step: its aggregates, the distinct arguments they read
(each evaluated once per record: sum(x), avg(x), max(x) and percentile(x, q) all read x),
and how a record's values reach the states, one by one (`added` + `grow`: all
aggregates or none) or a batch at a time (`fold`: rows of the fields the aggregates read,
see streams.steps.window.batch_path)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from models.pipeline_spec import WindowSpec
from streams.core.errors import ExpressionRuntimeError, RecordError
from streams.expressions import Expression, describe_failure
from streams.steps.window.implementations import make_aggregate
from streams.steps.window.protocol import Aggregate, Batched, GrowsInPlace, result_is_state

Row = tuple[Any, ...]
# per argument: (its values, those not null, their times)
Column = tuple[Sequence[Any], Sequence[Any], Sequence[int]]
NO_TIMES: tuple[int, ...] = ()


def _none(_: Any) -> None:
    return None


class AggregatePlan:
    def __init__(self, spec: WindowSpec) -> None:
        calls = list(spec.aggregates.values())
        self.names = list(spec.aggregates)
        session = spec.type == "session"
        self.aggregates: list[Aggregate[Any]] = [make_aggregate(c, session=session) for c in calls]
        distinct: dict[str, int] = {}
        self.arguments: list[Expression | None] = []
        positions = []
        for call in calls:
            text = call.argument.source if call.argument is not None else ""
            if text not in distinct:
                distinct[text] = len(self.arguments)
                self.arguments.append(call.argument)
            positions.append(distinct[text])
        self.positions = positions
        self.argument_fns = [a.fn if a is not None else _none for a in self.arguments]
        # aggregates that return a new state (rolled back by dropping it) apart from those
        # that grow theirs in place (given a prepared value, they cannot fail)
        pairs = list(enumerate(self.aggregates))
        self._adders = [
            (i, positions[i], agg.add, agg.skips_nulls, getattr(agg, "by_arrival", False))
            for i, agg in pairs
            if not isinstance(agg, GrowsInPlace)
        ]
        self._growers = [
            (i, positions[i], agg.prepare, agg.add, agg.skips_nulls)
            for i, agg in pairs
            if isinstance(agg, GrowsInPlace)
        ]
        # the batch path: the field each argument reads (None: count()'s nothing)
        self.fields = [a.field if a is not None else None for a in self.arguments]
        batched = [agg for agg in self.aggregates if isinstance(agg, Batched)]
        # the batch path takes tumbling and hopping windows whose aggregates all have the
        # batch protocol and read plain fields (streams.steps.window.batch_path)
        self.batched = (
            spec.type != "session"
            and len(batched) == len(self.aggregates)
            and all(a is None or a.field is not None for a in self.arguments)
        )
        # a pending row: each field some aggregate reads, once, then the event time if an
        # aggregate reads that
        self.row_fields = list(dict.fromkeys(f for f in self.fields if f is not None))
        self.row_index = [self.row_fields.index(f) if f is not None else None for f in self.fields]
        # per argument: whether a batch ever held a null there (then folds look for them)
        self.nullable = [False] * len(self.fields)
        # (name, argument position, aggregate, its batch protocol): empty when some
        # aggregate has none (then the step never takes the batch path)
        plans = list(
            zip(
                self.names,
                positions,
                self.aggregates,
                batched if self.batched else [],
                strict=False,
            )
        )
        self._folders = [
            (i, position, agg.skips_nulls, fast.add_all)
            for i, (_, position, agg, fast) in enumerate(plans)
        ]
        self.results_of = [
            (name, position, agg.skips_nulls, fast.results_of)
            for name, position, agg, fast in plans
        ]
        self.results_of_many = [
            (name, self.row_index[position], fast.results_of) for name, position, _, fast in plans
        ]
        # results: aggregates whose result is their state need no call
        self.results = [
            (name, None if result_is_state(agg) else agg.result)
            for name, agg in zip(self.names, self.aggregates, strict=True)
        ]
        self.kinds_of = [(position, fast) for _, position, _, fast in plans]
        self.limited = [(i, agg) for i, agg in pairs if hasattr(agg, "near_limit")]
        self.uses_times = any(fast.uses_times for _, _, _, fast in plans)
        self.row_width = len(self.row_fields) + self.uses_times

    # --- one record at a time: all aggregates or none ------------------------------------

    def fresh_states(self) -> list[Any]:
        return [agg.init() for agg in self.aggregates]

    def prepare(self, arguments: list[Any]) -> list[Any] | None:
        """The in-place aggregates' values, prepared before any state changes."""
        if not self._growers:
            return None
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

    def added(self, states: list[Any], arguments: list[Any], t: int, arrival: int = 0) -> list[Any]:
        """A new states list with the record added by the aggregates that return new
        states; `states` itself is unchanged, so a failure leaves nothing half-added.
        `arrival`: the record's arrival number, for the aggregates that keep it
        (session windows' first/last) instead of its time."""
        states = states.copy()
        try:
            for i, position, add, skips_nulls, by_arrival in self._adders:
                value = arguments[position]
                if value is None and skips_nulls:
                    continue
                states[i] = add(states[i], value, arrival if by_arrival else t)
        except RecordError:
            raise
        except Exception as exc:  # an overflow, say: the record's fault
            raise ExpressionRuntimeError(describe_failure(exc)) from None
        return states

    def grow(self, states: list[Any], prepared: list[Any] | None, t: int) -> None:
        """The in-place aggregates' part of a record `added` took (cannot fail)."""
        if prepared is None:
            return
        for (i, _, _, add, skips_nulls), value in zip(self._growers, prepared, strict=True):
            if value is None and skips_nulls:
                continue
            states[i] = add(states[i], value, t)

    def merged(self, states: list[Any], other: list[Any]) -> list[Any]:
        """New states, `states` and `other` combined (sessions that an event joins)."""
        try:
            return [
                agg.merge(a, b) for agg, a, b in zip(self.aggregates, states, other, strict=True)
            ]
        except RecordError:
            raise
        except Exception as exc:
            raise ExpressionRuntimeError(describe_failure(exc)) from None

    # --- a batch at a time ----------------------------------------------------------------

    def fold(self, states: list[Any] | None, rows: list[Row]) -> list[Any]:
        """`states` (None: fresh ones) with pending rows added (`Batched.add_all`)."""
        columns, times = self.columns(rows)
        if states is None:
            states = self.fresh_states()
        for i, position, skips_nulls, add_all in self._folders:
            every, values, value_times = columns[position]
            if skips_nulls:
                states[i] = add_all(states[i], values, value_times)
            else:
                states[i] = add_all(states[i], every, times)
        return states

    def columns(self, rows: list[Row]) -> tuple[list[Column], Sequence[int]]:
        """Per argument, from pending rows: (its values, those not null, their times);
        count() gets the rows themselves (only their number matters). And every row's
        time (when an aggregate reads times)."""
        fields = list(zip(*rows, strict=True)) if self.row_width else []
        times = fields[-1] if self.uses_times else NO_TIMES
        columns: list[Column] = []
        for index, nullable in zip(self.row_index, self.nullable, strict=True):
            if index is None:
                columns.append((rows, rows, times))
                continue
            field = fields[index]
            if nullable and None in field:
                present: Sequence[Any] = [v for v in field if v is not None]
                present_times: Sequence[int] = (
                    tuple(t for v, t in zip(field, times, strict=True) if v is not None)
                    if times
                    else times
                )
                columns.append((field, present, present_times))
            else:
                columns.append((field, field, times))
        return columns, times
