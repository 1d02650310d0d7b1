"""`FROM a [LEFT | FULL OUTER] JOIN b WITHIN d [GRACE PERIOD d] ON a.x = b.y`: two streams
joined within an interval of event time (ksqlDB's syntax), compiled to the `join` step.

The joined record is the FROM stream's record with the other's under `other` (the join
step's shape without `fields`), so the select list and WHERE compile as usual with a
column of the other stream read as `other.col`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from streams.durations import format_duration_ms
from streams.sql.catalog import Relation, did_you_mean, find_relation
from streams.sql.joins import conjuncts, qualifiers_of
from streams.sql.statements import Name, WithinClause
from streams.sql.trees import build_column, column_parts, offset_of
from streams.steps.join import OTHER

if TYPE_CHECKING:
    from streams.sql.compiler import StatementCompiler


@dataclass(slots=True)
class StreamJoin:
    other: Relation
    qualifiers: set[str]  # lower-case names that qualify the other stream's columns
    kind: str  # inner | left | outer
    on: list[tuple[str, str]]  # (the FROM stream's column, the other's)
    within: WithinClause

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(own for own, _ in self.on)

    def document(self) -> dict[str, Any]:
        own = [o for o, _ in self.on]
        other = [t for _, t in self.on]
        step: dict[str, Any] = {
            "stream": self.other.topic,
            "key": own if len(own) > 1 else own[0],
            "other_key": other if len(other) > 1 else other[0],
            "within": format_duration_ms(self.within.within.ms),
        }
        if self.within.grace is not None:
            step["grace"] = format_duration_ms(self.within.grace.ms)
        step["type"] = self.kind
        if self.other.timestamp is not None:
            step["timestamp"] = self.other.timestamp
        return {"join": step}


def join_target(compiler: StatementCompiler, node: exp.Join) -> Relation | None:
    """The relation a JOIN names (None when it is not a plain known name)."""
    table = node.this
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        return None
    name = Name(table.this.name, bool(table.this.quoted), 0)
    return find_relation(compiler.program.relations, name)


def parse_stream_join(
    compiler: StatementCompiler,
    node: exp.Join,
    relation: Relation,
    qualifiers: set[str],
    other: Relation,
) -> StreamJoin:
    at = offset_of(node, compiler.query_offset)
    side = str(node.args.get("side") or "").upper()
    kind_word = str(node.args.get("kind") or "").upper()
    if side == "RIGHT" or kind_word in ("CROSS", "SEMI", "ANTI"):
        raise compiler.error(
            f"{side or kind_word} JOIN is not supported: JOIN, LEFT JOIN or FULL OUTER JOIN "
            "(swap the streams for a right join)",
            at,
        )
    within = compiler.statement.within
    if within is None:
        raise compiler.error(
            f"JOIN {other.name.text}: a join of two streams needs WITHIN, the interval of "
            f"event time their records may be apart, e.g. JOIN {other.name.text} WITHIN 10 "
            "MINUTES ON …",
            at,
        )
    kind = {"": "inner", "LEFT": "left", "FULL": "outer"}[side]
    table = node.this
    assert isinstance(table, exp.Table)
    joined = qualifiers_of(other, table)
    if joined & qualifiers:
        raise compiler.error("give the two streams different aliases", at)
    condition = node.args.get("on")
    if condition is None:
        raise compiler.error(f"JOIN {other.name.text} … needs ON a.col = b.col", at)
    pairs = []
    for equality in conjuncts(condition):
        pair = _on_pair(compiler, equality, relation, qualifiers, other, joined)
        if pair is None:
            raise compiler.error(
                f"ON compares a column of '{relation.name.text}' with one of "
                f"'{other.name.text}', e.g. ON a.order_id = b.order_id",
                offset_of(equality, at),
            )
        pairs.append(pair)
    return StreamJoin(other, joined, kind, pairs, within)


def other_column(
    compiler: StatementCompiler, join: StreamJoin, parts: list[exp.Identifier], at: exp.Expr
) -> exp.Column:
    """A column of the other stream, as the joined record holds it: `other.col`."""
    column = join.other.column(parts[0])
    if column is None:
        known = join.other.names()
        raise compiler.error(
            f"unknown column '{parts[0].name}'{did_you_mean(parts[0].name, known)}; "
            f"'{join.other.name.text}' has {', '.join(known)}",
            offset_of(at, compiler.query_offset),
        )
    path = [exp.Identifier(this=OTHER, quoted=False), exp.Identifier(this=column.name, quoted=True)]
    path += parts[1:]
    if len(path) > 4:
        raise compiler.error("nested too deep", offset_of(at, compiler.query_offset))
    return build_column(path, at)


def _types(relation: Relation) -> dict[str, str]:
    return {c.name.text: c.schema_type for c in relation.statement.columns or []}


def _on_pair(
    compiler: StatementCompiler,
    equality: exp.Expr,
    relation: Relation,
    qualifiers: set[str],
    other: Relation,
    joined: set[str],
) -> tuple[str, str] | None:
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
        if len(own_parts) != 1:
            continue
        own = relation.column(own_parts[0])
        theirs_column = other.column(other_parts[1])
        if own is None or theirs_column is None:
            continue
        own_type = _types(relation).get(own.name)
        other_type = _types(other).get(theirs_column.name)
        if own_type is not None and other_type is not None and own_type != other_type:
            raise compiler.error(
                f"ON {relation.name.text}.{own.name} = {other.name.text}.{theirs_column.name}: "
                f"keys of different types ({own_type} and {other_type}); CAST one in a "
                "derived stream first",
                offset_of(equality, compiler.query_offset),
            )
        return own.name, theirs_column.name
    return None
