"""`[LEFT] JOIN table ON stream.col = table.key`: a lookup-table join, compiled to the
`enrich` step YAML pipelines use (LEFT keeps records without a row, JOIN drops them)."""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from streams.sql.catalog import Catalog, Join, Relation, did_you_mean, qualifiers_of
from streams.sql.diagnostics import Diagnostics
from streams.sql.statements import Name
from streams.sql.trees import conjuncts, equated_columns, offset_of


def parse_join(
    diagnostics: Diagnostics,
    catalog: Catalog,
    node: exp.Join,
    relation: Relation,
    qualifiers: set[str],
) -> Join:
    """`[LEFT] JOIN table [alias] ON s.col = t.key` (or USING (col)): an enrich step."""
    at = diagnostics.at(node)
    side = str(node.args.get("side") or "").upper()
    kind = str(node.args.get("kind") or "").upper()
    if side in ("RIGHT", "FULL") or kind in ("CROSS", "SEMI", "ANTI"):
        raise diagnostics.error(
            f"{side or kind} JOIN is not supported: LEFT JOIN (keeps records without a "
            "row) or JOIN (drops them) a lookup table",
            at,
        )
    table = node.this
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        raise diagnostics.error("JOIN takes the name of a lookup table", at)
    name = Name(table.this.name, bool(table.this.quoted), offset_of(table.this, at))
    lookup = catalog.find(name)
    if lookup is None or lookup.kind != "lookup":
        tables = [r.name.text for r in catalog.relations if r.kind == "lookup"]
        what = "a stream" if lookup is not None else "unknown" + did_you_mean(name.text, tables)
        raise diagnostics.error(
            f"JOIN {name.text}: {what}; a join reads a lookup table declared with "
            "CREATE TABLE name (columns) WITH (KAFKA_TOPIC = '…', KEY = 'col')",
            name.offset,
        )
    joined = qualifiers_of(lookup, table)
    if joined & qualifiers:
        raise diagnostics.error("give the stream and the table different aliases", name.offset)
    keys = list(lookup.key or ())
    pairs: dict[str, str] = {}
    using = node.args.get("using")
    condition = node.args.get("on")
    if using:
        for identifier in using:
            ident = identifier if isinstance(identifier, exp.Identifier) else identifier.this
            stream_column = relation.column(ident)
            table_column = lookup.column(ident)
            if stream_column is None or table_column is None:
                raise diagnostics.error(
                    f"USING ({ident.name}): a column of both the stream and the table",
                    offset_of(identifier, at),
                )
            pairs[table_column.name] = stream_column.name
    elif condition is not None:
        for equality in conjuncts(condition):
            pair = _on_pair(equality, relation, qualifiers, lookup, joined)
            if pair is None:
                raise diagnostics.error(
                    f"ON compares the stream's columns with the key of '{lookup.name.text}' "
                    f"({', '.join(keys)}), e.g. ON s.col = t.{keys[0]}",
                    offset_of(equality, at),
                )
            pairs[pair[0]] = pair[1]
    else:
        raise diagnostics.error(f"JOIN {name.text} needs ON s.col = t.{keys[0]}", at)
    if set(pairs) != set(keys):
        raise diagnostics.error(
            f"ON must match the whole key of '{lookup.name.text}' ({', '.join(keys)})",
            offset_of(condition, at) if condition is not None else at,
        )
    return Join(lookup, joined, tuple(pairs[k] for k in keys), keep_missing=side == "LEFT")


def _on_pair(
    equality: exp.Expr,
    relation: Relation,
    qualifiers: set[str],
    lookup: Relation,
    joined: set[str],
) -> tuple[str, str] | None:
    """(table key, stream column) of one `a = b` of an ON clause, or None."""
    columns = equated_columns(equality, qualifiers, joined)
    if columns is None:
        return None
    key = lookup.column(columns[1])
    column = relation.column(columns[0])
    if key is not None and column is not None and key.name in (lookup.key or ()):
        return key.name, column.name
    return None


def enrich_document(join: Join) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The enrich step and the `tables:` entry a join compiles to."""
    table = join.table
    key = list(table.key or ())
    enrich: dict[str, Any] = {
        "table": table.name.text,
        "on": list(join.on) if len(join.on) > 1 else join.on[0],
    }
    if join.used or table.columns is not None:
        # with no column used, copying the key changes nothing: ON made it equal
        enrich["fields"] = list(join.used) or key[:1]
    enrich["missing"] = "keep" if join.keep_missing else "drop"
    tables = {table.name.text: {"topic": table.topic, "key": key if len(key) > 1 else key[0]}}
    if table.format != "json":  # VALUE_FORMAT (registry formats)
        tables[table.name.text]["format"] = table.format
    return [{"enrich": enrich}], tables
