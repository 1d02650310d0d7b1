"""The sqlglot vocabulary an expression may use: which node types are comparisons,
arithmetic, conditions, function calls (with their argument slots) and casts."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, Final

from sqlglot import exp

COMPARISONS: Final[dict[type[exp.Expr], tuple[str, Callable[[Any, Any], bool]]]] = {
    exp.EQ: ("=", operator.eq),
    exp.NEQ: ("<>", operator.ne),
    exp.GT: (">", operator.gt),
    exp.GTE: (">=", operator.ge),
    exp.LT: ("<", operator.lt),
    exp.LTE: ("<=", operator.le),
}

ARITHMETIC: Final[dict[type[exp.Expr], str]] = {
    exp.Add: "+",
    exp.Sub: "-",
    exp.Mul: "*",
    exp.Div: "/",
}

BOOLEAN_NODES: tuple[type[exp.Expr], ...] = (
    exp.And,
    exp.Or,
    exp.Not,
    exp.In,
    exp.Between,
    exp.Like,
    exp.ILike,
    exp.Is,
    exp.Boolean,
    exp.Null,
    *COMPARISONS,
)
NOT_CONDITIONS = (*ARITHMETIC, exp.Mod, exp.Neg, exp.DPipe)


def func_class(name: str) -> type[exp.Expr] | None:
    cls = getattr(exp, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, exp.Expr) else None


# sqlglot parses many functions into typed nodes; map each to (our name, argument slots).
FUNCTION_NODES: Final[dict[type[exp.Expr], tuple[str, tuple[str, ...]]]] = {
    cls: spec
    for cls_name, spec in {
        "Length": ("length", ("this",)),
        "Lower": ("lower", ("this",)),
        "Upper": ("upper", ("this",)),
        "Substring": ("substr", ("this", "start", "length")),
        "Replace": ("replace", ("this", "expression", "replacement")),
        "Left": ("left", ("this", "expression")),
        "Right": ("right", ("this", "expression")),
        "StartsWith": ("starts_with", ("this", "expression")),
        "EndsWith": ("ends_with", ("this", "expression")),
        "Contains": ("contains", ("this", "expression")),
        "StrPosition": ("strpos", ("this", "substr")),
        "Concat": ("concat", ("*expressions",)),
        "ConcatWs": ("concat_ws", ("*expressions",)),
        "Reverse": ("reverse", ("this",)),
        "Repeat": ("repeat", ("this", "times")),
        "SplitPart": ("split_part", ("this", "delimiter", "part_index")),
        "RegexpLike": ("regexp_like", ("this", "expression")),
        "RegexpReplace": ("regexp_replace", ("this", "expression", "replacement")),
        "Abs": ("abs", ("this",)),
        "Round": ("round", ("this", "decimals")),
        "Floor": ("floor", ("this",)),
        "Ceil": ("ceil", ("this",)),
        "Trunc": ("trunc", ("this",)),
        "Sqrt": ("sqrt", ("this",)),
        "Pow": ("power", ("this", "expression")),
        "Ln": ("ln", ("this",)),
        "Log": ("log", ("this", "expression")),
        "Exp": ("exp", ("this",)),
        "Sign": ("sign", ("this",)),
        "Mod": ("mod", ("this", "expression")),
        "Greatest": ("greatest", ("this", "*expressions")),
        "Least": ("least", ("this", "*expressions")),
        "Coalesce": ("coalesce", ("this", "*expressions")),
        "Nullif": ("nullif", ("this", "expression")),
    }.items()
    if (cls := func_class(cls_name)) is not None
}

AGGREGATE_NODES = tuple(
    c
    for c in (func_class(n) for n in ("Count", "Sum", "Avg", "Min", "Max", "First", "Last"))
    if c is not None
)


def cast_target(data_type: exp.DataType) -> str | None:
    name = data_type.this.name if hasattr(data_type.this, "name") else str(data_type.this)
    name = name.upper()
    if name in {"INT", "BIGINT", "SMALLINT", "TINYINT", "INTEGER", "UBIGINT", "UINT"}:
        return "int"
    if name in {"FLOAT", "DOUBLE", "DECIMAL", "REAL", "DOUBLE PRECISION", "NUMERIC"}:
        return "float"
    if name in {"VARCHAR", "TEXT", "CHAR", "NVARCHAR", "NCHAR", "STRING"}:
        return "text"
    if name in {"BOOLEAN", "BOOL"}:
        return "bool"
    if name in {"TIMESTAMP", "TIMESTAMPTZ", "DATETIME", "TIMESTAMPLTZ"}:
        return "timestamp"
    return None
