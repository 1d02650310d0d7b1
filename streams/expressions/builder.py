"""A sqlglot tree to closures: each node's evaluator and, where one exists, its batch
evaluator."""

from __future__ import annotations

import difflib
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlglot import exp

from streams.core.errors import ExpressionError, ExpressionRuntimeError
from streams.expressions import functions as fn
from streams.expressions import values
from streams.expressions.aggregate_names import AGGREGATE_FUNCTIONS
from streams.expressions.batch import (
    _batch_arithmetic,
    _batch_case,
    _batch_compare_constant,
    _batch_constant,
    _batch_field,
    _batch_in_constants,
    _batch_logic,
    _batch_not,
    _per_record,
)
from streams.expressions.casts import cast_evaluator
from streams.expressions.closures import (
    _and,
    _arithmetic,
    _call,
    _case,
    _compare,
    _compare_constant,
    _concat_pipe,
    _field_getter,
    _in_constants,
    _in_dynamic,
    _like,
    _like_regex,
    _negate,
    _not,
    _or,
)
from streams.expressions.expression import BatchEvaluator, Evaluator, Record, describe_failure
from streams.expressions.nodes import (
    AGGREGATE_NODES,
    ARITHMETIC,
    COMPARISONS,
    FUNCTION_NODES,
    cast_target,
)
from streams.expressions.parsing import _column_path, _position

# --- compilation -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Compiled:
    fn: Evaluator
    constant: bool = False
    value: Any = None
    batch: BatchEvaluator | None = None  # None: `fn` record by record

    def column(self) -> BatchEvaluator:
        return self.batch if self.batch is not None else _per_record(self.fn)


def _constant(value: Any) -> _Compiled:
    return _Compiled(
        lambda _record: value, constant=True, value=value, batch=_batch_constant(value)
    )


