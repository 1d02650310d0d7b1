"""Checks of one expression of a query: it compiles as a YAML step's would, and holds no
aggregate where none may be."""

from __future__ import annotations

from sqlglot import exp

from streams.core.errors import ExpressionError
from streams.expressions import compile_condition, compile_expression
from streams.sql.diagnostics import Diagnostics
from streams.sql.trees import describe, is_aggregate


def check_expression(diagnostics: Diagnostics, node: exp.Expr, *, condition: bool = False) -> str:
    """The expression's text, compiled as a YAML step would compile it."""
    text = node.sql()
    try:
        if condition:
            compile_condition(text)
        else:
            compile_expression(text)
    except ExpressionError as exc:
        raise diagnostics.error_at(exc.reason, node) from None
    return text


def no_aggregates(diagnostics: Diagnostics, node: exp.Expr, reason: str) -> None:
    for found in node.walk():
        if is_aggregate(found):
            raise diagnostics.error_at(f"aggregate {describe(found)} {reason}", found)
