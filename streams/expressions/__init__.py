"""SQL expressions over records, parsed once with sqlglot and compiled to Python closures
(per record) and batch evaluators (per column).

An expression reads record fields (`amount`, nested `a.b.c`) and calls the whitelisted
functions in `functions`, the SQL function library; it can do nothing else. No string is
ever passed to eval, exec or compile, and no attribute of a Python object is reachable
from SQL. A leaf package: it imports nothing of sluice but `streams.core.errors`, so the
pipeline models, the steps and the SQL front end can all build on it.

NULL follows SQL's three-valued logic: None in, None out, with AND/OR/NOT/IS as SQL
defines them. A type error at run time (text compared with a number, `upper(3)`) raises
`ExpressionRuntimeError`, which the calling step turns into a dead letter.
"""

from __future__ import annotations

from sqlglot import exp

from streams.core.errors import ExpressionError, ExpressionRuntimeError
from streams.expressions import values
from streams.expressions.aggregate_calls import AggregateCall, parse_aggregate
from streams.expressions.aggregate_names import AGGREGATE_FUNCTIONS
from streams.expressions.batch import _batch_checked, _batch_constant
from streams.expressions.builder import _Compiler
from streams.expressions.expression import Evaluator, Expression, Record, describe_failure
from streams.expressions.nodes import BOOLEAN_NODES, NOT_CONDITIONS
from streams.expressions.parsing import (
    MAX_NESTING,
    _nesting_guard,
    _only_field,
    _parse,
    _position,
    _top_level_fields,
)

__all__ = [
    "AGGREGATE_FUNCTIONS",
    "MAX_NESTING",
    "AggregateCall",
    "Expression",
    "compile_condition",
    "compile_expression",
    "describe_failure",
    "literal_expression",
    "parse_aggregate",
]


def compile_expression(source: str) -> Expression:
    """Parse and compile a SQL expression. Raises ExpressionError with the position."""
    with _nesting_guard(source):
        tree = _parse(source)
        compiled = _Compiler(source).compile(tree)
        return Expression(
            source, compiled.fn, _top_level_fields(tree), _only_field(tree), compiled.batch
        )


def compile_condition(source: str) -> Expression:
    """Like `compile_expression`, for a filter/when clause: the result is True, False or
    None (NULL); any other value at run time is an ExpressionRuntimeError."""
    with _nesting_guard(source):
        return _compile_condition(source)


def _compile_condition(source: str) -> Expression:
    tree = _parse(source)
    if isinstance(tree, NOT_CONDITIONS) or (
        isinstance(tree, exp.Literal) and not isinstance(tree, exp.Boolean)
    ):
        raise ExpressionError(
            'a condition must be true or false, e.g. "amount > 0"; this is a value',
            source,
            _position(tree),
        )
    compiled = _Compiler(source).compile(tree)
    evaluator = compiled.fn
    batch = compiled.batch
    if not isinstance(tree, BOOLEAN_NODES):
        evaluator = _checked_condition(evaluator, source)
        batch = _batch_checked(batch, evaluator) if batch is not None else None
    return Expression(source, evaluator, _top_level_fields(tree), None, batch)


def literal_expression(value: object) -> Expression:
    """An expression that always yields `value` (a YAML number or boolean in a map)."""
    return Expression(repr(value), lambda _record: value, batch=_batch_constant(value))


def _checked_condition(evaluator: Evaluator, source: str) -> Evaluator:
    def condition(record: Record) -> bool | None:
        result = evaluator(record)
        if result is True or result is False or result is None:
            return result
        raise ExpressionRuntimeError(
            f"condition {source!r} gave {values.type_name(result)} {result!r}, not true/false"
        )

    return condition
