"""FROM stream [JOIN …]: the scope of a derived statement's query. Clauses a stream has no
meaning for are refused here, before anything reads the query."""

from __future__ import annotations

from typing import cast

from sqlglot import exp

from streams.sql.catalog import Catalog, did_you_mean, qualifiers_of
from streams.sql.diagnostics import Diagnostics, Quiet
from streams.sql.joins import parse_join
from streams.sql.scope import Scope
from streams.sql.statements import Name, Statement
from streams.sql.stream_joins import join_target, parse_stream_join
from streams.sql.trees import offset_of


def read_from(diagnostics: Diagnostics, catalog: Catalog, statement: Statement) -> Scope:
    """The scope of a statement's query: the relation FROM names, the names that qualify
    its columns, the stream or lookup table it joins."""
    query = cast(exp.Select, statement.query)
    label = statement.name.text
    for arg, reason in (
        ("order", "ORDER BY has no meaning on a stream"),
        ("limit", "LIMIT is not supported on a stream"),
        ("offset", "OFFSET is not supported on a stream"),
        ("distinct", "SELECT DISTINCT is not supported: GROUP BY the columns instead"),
        ("with", "WITH (common table expressions) is not supported: derive a stream"),
        ("laterals", "LATERAL is not supported"),
        ("qualify", "QUALIFY is not supported"),
    ):
        node = query.args.get(arg)
        if node:
            first = node[0] if isinstance(node, list) else node
            raise diagnostics.error(reason, diagnostics.at(first))
    for window in query.find_all(exp.Window):
        raise diagnostics.error(
            "window functions (OVER …) are not supported: use WINDOW … GROUP BY",
            diagnostics.at(window),
        )
    for subquery in query.find_all(exp.Subquery, exp.Exists):
        raise diagnostics.error(
            "subqueries are not supported: derive a stream and read it",
            diagnostics.at(subquery),
        )
    source = query.args.get("from_") or query.args.get("from")
    if not isinstance(source, exp.From):
        raise diagnostics.error("the query needs FROM stream", diagnostics.query_offset)
    table = source.this
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        raise diagnostics.error(
            "FROM takes the name of a stream declared earlier in this file",
            diagnostics.at(source),
        )
    identifier = table.this
    name = Name(identifier.name, bool(identifier.quoted), offset_of(identifier, 0))
    if table.args.get("db") is not None:
        raise diagnostics.error(f"FROM {table.sql()}: streams have plain names", name.offset)
    relation = catalog.find(name)
    if relation is None:
        if name.text.lower() in catalog.broken:
            raise Quiet()
        if name.text.lower() == label.lower():
            raise diagnostics.error(f"'{label}' cannot read itself", name.offset)
        known = [r.name.text for r in catalog.relations]
        reason = f"unknown stream '{name.text}'{did_you_mean(name.text, known)}"
        if name.text.lower() in (n.lower() for n in catalog.defined_after(statement)):
            reason += ": it is defined later; a statement reads streams defined before it"
        elif known:
            reason += f"; streams defined before: {', '.join(known)}"
        else:
            reason += "; declare it first: CREATE STREAM name (columns) WITH (KAFKA_TOPIC …)"
        raise diagnostics.error(reason, name.offset)
    if relation.kind == "lookup":
        raise diagnostics.error(
            f"'{relation.name.text}' is a lookup table: JOIN it to a stream "
            f"(FROM s LEFT JOIN {relation.name.text} t ON s.col = t.key)",
            name.offset,
        )
    qualifiers = qualifiers_of(relation, table)
    joins = query.args.get("joins") or []
    if len(joins) > 1:
        raise diagnostics.error(
            "one JOIN per query: join further in a derived stream",
            diagnostics.at(joins[1]),
        )
    target = join_target(catalog, joins[0]) if joins else None
    if target is not None and target.kind != "lookup":
        stream_join = parse_stream_join(
            diagnostics, statement.within, joins[0], relation, qualifiers, target
        )
        return Scope(diagnostics, query, relation, qualifiers, stream_join=stream_join)
    elif joins:
        if statement.within is not None:
            raise diagnostics.error(
                "WITHIN is for a join of two streams; a lookup table has no time",
                statement.within.offset,
            )
        join = parse_join(diagnostics, catalog, joins[0], relation, qualifiers)
        return Scope(diagnostics, query, relation, qualifiers, join=join)
    elif statement.within is not None:
        raise diagnostics.error("WITHIN belongs to a JOIN of two streams", statement.within.offset)
    return Scope(diagnostics, query, relation, qualifiers)
