"""`FROM a [LEFT | FULL OUTER] JOIN b WITHIN d [GRACE PERIOD d] ON a.x = b.y`: two streams
joined within an interval of event time (ksqlDB's syntax), compiled to the `join` step.

The joined record is the FROM stream's record with the other's under `other` (the join
step's shape without `fields`), so the select list and WHERE compile as usual with a
column of the other stream read as `other.col`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from models.durations import format_duration_ms
from streams.sql.catalog import Catalog, Relation, did_you_mean, qualifiers_of
from streams.sql.diagnostics import Diagnostics
from streams.sql.statements import Name, WithinClause
from streams.sql.trees import build_column, conjuncts, equated_columns, offset_of
from streams.steps.join import OTHER


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


def join_target(catalog: Catalog, node: exp.Join) -> Relation | None:
    """The relation a JOIN names (None when it is not a plain known name)."""
    table = node.this
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        return None
    name = Name(table.this.name, bool(table.this.quoted), 0)
    return catalog.find(name)


def parse_stream_join(
    diagnostics: Diagnostics,
    within: WithinClause | None,
    node: exp.Join,
    relation: Relation,
    qualifiers: set[str],
    other: Relation,
) -> StreamJoin:
    at = diagnostics.at(node)
    side = str(node.args.get("side") or "").upper()
    kind_word = str(node.args.get("kind") or "").upper()
    if side == "RIGHT" or kind_word in ("CROSS", "SEMI", "ANTI"):
        raise diagnostics.error(
            f"{side or kind_word} JOIN is not supported: JOIN, LEFT JOIN or FULL OUTER JOIN "
            "(swap the streams for a right join)",
            at,
        )
    if within is None:
        raise diagnostics.error(
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
        raise diagnostics.error("give the two streams different aliases", at)
    condition = node.args.get("on")
    if condition is None:
        raise diagnostics.error(f"JOIN {other.name.text} … needs ON a.col = b.col", at)
    pairs = []
    for equality in conjuncts(condition):
        pair = _on_pair(diagnostics, equality, relation, qualifiers, other, joined)
        if pair is None:
            raise diagnostics.error(
                f"ON compares a column of '{relation.name.text}' with one of "
                f"'{other.name.text}', e.g. ON a.order_id = b.order_id",
                offset_of(equality, at),
            )
        pairs.append(pair)
    return StreamJoin(other, joined, kind, pairs, within)


def other_column(
    diagnostics: Diagnostics, join: StreamJoin, parts: list[exp.Identifier], at: exp.Expr
) -> exp.Column:
    """A column of the other stream, as the joined record holds it: `other.col`."""
    column = join.other.column(parts[0])
    if column is None:
        known = join.other.names()
        raise diagnostics.error(
            f"unknown column '{parts[0].name}'{did_you_mean(parts[0].name, known)}; "
            f"'{join.other.name.text}' has {', '.join(known)}",
            diagnostics.at(at),
        )
    path = [exp.Identifier(this=OTHER, quoted=False), exp.Identifier(this=column.name, quoted=True)]
    path += parts[1:]
    if len(path) > 4:
        raise diagnostics.error_at("nested too deep", at)
    return build_column(path, at)


def _types(relation: Relation) -> dict[str, str]:
    return {c.name.text: c.schema_type for c in relation.statement.columns or []}


def _on_pair(
    diagnostics: Diagnostics,
    equality: exp.Expr,
    relation: Relation,
    qualifiers: set[str],
    other: Relation,
    joined: set[str],
) -> tuple[str, str] | None:
    columns = equated_columns(equality, qualifiers, joined)
    if columns is None:
        return None
    own = relation.column(columns[0])
    theirs = other.column(columns[1])
    if own is None or theirs is None:
        return None
    own_type = _types(relation).get(own.name)
    other_type = _types(other).get(theirs.name)
    if own_type is not None and other_type is not None and own_type != other_type:
        raise diagnostics.error(
            f"ON {relation.name.text}.{own.name} = {other.name.text}.{theirs.name}: "
            f"keys of different types ({own_type} and {other_type}); CAST one in a "
            "derived stream first",
            diagnostics.at(equality),
        )
    return own.name, theirs.name
