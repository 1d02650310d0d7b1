"""`CREATE STREAM d AS SELECT … FROM s [JOIN …] [WHERE …] [PARTITION BY …]`: a derived
stream. The pipeline: `validate` (the declared columns as an inline schema) → `enrich`
(JOIN a lookup table) or `join` (JOIN a stream WITHIN …) → `filter` (WHERE) → `map` (the
select list; a lone `SELECT *` keeps the record) → sink."""

from __future__ import annotations

from sqlglot import exp

from streams.sql.catalog import (
    DERIVED_PROPERTIES,
    Catalog,
    Column,
    Relation,
    did_you_mean,
    identifier_of,
)
from streams.sql.checks import check_expression, no_aggregates
from streams.sql.diagnostics import Diagnostics, Quiet, SqlError
from streams.sql.documents import document, finish, source_document, validate_steps
from streams.sql.from_clause import read_from
from streams.sql.program import Compiled
from streams.sql.properties import Properties
from streams.sql.scope import Scope
from streams.sql.statements import Statement
from streams.sql.trees import build_column, column_parts, describe, is_star
from streams.steps.join import OTHER

_Items = tuple[dict[str, str] | None, list[Column] | None, dict[str, str]]


class StreamCompiler:
    """One `CREATE STREAM … AS SELECT`; its errors go to `diagnostics`."""

    def __init__(self, diagnostics: Diagnostics, catalog: Catalog, statement: Statement) -> None:
        self.diagnostics = diagnostics
        self.catalog = catalog
        self.statement = statement
        self.properties = Properties(diagnostics, statement, catalog)

    def compile(self) -> Compiled | None:
        """The stream and its pipeline; None when a check failed (its error collected)."""
        diagnostics, statement = self.diagnostics, self.statement
        query = statement.query
        assert query is not None
        given = (
            diagnostics.attempt(
                lambda: self.properties.check(DERIVED_PROPERTIES, "a derived stream")
            )
            or {}
        )
        scope = read_from(diagnostics, self.catalog, statement)
        relation = scope.relation
        if statement.window is not None:
            diagnostics.fail(
                diagnostics.error(
                    "WINDOW makes a table: CREATE TABLE … AS SELECT … WINDOW … GROUP BY",
                    statement.window.offset,
                )
            )
        group = query.args.get("group")
        if group:
            diagnostics.fail(
                diagnostics.error(
                    "GROUP BY makes a table: CREATE TABLE … AS SELECT … WINDOW … GROUP BY",
                    statement.clause_offset("GROUP BY"),
                )
            )
        having = query.args.get("having")
        if having is not None:
            diagnostics.fail(
                diagnostics.error(
                    "HAVING needs GROUP BY (CREATE TABLE … WINDOW … GROUP BY … HAVING); "
                    "filter a stream with WHERE",
                    statement.clause_offset("HAVING"),
                )
            )
        if statement.emit_mode == "FINAL" and statement.emit is not None:
            diagnostics.fail(
                diagnostics.error(
                    "EMIT FINAL is for windowed tables; a stream emits every record",
                    statement.emit[1],
                )
            )
        name = diagnostics.attempt(self.properties.pipeline_name)
        where = scope.where_steps()
        items = diagnostics.attempt(lambda: self.items(scope, query))
        key = relation.key
        if scope.stream_join is not None:  # both streams are partitioned by the join key
            key = scope.stream_join.key
        if statement.partition_by is not None:
            key = diagnostics.attempt(lambda: self.partition_key(relation)) or key
        sink = diagnostics.attempt(lambda: self.properties.sink(given))
        if diagnostics.failed or items is None or sink is None or name is None:
            return None
        projection, columns, passed = items
        enrich, tables = scope.join_document()
        steps = validate_steps(relation) + enrich + where
        if projection is not None:
            steps.append({"map": projection})
        found = document(name, source_document(relation, key), tables, steps, sink)
        output = Relation(statement.name, "stream", sink[0], columns, statement)
        output.timestamp = self.properties.output_timestamp(given, output, relation, passed)
        return finish(diagnostics, self.properties, found, output)

    def partition_key(self, relation: Relation) -> tuple[str, ...]:
        key = []
        for name in self.statement.partition_by or []:
            column = relation.column(exp.Identifier(this=name.text, quoted=name.quoted))
            if column is None:
                raise self.diagnostics.error(
                    f"unknown column '{name.text}' in PARTITION BY"
                    f"{did_you_mean(name.text, relation.names())}",
                    name.offset,
                )
            key.append(column.name)
        return tuple(key)

    def items(self, scope: Scope, query: exp.Select) -> _Items:
        """The map of a derived stream (None for a lone `SELECT *`), its output columns,
        and the source columns that pass through unchanged, to their output names."""
        relation = scope.relation
        expressions = list(query.expressions)
        if len(expressions) == 1 and isinstance(expressions[0], exp.Star):
            columns = list(relation.columns) if relation.columns is not None else None
            if scope.join is not None:  # the record and every column of the table
                added = scope.table_columns(expressions[0])
                columns = None if columns is None or added is None else columns + added
            return None, columns, {c: c for c in relation.names()} if columns else {}
        outputs = _Outputs(self.diagnostics)
        passed: dict[str, str] = {}
        problems = 0
        for item in expressions:
            try:
                self.item(item, scope, outputs, passed)
            except SqlError as error:
                self.diagnostics.fail(error)
                problems += 1
        if problems:
            raise Quiet()
        return outputs.projection, outputs.columns, passed

    def item(self, item: exp.Expr, scope: Scope, outputs: _Outputs, passed: dict[str, str]) -> None:
        diagnostics, relation, join = self.diagnostics, scope.relation, scope.join
        offset = diagnostics.at(item)
        if is_star(item):
            qualifier = item.args.get("table") if isinstance(item, exp.Column) else None
            of_table = join is not None and (
                qualifier is not None and qualifier.name.lower() in join.qualifiers
            )
            if not of_table:
                if relation.columns is None:
                    raise diagnostics.error(
                        f"'{relation.name.text}' declares no columns, so SELECT * cannot be "
                        "combined with other columns",
                        offset,
                    )
                for column in relation.columns:
                    outputs.add(column, build_column([identifier_of(column)]), offset)
                    passed[column.name] = column.name
            if join is not None and (of_table or qualifier is None):
                added = scope.table_columns(item)
                if added is None:
                    raise diagnostics.error(
                        f"'{join.table.name.text}' declares no columns to select", offset
                    )
                for column in added:
                    outputs.add(column, build_column([identifier_of(column)]), offset)
            return
        no_aggregates(
            diagnostics,
            item,
            "needs GROUP BY: aggregates make a table (CREATE TABLE … AS SELECT … WINDOW … "
            "GROUP BY …)",
        )
        value = item.this if isinstance(item, exp.Alias) else item
        resolved = scope.resolve(value, "the select list")
        parts = column_parts(resolved) if isinstance(resolved, exp.Column) else []
        source = scope.known_column(parts[0]) if len(parts) == 1 else None
        # the other stream's column (other.col) keeps its name
        stream_join = scope.stream_join
        of_other = stream_join is not None and len(parts) == 2 and parts[0].name == OTHER
        if of_other and stream_join is not None:
            source = stream_join.other.column(parts[1])
        if isinstance(item, exp.Alias):
            alias = item.args["alias"]
            name = Column(alias.name, bool(alias.quoted))
        elif source is not None:
            name = source
        else:
            raise diagnostics.error(
                f"{describe(item)} needs a name: add AS alias, e.g. {describe(item)} AS x",
                offset,
            )
        check_expression(diagnostics, resolved)
        if source is not None and not of_other:
            passed.setdefault(source.name, name.name)
            name = Column(name.name, name.quoted, source.schema_type)
        outputs.add(name, resolved, offset)


class _Outputs:
    """The output columns of a select list, in order, with their expressions."""

    def __init__(self, diagnostics: Diagnostics) -> None:
        self.diagnostics = diagnostics
        self.projection: dict[str, str] = {}
        self.columns: list[Column] = []

    def add(self, column: Column, value: exp.Expr, offset: int) -> None:
        if column.name in self.projection:
            raise self.diagnostics.error(
                f"two output columns are named '{column.name}': give one another alias", offset
            )
        self.projection[column.name] = value.sql()
        self.columns.append(column)