class _Compiler:
    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, reason: str, node: exp.Expr) -> ExpressionError:
        return ExpressionError(reason, self.source, _position(node))

    def compile(self, node: exp.Expr) -> _Compiled:
        compiled = self._compile(node)
        if compiled.constant or not _is_constant_tree(node):
            return compiled
        try:
            return _constant(compiled.fn({}))
        except Exception as exc:  # a constant that always fails is a config error
            raise self.error(describe_failure(exc), node) from None

    def _compile(self, node: exp.Expr) -> _Compiled:
        path = _column_path(node)
        if path is not None:
            batch = _batch_field(path[0]) if len(path) == 1 else None
            return _Compiled(_field_getter(path), batch=batch)
        if isinstance(node, exp.Paren):
            return self.compile(node.this)
        if isinstance(node, exp.Boolean):
            return _constant(bool(node.this))
        if isinstance(node, exp.Null):
            return _constant(None)
        if isinstance(node, exp.Literal):
            return _constant(self._literal(node))
        if isinstance(node, exp.And | exp.Or):
            return self._logical(node)
        if isinstance(node, exp.Not):
            operand = self.compile(node.this)
            evaluator = _not(operand.fn, self.source)
            return _Compiled(evaluator, batch=_batch_not(operand.column(), evaluator))
        if type(node) in COMPARISONS:
            return self._comparison(node)
        if type(node) in ARITHMETIC:
            return self._arithmetic(node)
        if isinstance(node, exp.Neg):
            return _Compiled(_negate(self.compile(node.this).fn))
        if isinstance(node, exp.DPipe):
            return _Compiled(
                _concat_pipe(self.compile(node.this).fn, self.compile(node.expression).fn)
            )
        if isinstance(node, exp.In):
            return self._in(node)
        if isinstance(node, exp.Between):
            return self._between(node)
        if isinstance(node, exp.Like | exp.ILike):
            return self._like(node, escape=None)
        if isinstance(node, exp.Escape) and isinstance(node.this, exp.Like | exp.ILike):
            escape = self.compile(node.expression)
            if not (escape.constant and isinstance(escape.value, str) and len(escape.value) == 1):
                raise self.error("ESCAPE takes a single character", node)
            return self._like(node.this, escape=escape.value)
        if isinstance(node, exp.Is):
            return self._is(node)
        if isinstance(node, exp.Case):
            return self._case(node)
        if isinstance(node, exp.If):
            cond = self.compile(node.this).fn
            then = self.compile(node.args["true"]).fn
            other = node.args.get("false")
            return _Compiled(_case(None, [(cond, then)], self.compile(other).fn if other else None))
        if isinstance(node, exp.Cast | exp.TryCast):
            return self._cast(node)
        if isinstance(node, exp.Trim):
            return self._trim(node)
        return self._function(node)

    # -- leaves

    def _literal(self, node: exp.Literal) -> object:
        if node.is_string:
            return node.this
        text = str(node.this)
        try:
            return int(text)
        except ValueError:
            return float(text)

    # -- logic

    def _logical(self, node: exp.Expr) -> _Compiled:
        operands: list[_Compiled] = []
        kind = type(node)

        def flatten(n: exp.Expr) -> None:
            if type(n) is kind:
                flatten(n.this)
                flatten(n.expression)
            else:
                operands.append(self.compile(n))

        flatten(node)
        functions = [o.fn for o in operands]
        columns = [o.column() for o in operands]
        if kind is exp.And:
            evaluator = _and(functions, self.source)
            return _Compiled(evaluator, batch=_batch_logic(columns, all, operator.and_, evaluator))
        evaluator = _or(functions, self.source)
        return _Compiled(evaluator, batch=_batch_logic(columns, any, operator.or_, evaluator))

    def _comparison(self, node: exp.Expr) -> _Compiled:
        symbol, op = COMPARISONS[type(node)]
        left = self.compile(node.this)
        right = self.compile(node.expression)
        if right.constant and not left.constant:
            evaluator = _compare_constant(left.fn, right.value, symbol, op)
            batch = _batch_compare_constant(left.column(), right.value, op, evaluator)
            return _Compiled(evaluator, batch=batch)
        return _Compiled(_compare(left.fn, right.fn, symbol, op))

    def _arithmetic(self, node: exp.Expr) -> _Compiled:
        symbol = ARITHMETIC[type(node)]
        left = self.compile(node.this)
        right = self.compile(node.expression)
        evaluator = _arithmetic(left.fn, right.fn, symbol)
        batch = _batch_arithmetic(left.column(), right.column(), symbol, evaluator)
        return _Compiled(evaluator, batch=batch)

    def _in(self, node: exp.In) -> _Compiled:
        if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
            raise self.error("IN takes a list of values, e.g. x IN ('a', 'b')", node)
        needle_compiled = self.compile(node.this)
        needle = needle_compiled.fn
        options = [self.compile(e) for e in node.expressions]
        if not options:
            raise self.error("IN needs at least one value", node)
        if all(o.constant for o in options):
            values = [o.value for o in options]
            evaluator = _in_constants(needle, values)
            batch = _batch_in_constants(needle_compiled.column(), values, evaluator)
            return _Compiled(evaluator, batch=batch)
        return _Compiled(_in_dynamic(needle, [o.fn for o in options]))

    def _between(self, node: exp.Between) -> _Compiled:
        value = self.compile(node.this).fn
        low = self.compile(node.args["low"]).fn
        high = self.compile(node.args["high"]).fn
        lower = _compare(value, low, ">=", operator.ge)
        upper = _compare(value, high, "<=", operator.le)
        return _Compiled(_and([lower, upper], self.source))

    def _like(self, node: exp.Like | exp.ILike, escape: str | None) -> _Compiled:
        value = self.compile(node.this).fn
        pattern = self.compile(node.expression)
        insensitive = isinstance(node, exp.ILike)
        negate = bool(node.args.get("negate"))
        if pattern.constant:
            if pattern.value is None:
                return _constant(None)
            if not isinstance(pattern.value, str):
                raise self.error("LIKE pattern must be text", node.expression)
            try:
                regex = _like_regex(pattern.value, escape, insensitive)
            except ExpressionRuntimeError as exc:
                raise self.error(str(exc), node.expression) from None
            return _Compiled(_like(value, lambda _r: regex, negate))

        cache: dict[str, fn.Regex] = {}

        def dynamic_regex(record: Record) -> fn.Regex | None:
            # a pattern from the record: RE2 matches it in linear time too; compiled
            # patterns are kept while there are few of them
            text = pattern.fn(record)
            if text is None:
                return None
            regex = cache.get(text)
            if regex is None:
                regex = _like_regex(values.as_text("LIKE", text), escape, insensitive)
                if len(cache) < 256:
                    cache[text] = regex
            return regex

        return _Compiled(_like(value, dynamic_regex, negate))

    def _is(self, node: exp.Is) -> _Compiled:
        value = self.compile(node.this).fn
        target = node.expression
        if isinstance(target, exp.Null):
            return _Compiled(lambda r: value(r) is None)
        if isinstance(target, exp.Boolean):
            expected = bool(target.this)
            return _Compiled(lambda r: value(r) is expected)
        raise self.error("IS must be followed by NULL, TRUE or FALSE", node)

    def _case(self, node: exp.Case) -> _Compiled:
        subject = self.compile(node.this).fn if node.this is not None else None
        compiled = [
            (self.compile(branch.this), self.compile(branch.args["true"]))
            for branch in node.args.get("ifs") or []
        ]
        branches = [(when.fn, then.fn) for when, then in compiled]
        default_node = node.args.get("default")
        default = self.compile(default_node) if default_node else None
        evaluator = _case(subject, branches, default.fn if default is not None else None)
        if subject is not None:
            return _Compiled(evaluator)
        batch = _batch_case(
            [(when.column(), then.column()) for when, then in compiled],
            default.column() if default is not None else None,
            evaluator,
        )
        return _Compiled(evaluator, batch=batch)

    def _cast(self, node: exp.Cast) -> _Compiled:
        target = cast_target(node.args["to"])
        if target is None:
            raise self.error(
                f"cannot CAST to {node.args['to'].sql()}: "
                "use INT, FLOAT, TEXT, BOOLEAN or TIMESTAMP",
                node,
            )
        value = self.compile(node.this).fn
        return _Compiled(cast_evaluator(value, target, safe=isinstance(node, exp.TryCast)))

    def _trim(self, node: exp.Trim) -> _Compiled:
        position = str(node.args.get("position") or "").upper()
        name = {"LEADING": "ltrim", "TRAILING": "rtrim"}.get(position, "trim")
        args = [node.this] + ([node.expression] if node.expression else [])
        return self._call(name, args, node)

    # -- functions

    def _function(self, node: exp.Expr) -> _Compiled:
        if isinstance(node, AGGREGATE_NODES) or (
            isinstance(node, exp.Anonymous) and node.name.lower() in AGGREGATE_FUNCTIONS
        ):
            anonymous = isinstance(node, exp.Anonymous)
            name = (node.name if anonymous else cast(exp.Func, node).sql_name()).lower()
            raise self.error(
                f"aggregate function {name}() is only allowed in a window's aggregates", node
            )
        if isinstance(node, exp.Anonymous):
            return self._call(node.name.lower(), list(node.expressions), node)
        spec = FUNCTION_NODES.get(type(node))
        if spec is not None:
            name, slots = spec
            return self._call(name, _arguments(node, slots), node)
        if isinstance(node, exp.Func):
            return self._call(node.sql_name().lower(), [], node)
        raise self.error(f"unsupported syntax {node.sql()!r}", node)

    def _call(self, name: str, args: Sequence[exp.Expr], node: exp.Expr) -> _Compiled:
        name = fn.ALIASES.get(name, name)
        function = fn.FUNCTIONS.get(name)
        if function is None:
            close = difflib.get_close_matches(name, [*fn.FUNCTIONS, *fn.ALIASES], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise self.error(f"unknown function '{name}'{hint}", node)
        count = len(args)
        if count < function.min_args or (
            function.max_args is not None and count > function.max_args
        ):
            expected = (
                f"{function.min_args}"
                if function.min_args == function.max_args
                else f"at least {function.min_args}"
                if function.max_args is None
                else f"{function.min_args} to {function.max_args}"
            )
            raise self.error(f"{name}() takes {expected} arguments, got {count}", node)
        if name in fn.REGEX_FUNCTIONS:
            return self._regex_call(function, args)
        compiled = [self.compile(a).fn for a in args]
        return _Compiled(_call(function, compiled))

    def _regex_call(self, function: fn.SqlFunction, args: Sequence[exp.Expr]) -> _Compiled:
        """regexp_like / regexp_replace: the pattern must be literal text, compiled here
        with RE2, so `sluice check` reports a bad one and no record can supply one."""
        name = function.name
        pattern = self.compile(args[1])
        if not pattern.constant:
            raise self.error(
                f"{name}() takes its pattern as literal text, e.g. {name}(s, '^[a-z]+$'), "
                "not a value computed from the record",
                args[1],
            )
        if pattern.value is None:
            return _constant(None)
        if not isinstance(pattern.value, str):
            raise self.error(f"{name}() pattern must be text", args[1])
        try:
            regex = fn.compile_regex(pattern.value)
        except fn.RegexError as exc:
            raise self.error(
                f"{name}(): RE2 cannot compile the pattern {pattern.value!r}: {exc} "
                "(RE2 syntax: no backreferences or lookaround)",
                args[1],
            ) from None
        compiled = [self.compile(a).fn for a in args]
        compiled[1] = lambda _record: regex
        return _Compiled(_call(function, compiled))


def _arguments(node: exp.Expr, slots: tuple[str, ...]) -> list[exp.Expr]:
    args: list[exp.Expr] = []
    for slot in slots:
        if slot.startswith("*"):
            args.extend(node.args.get(slot[1:]) or [])
        else:
            value = node.args.get(slot)
            if value is not None:
                args.append(value)
    return args


def _is_constant_tree(node: exp.Expr) -> bool:
    return not any(isinstance(n, exp.Column | exp.Dot) for n in node.walk())
