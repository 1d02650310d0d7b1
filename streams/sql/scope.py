"""The names in view of one query: the stream FROM reads and the names that qualify its
columns, the lookup table or other stream it joins, the select list's aliases. `resolve`
checks every column a query names against them and spells it as the record holds it."""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from streams.sql.catalog import Column, Join, Relation, did_you_mean, identifier_of
from streams.sql.checks import check_expression, no_aggregates
from streams.sql.diagnostics import Diagnostics, SqlError
from streams.sql.joins import enrich_document
from streams.sql.stream_joins import StreamJoin, other_column
from streams.sql.trees import build_column, column_parts


class Scope:
    """What the columns of `query` may name; errors go to `diagnostics`."""

    def __init__(
        self,
        diagnostics: Diagnostics,
        query: exp.Select,
        relation: Relation,
        qualifiers: set[str],
        join: Join | None = None,
        stream_join: StreamJoin | None = None,
    ) -> None:
        self.diagnostics = diagnostics
        self.query = query
        self.relation = relation
        self.qualifiers = qualifiers  # lower-case names that qualify the relation's columns
        self.join = join
        self.stream_join = stream_join

    def resolve(self, node: exp.Expr, where: str) -> exp.Expr:
        """`node` with every column reference checked against the relation (and a joined
        table) and spelt as the relation spells it, without qualifiers."""
        relation, qualifiers = self.relation, self.qualifiers
        join = self.join
        stream_join = self.stream_join

        def visit(current: exp.Expr) -> exp.Expr:
            if not isinstance(current, exp.Column) or isinstance(current.this, exp.Star):
                return current
            original = column_parts(current)
            if stream_join is not None:
                return self.stream_joined(stream_join, original, current)
            if (
                join is not None
                and len(original) > 1
                and original[0].name.lower() in join.qualifiers
            ):
                return self.joined(original[1:], where, current)
            parts = self.unqualified(current, qualifiers)
            column = relation.column(parts[0])
            if join is not None and len(parts) == len(original):
                in_table = join.table.column(parts[0])
                if column is None and in_table is not None:
                    return self.joined(parts, where, current)
                if (
                    column is not None
                    and in_table is not None
                    and relation.columns is not None
                    and join.stream_column_for(in_table.name) != column.name
                ):
                    raise self.diagnostics.error(
                        f"'{parts[0].name}' is a column of both '{relation.name.text}' and "
                        f"'{join.table.name.text}': qualify it",
                        self.diagnostics.at(current),
                    )
            if column is None:
                raise self.unknown_column(parts[0], relation, where, current)
            return build_column([identifier_of(column), *parts[1:]], parts[0])

        return node.transform(visit, copy=True)

    def stream_joined(
        self,
        join: StreamJoin,
        original: list[exp.Identifier],
        at: exp.Column,
    ) -> exp.Expr:
        """A column in a query joining two streams: the FROM stream's as usual, the other
        stream's as `other.col`; an unqualified name both streams have must be qualified."""
        relation = self.relation
        if len(original) > 1 and original[0].name.lower() in join.qualifiers:
            return other_column(self.diagnostics, join, original[1:], at)
        parts = self.unqualified(at, self.qualifiers)
        column = relation.column(parts[0])
        in_other = join.other.column(parts[0]) if len(parts) == len(original) else None
        if column is None and in_other is not None:
            return other_column(self.diagnostics, join, parts, at)
        if (
            column is not None
            and in_other is not None
            and relation.columns is not None
            and join.other.columns is not None
        ):
            raise self.diagnostics.error(
                f"'{parts[0].name}' is a column of both '{relation.name.text}' and "
                f"'{join.other.name.text}': qualify it",
                self.diagnostics.at(at),
            )
        if column is None:
            raise self.unknown_column(parts[0], relation, "the query", at)
        return build_column([identifier_of(column), *parts[1:]], parts[0])

    def joined(self, parts: list[exp.Identifier], where: str, at: exp.Expr) -> exp.Expr:
        """A column of the joined table: the field enrich copies into the record (its key
        is the stream's ON column, which holds the same value)."""
        relation = self.relation
        join = self.join
        assert join is not None
        column = join.table.column(parts[0])
        if column is None:
            raise self.unknown_column(parts[0], join.table, where, at)
        stream_name = join.stream_column_for(column.name)
        if stream_name is not None:
            stream_column = relation.column(exp.Identifier(this=stream_name, quoted=True))
            assert stream_column is not None
            return build_column([identifier_of(stream_column), *parts[1:]], parts[0])
        clash = relation.column(exp.Identifier(this=column.name, quoted=False))
        if relation.columns is not None and clash is not None:
            raise self.diagnostics.error(
                f"'{column.name}' is a column of both '{relation.name.text}' and "
                f"'{join.table.name.text}': a join adds the table's columns under their own "
                "names, so it can add only columns the stream does not have",
                self.diagnostics.at(at),
            )
        join.use(column.name)
        return build_column([identifier_of(column), *parts[1:]], parts[0])

    def known_column(self, name: exp.Identifier) -> Column | None:
        """A column of the stream, or of the joined table."""
        column = self.relation.column(name)
        if column is None and self.join is not None:
            column = self.join.table.column(name)
        return column

    def join_document(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The enrich step and the `tables:` entry of the query's join (none without)."""
        if self.stream_join is not None:
            return [self.stream_join.document()], {}
        return enrich_document(self.join) if self.join is not None else ([], {})

    @staticmethod
    def unqualified(column: exp.Column, qualifiers: set[str]) -> list[exp.Identifier]:
        parts = column_parts(column)
        if len(parts) > 1 and parts[0].name.lower() in qualifiers:
            return parts[1:]
        return parts

    def unknown_column(
        self, name: exp.Identifier, relation: Relation, where: str, node: exp.Expr
    ) -> SqlError:
        known = relation.names()
        aliases = {i.alias for i in self.query.expressions if isinstance(i, exp.Alias)}
        if where == "WHERE" and name.name in aliases:
            # SQL evaluates WHERE before the select list: its aliases do not exist yet
            reason = (
                f"'{name.name}' is a select alias, which WHERE cannot use (it filters "
                "the source's records): repeat its expression"
            )
        else:
            reason = (
                f"unknown column '{name.name}' in {where}{did_you_mean(name.name, known)}; "
                f"'{relation.name.text}' has {', '.join(known)}"
            )
        return self.diagnostics.error(reason, self.diagnostics.at(node))

    def table_columns(self, at: exp.Expr) -> list[Column] | None:
        """The joined table's columns but its key, marked used (None: it declares none)."""
        join = self.join
        assert join is not None
        if join.table.columns is None:
            return None
        added = []
        for column in join.table.columns:
            if column.name not in (join.table.key or ()):
                self.joined([identifier_of(column)], "SELECT *", at)
                added.append(column)
        return added

    def where_steps(self) -> list[dict[str, Any]]:
        """WHERE as a `filter` step (none without WHERE)."""
        where = self.query.args.get("where")
        if not isinstance(where, exp.Where):
            return []

        def check() -> dict[str, Any]:
            no_aggregates(
                self.diagnostics,
                where.this,
                "is not allowed in WHERE: filter aggregates in HAVING",
            )
            resolved = self.resolve(where.this, "WHERE")
            return {"filter": check_expression(self.diagnostics, resolved, condition=True)}

        step = self.diagnostics.attempt(check)
        return [step] if step is not None else []
