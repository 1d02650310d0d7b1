"""SQL statements compiled to pipeline specs: the same `PipelineSpec` a YAML file gives.

- `CREATE STREAM s (columns) WITH (KAFKA_TOPIC …)` declares a source: no pipeline.
- `CREATE STREAM d AS SELECT … FROM s [WHERE …]` is a pipeline: `validate` (the declared
  columns as an inline schema) → `filter` (WHERE) → `map` (the select list; `SELECT *`
  keeps the record) → sink.
- `CREATE TABLE t AS SELECT keys, aggregates FROM s [WHERE …] WINDOW … GROUP BY keys
  [HAVING …]` ends in a `window` step keyed by the GROUP BY columns, then a `filter` for
  HAVING and, when the select list needs it, a `map` (`streams.sql.tables`).

Each pipeline is first written as the document a YAML file would hold (what
`sluice explain` prints), then validated into a `PipelineSpec` exactly as YAML is.
Column references are checked against what the source declares, so `sluice check` finds
a misspelt column before any record does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pydantic import ValidationError
from sqlglot import exp

from models.pipeline import TOPIC_PATTERN
from streams.errors import ConfigError, ConfigErrors, ExpressionError
from streams.expressions import compile_condition, compile_expression
from streams.spec_fields import PipelineSpec
from streams.sql.catalog import (
    DERIVED_PROPERTIES,
    LOOKUP_PROPERTIES,
    SOURCE_PROPERTIES,
    Column,
    Join,
    Relation,
    did_you_mean,
    find_relation,
    identifier_of,
)
from streams.sql.joins import enrich_document, parse_join, qualifiers_of
from streams.sql.statements import (
    Name,
    Property,
    Quiet,
    SourceText,
    SqlError,
    Statement,
    parse_statements,
)
from streams.sql.stream_joins import StreamJoin, join_target, other_column, parse_stream_join
from streams.sql.tables import TableCompiler
from streams.sql.trees import (
    build_column,
    column_parts,
    describe,
    is_aggregate,
    is_star,
    offset_of,
)
from streams.steps.join import OTHER

VALUE_FORMATS = {"JSON": "json", "AVRO": "avro", "PROTOBUF": "protobuf", "JSON_SR": "json_schema"}
VALUE_FORMATS_OUT = {"JSON": "json", "AVRO": "avro"}
_TOPIC = re.compile(TOPIC_PATTERN)
_PIPELINE_NAME = re.compile(r"^[A-Za-z0-9._\-]+$")


@dataclass(frozen=True, slots=True)
class CompiledPipeline:
    """One pipeline of a SQL file: its statement, the YAML document, the spec."""

    name: str
    statement: Statement
    document: dict[str, Any]
    spec: PipelineSpec


@dataclass(slots=True)
class SqlProgram:
    """A compiled SQL file: its pipelines in statement order, every stream it names, and
    the errors found (a statement with an error yields no pipeline)."""

    file: str
    text: str = ""
    pipelines: list[CompiledPipeline] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    errors: list[ConfigError] = field(default_factory=list)

    def relation(self, name: str) -> Relation | None:
        return find_relation(self.relations, Name(name, False, 0))

    @property
    def sources(self) -> list[Relation]:
        """The declared streams: where a replay's input goes."""
        return [r for r in self.relations if r.kind == "source"]

    def specs(self) -> list[PipelineSpec]:
        return [p.spec for p in self.pipelines]

    def line_of(self, statement: Statement) -> int:
        return SourceText(self.text).line_col(statement.offset)[0]


def load_sql_program(path: Path, display_name: str | None = None) -> SqlProgram:
    """A compiled .sql file; raises ConfigErrors with every problem in it."""
    name = display_name or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigErrors([ConfigError(f"cannot read file: {exc.strerror}", file=name)]) from None
    except UnicodeDecodeError:
        raise ConfigErrors([ConfigError("the file is not UTF-8 text", file=name)]) from None
    program = compile_sql(text, name)
    if program.errors:
        raise ConfigErrors(program.errors)
    return program


def load_sql_file(path: Path, display_name: str | None = None) -> list[PipelineSpec]:
    """The pipelines of a .sql file; raises ConfigErrors with every problem in it."""
    return load_sql_program(path, display_name).specs()


