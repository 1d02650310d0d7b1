"""An SQL aggregate call as the window step's aggregate: `COUNT(DISTINCT x)` is
`count_distinct(x)`, `COUNT(*)` is `count()`; checked as the step will parse it."""

from __future__ import annotations

from typing import cast

from sqlglot import exp

from streams.core.errors import ExpressionError
from streams.expressions import parse_aggregate
from streams.sql.diagnostics import Diagnostics
from streams.sql.scope import Scope
from streams.sql.trees import aggregate_name, describe, is_aggregate, is_star


def aggregate_call(diagnostics: Diagnostics, scope: Scope, node: exp.Expr) -> str:
    """The window aggregate for an SQL aggregate call, e.g. `count_distinct(order_id)`."""
    name = cast(str, aggregate_name(node))
    upper = name.upper()
    for inner in node.walk():
        if inner is not node and is_aggregate(inner):
            raise diagnostics.error_at(f"aggregates cannot be nested: {describe(node)}", inner)

    def argument(value: exp.Expr | None) -> str:
        if value is None or is_star(value):
            raise diagnostics.error_at(f"{upper}(*): only COUNT(*) counts rows", node)
        if isinstance(value, exp.Distinct):
            raise diagnostics.error_at(
                f"{upper}(DISTINCT …): DISTINCT works in COUNT(DISTINCT x) only", node
            )
        resolved = scope.resolve(value, f"{upper}(…)")
        return resolved.sql()

    if isinstance(node, exp.Anonymous):
        args: list[exp.Expr] = list(node.expressions)
    else:
        args = [a for a in (node.this, *(node.args.get("expressions") or [])) if a is not None]
    if name == "count":
        inner = node.this
        if inner is None or isinstance(inner, exp.Star):
            text = "count()"
        elif isinstance(inner, exp.Distinct):
            if len(inner.expressions) != 1:
                raise diagnostics.error_at("COUNT(DISTINCT …) takes one value", node)
            text = f"count_distinct({argument(inner.expressions[0])})"
        else:
            text = f"count({argument(inner)})"
    elif name == "percentile":
        if len(args) != 2:
            raise diagnostics.error_at(
                "PERCENTILE takes a value and a fraction, e.g. PERCENTILE(amount, 0.9)", node
            )
        text = f"percentile({argument(args[0])}, {args[1].sql()})"
    else:
        if len(args) != 1:
            hint = {
                "max": " (GREATEST(a, b) is the larger of values)",
                "min": " (LEAST(a, b) is the smaller of values)",
            }.get(name, "")
            raise diagnostics.error_at(f"{upper}() takes one value{hint}", node)
        text = f"{name}({argument(args[0])})"
    try:
        parse_aggregate(text)
    except ExpressionError as exc:
        raise diagnostics.error_at(exc.reason, node) from None
    return text
