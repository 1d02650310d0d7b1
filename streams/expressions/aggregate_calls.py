"""Window aggregates written as SQL calls: `count()`, `sum(amount)`, `percentile(x, 0.9)`."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import cast

from sqlglot import exp

from streams.expressions.aggregate_names import AGGREGATE_FUNCTIONS
from streams.expressions.builder import _Compiler
from streams.expressions.expression import Expression
from streams.expressions.nodes import AGGREGATE_NODES as _AGGREGATE_NODES
from streams.expressions.parsing import _nesting_guard, _only_field, _parse, _top_level_fields

# --- window aggregates -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AggregateCall:
    """A parsed aggregate such as `sum(eur)` or `percentile(amount, 0.95)`."""

    source: str
    function: str
    argument: Expression | None
    parameter: float | None = None


def parse_aggregate(source: str) -> AggregateCall:
    """Parse one aggregate; raises ExpressionError naming the position on mistakes."""
    with _nesting_guard(source):
        return _parse_aggregate(source)


def _parse_aggregate(source: str) -> AggregateCall:
    tree = _parse(source)
    compiler = _Compiler(source)

    def argument(node: exp.Expr) -> Expression:
        if isinstance(node, exp.Star):
            raise compiler.error("use count() to count records", node)
        compiled = compiler.compile(node)
        return Expression(
            node.sql(), compiled.fn, _top_level_fields(node), _only_field(node), compiled.batch
        )

    if isinstance(tree, _AGGREGATE_NODES):
        name = cast(exp.Func, tree).sql_name().lower()
        inner = tree.this
        if name == "count":
            if inner is None or isinstance(inner, exp.Star):
                return AggregateCall(source, "count", None)
            if isinstance(inner, exp.Distinct):
                values = inner.expressions
                if len(values) != 1:
                    raise compiler.error("count(DISTINCT ...) takes one value", tree)
                return AggregateCall(source, "count_distinct", argument(values[0]))
        if inner is None or tree.expressions:
            raise compiler.error(f"{name}() takes exactly one value", tree)
        return AggregateCall(source, name, argument(inner))
    if isinstance(tree, exp.Anonymous) and tree.name.lower() in AGGREGATE_FUNCTIONS:
        name = tree.name.lower()  # earliest, latest, percentile, count_distinct
        args = list(tree.expressions)
        if AGGREGATE_FUNCTIONS[name] != (2, 2):  # one value
            if len(args) != 1:
                raise compiler.error(f"{name}() takes exactly one value", tree)
            return AggregateCall(source, name, argument(args[0]))
        if len(args) != 2:
            raise compiler.error(
                "percentile() takes a value and a fraction, e.g. percentile(amount, 0.95)", tree
            )
        fraction = compiler.compile(args[1])
        value = fraction.value
        if not (fraction.constant and isinstance(value, int | float) and 0 <= value <= 1):
            raise compiler.error("percentile() fraction must be a number from 0 to 1", args[1])
        return AggregateCall(source, name, argument(args[0]), float(value))
    name = (
        tree.name
        if isinstance(tree, exp.Anonymous)
        else tree.sql_name()
        if isinstance(tree, exp.Func)
        else ""
    )
    close = difflib.get_close_matches(name.lower(), AGGREGATE_FUNCTIONS, n=1) if name else []
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise compiler.error(
        f"not an aggregate{f' {name.lower()!r}' if name else ''}{hint}: use one of "
        + ", ".join(f"{n}()" for n in AGGREGATE_FUNCTIONS),
        tree,
    )