def compile_sql(text: str, file: str) -> SqlProgram:
    """Compile every statement of a SQL pipeline file."""
    source = SourceText(text)
    program = SqlProgram(file, text)
    statements, parse_errors = parse_statements(text)
    sql_errors: list[SqlError] = list(parse_errors)
    broken: set[str] = set()  # streams whose statement failed: readers stay quiet
    for error in parse_errors:
        if error.statement is not None:
            broken.add(error.statement.lower())
    names = [s.name.text for s in statements]
    for index, statement in enumerate(statements):
        errors: list[SqlError] = []
        compiler = StatementCompiler(program, statement, errors, broken, names[index + 1 :])
        compiler.compile()
        if compiler.failed:
            broken.add(statement.name.text.lower())
        sql_errors.extend(errors)
    sql_errors.sort(key=lambda e: e.offset if e.offset is not None else -1)
    if not statements and not sql_errors:
        sql_errors.append(SqlError("no statements: this file declares no stream", 0))
    for error in sql_errors:
        line, column = source.line_col(error.offset) if error.offset is not None else (None, None)
        program.errors.append(
            ConfigError(
                error.reason,
                file=file,
                line=line,
                column=column,
                field=f"statement {error.statement}" if error.statement else None,
            )
        )
    return program


# --- one statement -----------------------------------------------------------------------


