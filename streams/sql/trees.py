"""Small helpers over sqlglot expression trees: positions, column paths, aggregates."""

from __future__ import annotations

from typing import cast

from sqlglot import exp


def offset_of(node: exp.Expr, default: int) -> int:
    """The earliest file offset sqlglot recorded inside `node`."""
    starts = [int(n.meta["start"]) for n in node.walk() if "start" in n.meta]
    return min(starts) if starts else default


def column_parts(column: exp.Column) -> list[exp.Identifier]:
    """`a.b.c` as its identifiers, outermost first."""
    parts = [column.args.get(k) for k in ("catalog", "db", "table", "this")]
    return [p for p in parts if isinstance(p, exp.Identifier)]


def build_column(parts: list[exp.Identifier], at: exp.Expr | None = None) -> exp.Column:
    """The column `parts` spell (at most four: sqlglot's catalog.db.table.column), placed
    where `at` was in the file (so errors found later still point there)."""
    if at is not None and parts and "start" not in parts[0].meta:
        parts[0].meta.update({k: v for k, v in at.meta.items() if k in _POSITION})
    padded: list[exp.Identifier | None] = [None] * (4 - len(parts)) + list(parts)
    return exp.Column(this=padded[3], table=padded[2], db=padded[1], catalog=padded[0])


_POSITION = ("line", "col", "start", "end")


def is_star(node: exp.Expr) -> bool:
    return isinstance(node, exp.Star) or (
        isinstance(node, exp.Column) and isinstance(node.this, exp.Star)
    )


def _aggregate_classes() -> tuple[type[exp.Expr], ...]:
    names = ("Count", "Sum", "Avg", "Min", "Max", "First", "Last", "ApproxDistinct")
    classes = [getattr(exp, n, None) for n in names]
    return tuple(c for c in classes if isinstance(c, type))


_AGGREGATE_NODES = _aggregate_classes()
_ANONYMOUS_AGGREGATES = frozenset({"percentile", "count_distinct", "first", "last"})


def aggregate_name(node: exp.Expr) -> str | None:
    """The sluice aggregate an SQL call is, or None when it is no aggregate."""
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        return name if name in _ANONYMOUS_AGGREGATES else None
    if not isinstance(node, _AGGREGATE_NODES):
        return None
    if type(node).__name__ == "ApproxDistinct":
        return "count_distinct"
    return cast(exp.Func, node).sql_name().lower()


def is_aggregate(node: exp.Expr) -> bool:
    return aggregate_name(node) is not None


def describe(node: exp.Expr) -> str:
    text = node.sql()
    return text if len(text) <= 60 else text[:57] + "..."


def conjuncts(condition: exp.Expr) -> list[exp.Expr]:
    """The terms of `a AND (b AND c)`: a, b, c."""
    if isinstance(condition, exp.And):
        return [*conjuncts(condition.this), *conjuncts(condition.expression)]
    if isinstance(condition, exp.Paren):
        return conjuncts(condition.this)
    return [condition]


def equated_columns(
    equality: exp.Expr, qualifiers: set[str], joined: set[str]
) -> tuple[exp.Identifier, exp.Identifier] | None:
    """(own column, joined column) of one `a = b` of a JOIN's ON clause, in either order:
    the joined side qualified by one of `joined`, the own side plain or qualified by one
    of `qualifiers` (the two sets are disjoint, so one order at most fits); else None."""
    if not isinstance(equality, exp.EQ):
        return None
    for mine, theirs in (
        (equality.this, equality.expression),
        (equality.expression, equality.this),
    ):
        if not (isinstance(mine, exp.Column) and isinstance(theirs, exp.Column)):
            return None
        own_parts, other_parts = column_parts(mine), column_parts(theirs)
        if len(other_parts) != 2 or other_parts[0].name.lower() not in joined:
            continue
        if len(own_parts) == 2 and own_parts[0].name.lower() in qualifiers:
            own_parts = own_parts[1:]
        if len(own_parts) == 1:
            return own_parts[0], other_parts[1]
    return None