class StatementCompiler:
    """Compiles one statement into the program: a relation, and a pipeline if derived."""

    def __init__(
        self,
        program: SqlProgram,
        statement: Statement,
        errors: list[SqlError],
        broken: set[str],
        later: list[str],
    ) -> None:
        self.program = program
        self.statement = statement
        self.errors = errors
        self.broken = broken
        self.later = later  # names of statements after this one
        self.label = statement.name.text
        self.failed = False
        self.join: Join | None = None
        self.stream_join: StreamJoin | None = None

    def error(self, reason: str, offset: int | None = None) -> SqlError:
        return SqlError(reason, self.statement.offset if offset is None else offset, self.label)

    def fail(self, error: SqlError) -> None:
        self.failed = True
        if not isinstance(error, Quiet):
            self.errors.append(error)

    def attempt(self, check: Callable[[], Any]) -> Any:
        """Run one independent check; its error is collected, the others still run."""
        try:
            return check()
        except SqlError as error:
            self.fail(error)
            return None

    @property
    def query_offset(self) -> int:
        return self.statement.query_offset

    # -- dispatch

    def compile(self) -> None:
        statement = self.statement
        if find_relation(self.program.relations, statement.name) is not None:
            self.fail(
                self.error(
                    f"'{statement.name.text}' is already defined by an earlier statement",
                    statement.name.offset,
                )
            )
            return
        try:
            if statement.query is None:
                self.declare()
            elif statement.kind == "stream":
                self.derive_stream()
            else:
                TableCompiler(self).compile()
        except SqlError as error:
            self.fail(error)

    # -- properties

    def properties(self, allowed: tuple[str, ...], what: str) -> dict[str, Property]:
        properties = self.statement.properties
        for name, prop in properties.items():
            if name not in allowed:
                raise self.error(
                    f"unknown property {name}{did_you_mean(name, allowed)} for {what}; use "
                    + ", ".join(allowed),
                    prop.offset,
                )
            if name == "VALUE_FORMAT":
                self.value_format(
                    prop, derived=what != "a declared stream" and "lookup" not in what
                )
        return properties

    def value_format(self, prop: Property | None, derived: bool) -> str:
        """VALUE_FORMAT as a topic format (ksqlDB's names): JSON, AVRO, PROTOBUF, JSON_SR;
        what a statement writes is JSON or AVRO."""
        if prop is None:
            return "json"
        allowed = VALUE_FORMATS_OUT if derived else VALUE_FORMATS
        found = allowed.get(str(prop.value).upper())
        if found is None:
            raise self.error(
                f"VALUE_FORMAT '{prop.value}': use {', '.join(allowed)}"
                + (" (outputs are written as JSON or AVRO)" if derived else ""),
                prop.value_offset,
            )
        return found

    def text_property(self, prop: Property) -> str:
        if not isinstance(prop.value, str) or not prop.value.strip():
            raise self.error(
                f"{prop.name} takes quoted text, e.g. {prop.name} = 'name'", prop.value_offset
            )
        return prop.value

    def topic_property(self, prop: Property) -> str:
        topic = self.text_property(prop)
        if not _TOPIC.match(topic):
            raise self.error(
                f"{prop.name} '{topic}' is not a topic name (letters, digits, '.', '_', '-')",
                prop.value_offset,
            )
        return topic

    def claim_topic(self, topic: str, offset: int) -> None:
        for relation in self.program.relations:
            if relation.topic == topic:
                raise self.error(
                    f"topic '{topic}' is already the topic of '{relation.name.text}': "
                    "each stream and table needs its own topic",
                    offset,
                )

    def property_column(self, relation: Relation, prop: Property, text: str) -> str:
        name = text.strip()
        if relation.columns is None:
            return name
        column = relation.column(exp.Identifier(this=name, quoted=False))
        if column is None:
            raise self.error(
                f"{prop.name} '{name}' is not a column of '{relation.name.text}'"
                f"{did_you_mean(name, relation.names())}",
                prop.value_offset,
            )
        return column.name

    # -- CREATE STREAM name (columns) WITH (...)

    def declare(self) -> None:
        statement = self.statement
        lookup = statement.kind == "table"
        properties = (
            self.properties(LOOKUP_PROPERTIES, "a lookup table")
            if lookup
            else self.properties(SOURCE_PROPERTIES, "a declared stream")
        )
        topic_prop = properties.get("KAFKA_TOPIC")
        if topic_prop is None:
            raise self.error(
                f"{'table' if lookup else 'stream'} '{self.label}' needs WITH (KAFKA_TOPIC = "
                "'topic'): the topic it is read from",
                statement.name.offset,
            )
        topic = self.topic_property(topic_prop)
        self.claim_topic(topic, topic_prop.value_offset)
        columns = None
        if statement.columns is not None:
            columns = [
                Column(c.name.text, c.name.quoted, c.schema_type + ("" if c.required else "?"))
                for c in statement.columns
            ]
        relation = Relation(
            statement.name, "lookup" if lookup else "source", topic, columns, statement
        )
        relation.format = self.value_format(properties.get("VALUE_FORMAT"), derived=False)
        timestamp = properties.get("TIMESTAMP")
        if timestamp is not None:
            relation.timestamp = self.property_column(
                relation, timestamp, self.text_property(timestamp)
            )
        key_prop = properties.get("KEY")
        marked = [c.name.text for c in statement.columns or [] if c.key]
        if key_prop is not None:
            key = tuple(
                self.property_column(relation, key_prop, part)
                for part in self.text_property(key_prop).split(",")
            )
            if marked and list(key) != marked:
                raise self.error(
                    f"KEY = '{key_prop.value}' differs from the columns marked KEY "
                    f"({', '.join(marked)})",
                    key_prop.value_offset,
                )
            relation.key = key
        elif marked:
            relation.key = tuple(marked)
        if lookup and relation.key is None:
            raise self.error(
                f"lookup table '{self.label}' needs a key: WITH (KEY = 'column'), or "
                "mark its column PRIMARY KEY",
                statement.name.offset,
            )
        self.program.relations.append(relation)

    # -- what streams and tables share

    def source_relation(self, query: exp.Select) -> tuple[Relation, set[str]]:
        """The relation FROM names, and the (lower-case) names that qualify its columns."""
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
                raise self.error(reason, offset_of(first, self.query_offset))
        for window in query.find_all(exp.Window):
            raise self.error(
                "window functions (OVER …) are not supported: use WINDOW … GROUP BY",
                offset_of(window, self.query_offset),
            )
        for subquery in query.find_all(exp.Subquery, exp.Exists):
            raise self.error(
                "subqueries are not supported: derive a stream and read it",
                offset_of(subquery, self.query_offset),
            )
        source = query.args.get("from_") or query.args.get("from")
        if not isinstance(source, exp.From):
            raise self.error("the query needs FROM stream", self.query_offset)
        table = source.this
        if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
            raise self.error(
                "FROM takes the name of a stream declared earlier in this file",
                offset_of(source, self.query_offset),
            )
        identifier = table.this
        name = Name(identifier.name, bool(identifier.quoted), offset_of(identifier, 0))
        if table.args.get("db") is not None:
            raise self.error(f"FROM {table.sql()}: streams have plain names", name.offset)
        relation = find_relation(self.program.relations, name)
        if relation is None:
            if name.text.lower() in self.broken:
                raise Quiet()
            if name.text.lower() == self.label.lower():
                raise self.error(f"'{self.label}' cannot read itself", name.offset)
            known = [r.name.text for r in self.program.relations]
            reason = f"unknown stream '{name.text}'{did_you_mean(name.text, known)}"
            if name.text.lower() in (n.lower() for n in self.later):
                reason += ": it is defined later; a statement reads streams defined before it"
            elif known:
                reason += f"; streams defined before: {', '.join(known)}"
            else:
                reason += "; declare it first: CREATE STREAM name (columns) WITH (KAFKA_TOPIC …)"
            raise self.error(reason, name.offset)
        if relation.kind == "lookup":
            raise self.error(
                f"'{relation.name.text}' is a lookup table: JOIN it to a stream "
                f"(FROM s LEFT JOIN {relation.name.text} t ON s.col = t.key)",
                name.offset,
            )
        qualifiers = qualifiers_of(relation, table)
        joins = query.args.get("joins") or []
        if len(joins) > 1:
            raise self.error(
                "one JOIN per query: join further in a derived stream",
                offset_of(joins[1], self.query_offset),
            )
        target = join_target(self, joins[0]) if joins else None
        if target is not None and target.kind != "lookup":
            self.stream_join = parse_stream_join(self, joins[0], relation, qualifiers, target)
        elif joins:
            if self.statement.within is not None:
                raise self.error(
                    "WITHIN is for a join of two streams; a lookup table has no time",
                    self.statement.within.offset,
                )
            self.join = parse_join(self, joins[0], relation, qualifiers)
        elif self.statement.within is not None:
            raise self.error(
                "WITHIN belongs to a JOIN of two streams", self.statement.within.offset
            )
        return relation, qualifiers

    def resolve(
        self,
        node: exp.Expr,
        relation: Relation,
        qualifiers: set[str],
        where: str,
    ) -> exp.Expr:
        """`node` with every column reference checked against `relation` (and a joined
        table) and spelt as the relation spells it, without qualifiers."""
        join = self.join
        stream_join = self.stream_join

        def visit(current: exp.Expr) -> exp.Expr:
            if not isinstance(current, exp.Column) or isinstance(current.this, exp.Star):
                return current
            original = column_parts(current)
            if stream_join is not None:
                return self.stream_joined(stream_join, original, relation, qualifiers, current)
            if (
                join is not None
                and len(original) > 1
                and original[0].name.lower() in join.qualifiers
            ):
                return self.joined(original[1:], relation, where, current)
            parts = self.unqualified(current, qualifiers)
            column = relation.column(parts[0])
            if join is not None and len(parts) == len(original):
                in_table = join.table.column(parts[0])
                if column is None and in_table is not None:
                    return self.joined(parts, relation, where, current)
                if (
                    column is not None
                    and in_table is not None
                    and relation.columns is not None
                    and join.stream_column_for(in_table.name) != column.name
                ):
                    raise self.error(
                        f"'{parts[0].name}' is a column of both '{relation.name.text}' and "
                        f"'{join.table.name.text}': qualify it",
                        offset_of(current, self.query_offset),
                    )
            if column is None:
                raise self.unknown_column(parts[0], relation, where, current)
            return build_column([identifier_of(column), *parts[1:]], parts[0])

        return node.transform(visit, copy=True)

    def stream_joined(
        self,
        join: StreamJoin,
        original: list[exp.Identifier],
        relation: Relation,
        qualifiers: set[str],
        at: exp.Column,
    ) -> exp.Expr:
        """A column in a query joining two streams: the FROM stream's as usual, the other
        stream's as `other.col`; an unqualified name both streams have must be qualified."""
        if len(original) > 1 and original[0].name.lower() in join.qualifiers:
            return other_column(self, join, original[1:], at)
        parts = self.unqualified(at, qualifiers)
        column = relation.column(parts[0])
        in_other = join.other.column(parts[0]) if len(parts) == len(original) else None
        if column is None and in_other is not None:
            return other_column(self, join, parts, at)
        if (
            column is not None
            and in_other is not None
            and relation.columns is not None
            and join.other.columns is not None
        ):
            raise self.error(
                f"'{parts[0].name}' is a column of both '{relation.name.text}' and "
                f"'{join.other.name.text}': qualify it",
                offset_of(at, self.query_offset),
            )
        if column is None:
            raise self.unknown_column(parts[0], relation, "the query", at)
        return build_column([identifier_of(column), *parts[1:]], parts[0])

    def joined(
        self, parts: list[exp.Identifier], relation: Relation, where: str, at: exp.Expr
    ) -> exp.Expr:
        """A column of the joined table: the field enrich copies into the record (its key
        is the stream's ON column, which holds the same value)."""
        join = cast(Join, self.join)
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
            raise self.error(
                f"'{column.name}' is a column of both '{relation.name.text}' and "
                f"'{join.table.name.text}': a join adds the table's columns under their own "
                "names, so it can add only columns the stream does not have",
                offset_of(at, self.query_offset),
            )
        join.use(column.name)
        return build_column([identifier_of(column), *parts[1:]], parts[0])

    def known_column(self, relation: Relation, name: exp.Identifier) -> Column | None:
        """A column of the stream, or of the joined table."""
        column = relation.column(name)
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
        query = self.statement.query
        aliases = (
            {i.alias for i in query.expressions if isinstance(i, exp.Alias)} if query else set()
        )
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
        return self.error(reason, offset_of(node, self.query_offset))

    def check_expression(self, node: exp.Expr, *, condition: bool = False) -> str:
        """The expression's text, compiled as a YAML step would compile it."""
        text = node.sql()
        try:
            if condition:
                compile_condition(text)
            else:
                compile_expression(text)
        except ExpressionError as exc:
            raise self.error(exc.reason, offset_of(node, self.query_offset)) from None
        return text

    def no_aggregates(self, node: exp.Expr, reason: str) -> None:
        for found in node.walk():
            if is_aggregate(found):
                raise self.error(
                    f"aggregate {describe(found)} {reason}", offset_of(found, self.query_offset)
                )

    def sink(self, properties: dict[str, Property]) -> tuple[str, str]:
        topic_prop = properties.get("KAFKA_TOPIC")
        if topic_prop is not None:
            topic = self.topic_property(topic_prop)
            offset = topic_prop.value_offset
        else:
            topic = self.label.replace("_", "-")
            offset = self.statement.name.offset
            if not _TOPIC.match(topic):
                raise self.error(
                    f"'{self.label}' is no topic name: set WITH (KAFKA_TOPIC = '…')", offset
                )
        self.claim_topic(topic, offset)
        dlq_prop = properties.get("DLQ_TOPIC")
        dlq = self.topic_property(dlq_prop) if dlq_prop is not None else f"{topic}-dlq"
        return topic, dlq

    def pipeline_name(self) -> str:
        if not _PIPELINE_NAME.match(self.label):
            raise self.error(
                f"'{self.label}' cannot name a pipeline: use letters, digits, '.', '_' or '-'",
                self.statement.name.offset,
            )
        return self.label

    @staticmethod
    def source_document(relation: Relation, key: tuple[str, ...] | None) -> dict[str, Any]:
        source: dict[str, Any] = {"topic": relation.topic}
        if key:
            source["key"] = list(key) if len(key) > 1 else key[0]
        if relation.timestamp is not None:
            source["timestamp"] = relation.timestamp
        if relation.format != "json":
            source["format"] = relation.format
        return source

    @staticmethod
    def validate_steps(relation: Relation) -> list[dict[str, Any]]:
        """A declared stream's columns are the inline schema its readers validate."""
        if relation.kind != "source" or not relation.columns:
            return []
        return [{"validate": {"schema": {c.name: c.schema_type for c in relation.columns}}}]

    def where_steps(
        self, query: exp.Select, relation: Relation, qualifiers: set[str]
    ) -> list[dict[str, Any]]:
        where = query.args.get("where")
        if not isinstance(where, exp.Where):
            return []

        def check() -> dict[str, Any]:
            self.no_aggregates(where.this, "is not allowed in WHERE: filter aggregates in HAVING")
            resolved = self.resolve(where.this, relation, qualifiers, "WHERE")
            return {"filter": self.check_expression(resolved, condition=True)}

        step = self.attempt(check)
        return [step] if step is not None else []

    def finish(self, document: dict[str, Any], output: Relation) -> None:
        """Validate the document into a spec exactly as a YAML file's; record both."""
        prop = self.statement.properties.get("VALUE_FORMAT")
        output.format = self.value_format(prop, derived=True)
        if output.format != "json":
            document["sink"]["format"] = output.format
        try:
            context = {"tables": sorted(document.get("tables", {}))}
            spec = PipelineSpec.model_validate(document, context=context)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            message = str(first["msg"]).removeprefix("Value error, ")
            raise self.error(f"{where}: {message}" if where else message) from None
        self.program.pipelines.append(CompiledPipeline(self.label, self.statement, document, spec))
        self.program.relations.append(output)

    def output_timestamp(
        self,
        properties: dict[str, Property],
        output: Relation,
        source: Relation,
        passed: dict[str, str],
    ) -> str | None:
        """The event-time column of a derived stream for its readers: its TIMESTAMP when
        given, else its source's when that column passes through (renamed or not)."""
        prop = properties.get("TIMESTAMP")
        if prop is not None:
            return self.property_column(output, prop, self.text_property(prop))
        return passed.get(source.timestamp) if source.timestamp is not None else None

    def emit_mode(self) -> str | None:
        return self.statement.emit[0] if self.statement.emit is not None else None

    # -- CREATE STREAM name AS SELECT

    def derive_stream(self) -> None:
        statement = self.statement
        query = cast(exp.Select, statement.query)
        properties = (
            self.attempt(lambda: self.properties(DERIVED_PROPERTIES, "a derived stream")) or {}
        )
        relation, qualifiers = self.source_relation(query)
        if statement.window is not None:
            self.fail(
                self.error(
                    "WINDOW makes a table: CREATE TABLE … AS SELECT … WINDOW … GROUP BY",
                    statement.window.offset,
                )
            )
        group = query.args.get("group")
        if group:
            self.fail(
                self.error(
                    "GROUP BY makes a table: CREATE TABLE … AS SELECT … WINDOW … GROUP BY",
                    statement.clause_offset("GROUP BY"),
                )
            )
        having = query.args.get("having")
        if having is not None:
            self.fail(
                self.error(
                    "HAVING needs GROUP BY (CREATE TABLE … WINDOW … GROUP BY … HAVING); "
                    "filter a stream with WHERE",
                    statement.clause_offset("HAVING"),
                )
            )
        if self.emit_mode() == "FINAL" and statement.emit is not None:
            self.fail(
                self.error(
                    "EMIT FINAL is for windowed tables; a stream emits every record",
                    statement.emit[1],
                )
            )
        name = self.attempt(self.pipeline_name)
        where = self.where_steps(query, relation, qualifiers)
        items = self.attempt(lambda: self.stream_items(query, relation, qualifiers))
        key = relation.key
        if self.stream_join is not None:  # both streams are partitioned by the join key
            key = self.stream_join.key
        if statement.partition_by is not None:
            key = self.attempt(lambda: self.partition_key(relation)) or key
        sink = self.attempt(lambda: self.sink(properties))
        if self.failed or items is None or sink is None or name is None:
            return
        projection, columns, passed = items
        enrich, tables = self.join_document()
        steps = self.validate_steps(relation) + enrich + where
        if projection is not None:
            steps.append({"map": projection})
        document = self.document(name, self.source_document(relation, key), tables, steps, sink)
        output = Relation(statement.name, "stream", sink[0], columns, statement)
        output.timestamp = self.output_timestamp(properties, output, relation, passed)
        self.finish(document, output)

    @staticmethod
    def document(
        name: str,
        source: dict[str, Any],
        tables: dict[str, Any],
        steps: list[dict[str, Any]],
        sink: tuple[str, str],
    ) -> dict[str, Any]:
        """A pipeline document, in the order a YAML file holds its keys."""
        document: dict[str, Any] = {"pipeline": name, "source": source}
        if tables:
            document["tables"] = tables
        document["steps"] = steps
        document["sink"] = {"topic": sink[0]}
        document["dlq"] = {"topic": sink[1]}
        return document

    def partition_key(self, relation: Relation) -> tuple[str, ...]:
        key = []
        for name in self.statement.partition_by or []:
            column = relation.column(exp.Identifier(this=name.text, quoted=name.quoted))
            if column is None:
                raise self.error(
                    f"unknown column '{name.text}' in PARTITION BY"
                    f"{did_you_mean(name.text, relation.names())}",
                    name.offset,
                )
            key.append(column.name)
        return tuple(key)

    def stream_items(
        self, query: exp.Select, relation: Relation, qualifiers: set[str]
    ) -> tuple[dict[str, str] | None, list[Column] | None, dict[str, str]]:
        """The map of a derived stream (None for a lone `SELECT *`), its output columns,
        and the source columns that pass through unchanged, to their output names."""
        expressions = list(query.expressions)
        if len(expressions) == 1 and isinstance(expressions[0], exp.Star):
            columns = list(relation.columns) if relation.columns is not None else None
            if self.join is not None:  # the record and every column of the table
                added = self.table_columns(relation, expressions[0])
                columns = None if columns is None or added is None else columns + added
            return None, columns, {c: c for c in relation.names()} if columns else {}
        outputs = _Outputs(self)
        passed: dict[str, str] = {}
        problems = 0
        for item in expressions:
            try:
                self.stream_item(item, relation, qualifiers, outputs, passed)
            except SqlError as error:
                self.fail(error)
                problems += 1
        if problems:
            raise Quiet()
        return outputs.projection, outputs.columns, passed

    def stream_item(
        self,
        item: exp.Expr,
        relation: Relation,
        qualifiers: set[str],
        outputs: _Outputs,
        passed: dict[str, str],
    ) -> None:
        offset = offset_of(item, self.query_offset)
        if is_star(item):
            qualifier = item.args.get("table") if isinstance(item, exp.Column) else None
            of_table = self.join is not None and (
                qualifier is not None and qualifier.name.lower() in self.join.qualifiers
            )
            if not of_table:
                if relation.columns is None:
                    raise self.error(
                        f"'{relation.name.text}' declares no columns, so SELECT * cannot be "
                        "combined with other columns",
                        offset,
                    )
                for column in relation.columns:
                    outputs.add(column, build_column([identifier_of(column)]), offset)
                    passed[column.name] = column.name
            if self.join is not None and (of_table or qualifier is None):
                added = self.table_columns(relation, item)
                if added is None:
                    raise self.error(
                        f"'{self.join.table.name.text}' declares no columns to select", offset
                    )
                for column in added:
                    outputs.add(column, build_column([identifier_of(column)]), offset)
            return
        self.no_aggregates(
            item,
            "needs GROUP BY: aggregates make a table (CREATE TABLE … AS SELECT … WINDOW … "
            "GROUP BY …)",
        )
        value = item.this if isinstance(item, exp.Alias) else item
        resolved = self.resolve(value, relation, qualifiers, "the select list")
        parts = column_parts(resolved) if isinstance(resolved, exp.Column) else []
        source = self.known_column(relation, parts[0]) if len(parts) == 1 else None
        # the other stream's column (other.col) keeps its name
        of_other = self.stream_join is not None and len(parts) == 2 and parts[0].name == OTHER
        if of_other and self.stream_join is not None:
            source = self.stream_join.other.column(parts[1])
        if isinstance(item, exp.Alias):
            alias = item.args["alias"]
            name = Column(alias.name, bool(alias.quoted))
        elif source is not None:
            name = source
        else:
            raise self.error(
                f"{describe(item)} needs a name: add AS alias, e.g. {describe(item)} AS x",
                offset,
            )
        self.check_expression(resolved)
        if source is not None and not of_other:
            passed.setdefault(source.name, name.name)
            name = Column(name.name, name.quoted, source.schema_type)
        outputs.add(name, resolved, offset)

    def table_columns(self, relation: Relation, at: exp.Expr) -> list[Column] | None:
        """The joined table's columns but its key, marked used (None: it declares none)."""
        join = cast(Join, self.join)
        if join.table.columns is None:
            return None
        added = []
        for column in join.table.columns:
            if column.name not in (join.table.key or ()):
                self.joined([identifier_of(column)], relation, "SELECT *", at)
                added.append(column)
        return added


class _Outputs:
    """The output columns of a select list, in order, with their expressions."""

    def __init__(self, owner: StatementCompiler) -> None:
        self.owner = owner
        self.projection: dict[str, str] = {}
        self.columns: list[Column] = []

    def add(self, column: Column, value: exp.Expr, offset: int) -> None:
        if column.name in self.projection:
            raise self.owner.error(
                f"two output columns are named '{column.name}': give one another alias", offset
            )
        self.projection[column.name] = value.sql()
        self.columns.append(column)
