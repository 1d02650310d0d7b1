"""SQL statements compiled to pipeline specs: the same `PipelineSpec` a YAML file gives.

- `CREATE STREAM s (columns) WITH (KAFKA_TOPIC …)` declares a source: no pipeline.
- `CREATE STREAM d AS SELECT … FROM s [WHERE …]` is a pipeline: `validate` (the declared
  columns as an inline schema) → `filter` (WHERE) → `map` (the select list; `SELECT *`
  keeps the record) → sink.
- `CREATE TABLE t AS SELECT keys, aggregates FROM s [WHERE …] WINDOW … GROUP BY keys
  [HAVING …]` ends in a `window` step keyed by the GROUP BY columns, then a `filter` for
  HAVING and, when the select list needs it, a `map` (renamed keys, expressions over
  aggregates, aggregates used only by HAVING left out).

Each pipeline is first written as the document a YAML file would hold (what
`sluice explain` prints), then validated into a `PipelineSpec` exactly as YAML is.
Column references are checked against what the source declares, so `sluice check` finds
a misspelt column before any record does.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from pydantic import ValidationError
from sqlglot import Tokenizer, exp

from models.pipeline import TOPIC_PATTERN, PipelineSpec
from streams.durations import format_duration_ms
from streams.errors import ConfigError, ConfigErrors, ExpressionError
from streams.expressions import compile_condition, compile_expression, parse_aggregate
from streams.sql.statements import (
    Name,
    Property,
    SourceText,
    SqlError,
    Statement,
    parse_statements,
)

RelationKind = Literal["source", "stream", "table"]
WINDOW_BOUNDS = ("window_start", "window_end")
# ksqlDB spells the window bounds WINDOWSTART / WINDOWEND
_BOUND_NAMES = {"windowstart": "window_start", "windowend": "window_end"} | {
    b: b for b in WINDOW_BOUNDS
}
_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOPIC = re.compile(TOPIC_PATTERN)
_PIPELINE_NAME = re.compile(r"^[A-Za-z0-9._\-]+$")

_SOURCE_PROPERTIES = ("KAFKA_TOPIC", "TIMESTAMP", "KEY", "VALUE_FORMAT")
_DERIVED_PROPERTIES = ("KAFKA_TOPIC", "DLQ_TOPIC", "TIMESTAMP", "VALUE_FORMAT")


# --- what the compiler knows about a stream ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    quoted: bool  # spelled with quotes in generated SQL (a keyword, or not a plain word)
    schema_type: str | None = None


@dataclass(slots=True)
class Relation:
    """A stream or table a query can read: declared (`source`) or derived by a statement."""

    name: Name
    kind: RelationKind
    topic: str
    columns: list[Column] | None  # None: declared without columns, any field goes
    statement: Statement
    timestamp: str | None = None
    key: tuple[str, ...] | None = None
    pipeline: str | None = None

    def column(self, name: exp.Identifier) -> Column | None:
        """The column an identifier names: exactly when quoted, else ignoring case
        (preferring the exact spelling)."""
        if self.columns is None:
            return Column(name.name, _needs_quotes(name.name, name.quoted))
        exact = [c for c in self.columns if c.name == name.name]
        if exact or name.quoted:
            return exact[0] if exact else None
        folded = [c for c in self.columns if c.name.lower() == name.name.lower()]
        return folded[0] if len(folded) == 1 else None

    def names(self) -> list[str]:
        return [c.name for c in self.columns or []]


@dataclass(frozen=True, slots=True)
class CompiledPipeline:
    """One pipeline of a SQL file: its statement, the YAML document, the spec."""

    name: str
    statement: Statement
    document: dict[str, Any]
    spec: PipelineSpec
    reads: str  # the name of the stream it reads


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
        return _find(self.relations, Name(name, False, 0))

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
        compiler = _Statement(program, statement, errors, broken, names[index + 1 :])
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


# --- helpers -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _needs_quotes(name: str, quoted: bool = False) -> bool:
    return quoted or not _WORD.match(name) or name.upper() in Tokenizer.KEYWORDS


def _identifier(column: Column) -> exp.Identifier:
    return exp.Identifier(this=column.name, quoted=_needs_quotes(column.name, column.quoted))


def _find(relations: Iterable[Relation], name: Name) -> Relation | None:
    candidates = list(relations)
    for relation in candidates:
        if relation.name.text == name.text:
            return relation
    if name.quoted:
        return None
    folded = [r for r in candidates if r.name.text.lower() == name.text.lower()]
    return folded[0] if len(folded) == 1 else None


def _hint(word: str, options: Iterable[str]) -> str:
    choices = list(options)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        close = [lowered[m] for m in difflib.get_close_matches(word.lower(), list(lowered), n=1)]
    return f" (did you mean '{close[0]}'?)" if close else ""


def _offset(node: exp.Expr, default: int) -> int:
    """The earliest file offset sqlglot recorded inside `node`."""
    starts = [int(n.meta["start"]) for n in node.walk() if "start" in n.meta]
    return min(starts) if starts else default


def _column_parts(column: exp.Column) -> list[exp.Identifier]:
    parts = [column.args.get(k) for k in ("catalog", "db", "table", "this")]
    return [p for p in parts if isinstance(p, exp.Identifier)]


def _build_column(parts: list[exp.Identifier]) -> exp.Column:
    padded: list[exp.Identifier | None] = [None] * (4 - len(parts)) + list(parts)
    return exp.Column(this=padded[3], table=padded[2], db=padded[1], catalog=padded[0])


def _is_star(node: exp.Expr) -> bool:
    return isinstance(node, exp.Star) or (
        isinstance(node, exp.Column) and isinstance(node.this, exp.Star)
    )


def _aggregate_classes() -> tuple[type[exp.Expr], ...]:
    names = ("Count", "Sum", "Avg", "Min", "Max", "First", "Last", "ApproxDistinct")
    classes = [getattr(exp, n, None) for n in names]
    return tuple(c for c in classes if isinstance(c, type))


_AGGREGATES = _aggregate_classes()
_ANONYMOUS_AGGREGATES = frozenset({"percentile", "count_distinct", "first", "last"})


def _aggregate_name(node: exp.Expr) -> str | None:
    """The sluice aggregate an SQL call is, or None when it is no aggregate."""
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        return name if name in _ANONYMOUS_AGGREGATES else None
    if not isinstance(node, _AGGREGATES):
        return None
    if type(node).__name__ == "ApproxDistinct":
        return "count_distinct"
    return cast(exp.Func, node).sql_name().lower()


def _is_aggregate(node: exp.Expr) -> bool:
    return _aggregate_name(node) is not None


def _describe(node: exp.Expr) -> str:
    text = node.sql()
    return text if len(text) <= 60 else text[:57] + "..."


def _format_duration(ms: int) -> str:
    return format_duration_ms(ms)


# --- one statement -----------------------------------------------------------------------


class _Quiet(SqlError):
    """A statement that cannot compile because of an error reported elsewhere (its source
    failed, or a sibling check already said why)."""

    def __init__(self) -> None:
        super().__init__("", None)


class _Statement:
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

    def error(self, reason: str, offset: int | None = None) -> SqlError:
        return SqlError(reason, self.statement.offset if offset is None else offset, self.label)

    def fail(self, error: SqlError) -> None:
        self.failed = True
        if not isinstance(error, _Quiet):
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
        if _find(self.program.relations, statement.name) is not None:
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
                _Table(self).compile()
        except SqlError as error:
            self.fail(error)

    # -- properties

    def properties(self, allowed: tuple[str, ...], what: str) -> dict[str, Property]:
        properties = self.statement.properties
        for name, prop in properties.items():
            if name not in allowed:
                raise self.error(
                    f"unknown property {name}{_hint(name, allowed)} for {what}; use "
                    + ", ".join(allowed),
                    prop.offset,
                )
            if name == "VALUE_FORMAT" and str(prop.value).upper() != "JSON":
                raise self.error(
                    f"VALUE_FORMAT '{prop.value}': sluice reads and writes JSON only",
                    prop.value_offset,
                )
        return properties

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
                f"{_hint(name, relation.names())}",
                prop.value_offset,
            )
        return column.name

    # -- CREATE STREAM name (columns) WITH (...)

    def declare(self) -> None:
        statement = self.statement
        if statement.kind == "table":
            raise self.error(
                "CREATE TABLE needs AS SELECT … WINDOW … GROUP BY (a windowed aggregation); "
                "declare a source with CREATE STREAM name (columns) WITH (KAFKA_TOPIC = '…')",
                statement.name.offset,
            )
        properties = self.properties(_SOURCE_PROPERTIES, "a declared stream")
        topic_prop = properties.get("KAFKA_TOPIC")
        if topic_prop is None:
            raise self.error(
                f"stream '{self.label}' needs WITH (KAFKA_TOPIC = 'topic'): the topic it is "
                "read from",
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
        relation = Relation(statement.name, "source", topic, columns, statement)
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
        self.program.relations.append(relation)

    # -- what streams and tables share

    def source_relation(self, query: exp.Select) -> tuple[Relation, set[str]]:
        """The relation FROM names, and the (lower-case) names that qualify its columns."""
        for arg, reason in (
            ("joins", "JOIN is not supported in SQL pipelines: enrich in a YAML pipeline"),
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
                raise self.error(reason, _offset(first, self.query_offset))
        for window in query.find_all(exp.Window):
            raise self.error(
                "window functions (OVER …) are not supported: use WINDOW … GROUP BY",
                _offset(window, self.query_offset),
            )
        for subquery in query.find_all(exp.Subquery, exp.Exists):
            raise self.error(
                "subqueries are not supported: derive a stream and read it",
                _offset(subquery, self.query_offset),
            )
        source = query.args.get("from_") or query.args.get("from")
        if not isinstance(source, exp.From):
            raise self.error("the query needs FROM stream", self.query_offset)
        table = source.this
        if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
            raise self.error(
                "FROM takes the name of a stream declared earlier in this file",
                _offset(source, self.query_offset),
            )
        identifier = table.this
        name = Name(identifier.name, bool(identifier.quoted), _offset(identifier, 0))
        if table.args.get("db") is not None:
            raise self.error(f"FROM {table.sql()}: streams have plain names", name.offset)
        relation = _find(self.program.relations, name)
        if relation is None:
            if name.text.lower() in self.broken:
                raise _Quiet()
            if name.text.lower() == self.label.lower():
                raise self.error(f"'{self.label}' cannot read itself", name.offset)
            known = [r.name.text for r in self.program.relations]
            reason = f"unknown stream '{name.text}'{_hint(name.text, known)}"
            if name.text.lower() in (n.lower() for n in self.later):
                reason += ": it is defined later; a statement reads streams defined before it"
            elif known:
                reason += f"; streams defined before: {', '.join(known)}"
            else:
                reason += "; declare it first: CREATE STREAM name (columns) WITH (KAFKA_TOPIC …)"
            raise self.error(reason, name.offset)
        qualifiers = {relation.name.text.lower(), name.text.lower()}
        alias = table.args.get("alias")
        if isinstance(alias, exp.TableAlias) and alias.this is not None:
            qualifiers.add(alias.name.lower())
        return relation, qualifiers

    def resolve(
        self,
        node: exp.Expr,
        relation: Relation,
        qualifiers: set[str],
        where: str,
        first: Callable[[exp.Column, list[exp.Identifier]], exp.Expr | None] | None = None,
    ) -> exp.Expr:
        """`node` with every column reference checked against `relation` and spelt as the
        relation spells it, without qualifiers; `first` may resolve a name before that."""

        def visit(current: exp.Expr) -> exp.Expr:
            if not isinstance(current, exp.Column) or isinstance(current.this, exp.Star):
                return current
            parts = self.unqualified(current, qualifiers)
            if first is not None:
                replaced = first(current, parts)
                if replaced is not None:
                    return replaced
            column = relation.column(parts[0])
            if column is None:
                raise self.unknown_column(parts[0], relation, where, current)
            return _build_column([_identifier(column), *parts[1:]])

        return node.transform(visit, copy=True)

    @staticmethod
    def unqualified(column: exp.Column, qualifiers: set[str]) -> list[exp.Identifier]:
        parts = _column_parts(column)
        if len(parts) > 1 and parts[0].name.lower() in qualifiers:
            return parts[1:]
        return parts

    def unknown_column(
        self, name: exp.Identifier, relation: Relation, where: str, node: exp.Expr
    ) -> SqlError:
        known = relation.names()
        return self.error(
            f"unknown column '{name.name}' in {where}{_hint(name.name, known)}; "
            f"'{relation.name.text}' has {', '.join(known)}",
            _offset(node, self.query_offset),
        )

    def check_expression(self, node: exp.Expr, *, condition: bool = False) -> str:
        """The expression's text, compiled as a YAML step would compile it."""
        text = node.sql()
        try:
            if condition:
                compile_condition(text)
            else:
                compile_expression(text)
        except ExpressionError as exc:
            raise self.error(exc.reason, _offset(node, self.query_offset)) from None
        return text

    def no_aggregates(self, node: exp.Expr, reason: str) -> None:
        for found in node.walk():
            if _is_aggregate(found):
                raise self.error(
                    f"aggregate {_describe(found)} {reason}", _offset(found, self.query_offset)
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

    def finish(self, relation: Relation, document: dict[str, Any], output: Relation) -> None:
        """Validate the document into a spec exactly as a YAML file's; record both."""
        try:
            context = {"tables": sorted(document.get("tables", {}))}
            spec = PipelineSpec.model_validate(document, context=context)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            message = str(first["msg"]).removeprefix("Value error, ")
            raise self.error(f"{where}: {message}" if where else message) from None
        self.program.pipelines.append(
            CompiledPipeline(self.label, self.statement, document, spec, relation.name.text)
        )
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
            self.attempt(lambda: self.properties(_DERIVED_PROPERTIES, "a derived stream")) or {}
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
        steps = self.validate_steps(relation) + self.where_steps(query, relation, qualifiers)
        items = self.attempt(lambda: self.stream_items(query, relation, qualifiers))
        key = relation.key
        if statement.partition_by is not None:
            key = self.attempt(lambda: self.partition_key(relation)) or key
        sink = self.attempt(lambda: self.sink(properties))
        if self.failed or items is None or sink is None or name is None:
            return
        projection, columns, passed = items
        if projection is not None:
            steps.append({"map": projection})
        topic, dlq = sink
        document = {
            "pipeline": name,
            "source": self.source_document(relation, key),
            "steps": steps,
            "sink": {"topic": topic},
            "dlq": {"topic": dlq},
        }
        output = Relation(statement.name, "stream", topic, columns, statement, pipeline=name)
        output.timestamp = self.output_timestamp(properties, output, relation, passed)
        self.finish(relation, document, output)

    def partition_key(self, relation: Relation) -> tuple[str, ...]:
        key = []
        for name in self.statement.partition_by or []:
            column = relation.column(exp.Identifier(this=name.text, quoted=name.quoted))
            if column is None:
                raise self.error(
                    f"unknown column '{name.text}' in PARTITION BY"
                    f"{_hint(name.text, relation.names())}",
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
        if len(expressions) == 1 and _is_star(expressions[0]):
            columns = list(relation.columns) if relation.columns is not None else None
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
            raise _Quiet()
        return outputs.projection, outputs.columns, passed

    def stream_item(
        self,
        item: exp.Expr,
        relation: Relation,
        qualifiers: set[str],
        outputs: _Outputs,
        passed: dict[str, str],
    ) -> None:
        offset = _offset(item, self.query_offset)
        if _is_star(item):
            if relation.columns is None:
                raise self.error(
                    f"'{relation.name.text}' declares no columns, so SELECT * cannot be "
                    "combined with other columns",
                    offset,
                )
            for column in relation.columns:
                outputs.add(column, _build_column([_identifier(column)]), offset)
                passed[column.name] = column.name
            return
        self.no_aggregates(
            item,
            "needs GROUP BY: aggregates make a table (CREATE TABLE … AS SELECT … WINDOW … "
            "GROUP BY …)",
        )
        value = item.this if isinstance(item, exp.Alias) else item
        resolved = self.resolve(value, relation, qualifiers, "the select list")
        parts = _column_parts(resolved) if isinstance(resolved, exp.Column) else []
        source = relation.column(parts[0]) if len(parts) == 1 else None
        if isinstance(item, exp.Alias):
            alias = item.args["alias"]
            name = Column(alias.name, bool(alias.quoted))
        elif source is not None:
            name = source
        else:
            raise self.error(
                f"{_describe(item)} needs a name: add AS alias, e.g. {_describe(item)} AS x",
                offset,
            )
        self.check_expression(resolved)
        if source is not None:
            passed.setdefault(source.name, name.name)
            name = Column(name.name, name.quoted, source.schema_type)
        outputs.add(name, resolved, offset)


class _Outputs:
    """The output columns of a select list, in order, with their expressions."""

    def __init__(self, owner: _Statement) -> None:
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


@dataclass(slots=True)
class _Output:
    column: Column
    value: exp.Expr  # over the window's result record
    kind: Literal["key", "aggregate", "computed"]
    key: Column | None = None  # for a key: the GROUP BY column it shows


class _Table:
    """`CREATE TABLE t AS SELECT keys, aggregates FROM s [WHERE …] WINDOW … GROUP BY keys
    [HAVING …] [EMIT FINAL|CHANGES]`: validate → filter → window → filter → map.

    The window step computes every aggregate call the select list and HAVING make (an
    aggregate HAVING repeats is computed once); expressions over aggregates and renamed
    keys are a `map` after it, which also leaves out aggregates only HAVING uses."""

    def __init__(self, owner: _Statement) -> None:
        self.owner = owner
        self.statement = owner.statement
        self.query = cast(exp.Select, owner.statement.query)
        self.relation: Relation
        self.qualifiers: set[str] = set()
        self.keys: list[Column] = []
        self.aggregates: dict[str, str] = {}  # window aggregate name -> call, e.g. sum(amount)
        self.named: dict[str, str] = {}  # call -> the first name it has
        self.hidden: list[str] = []  # aggregates no output column shows
        self.aliases: dict[str, exp.Expr] = {}  # select alias -> its value, for HAVING
        self.reserved: set[str] = set()

    def error(self, reason: str, node: exp.Expr | int) -> SqlError:
        offset = node if isinstance(node, int) else _offset(node, self.owner.query_offset)
        return self.owner.error(reason, offset)

    def compile(self) -> None:
        owner, statement, query = self.owner, self.statement, self.query
        properties = owner.attempt(lambda: owner.properties(_DERIVED_PROPERTIES, "a table")) or {}
        self.relation, self.qualifiers = owner.source_relation(query)
        if statement.partition_by is not None:
            owner.fail(
                self.error(
                    "PARTITION BY is for streams; a table is keyed by its GROUP BY columns",
                    statement.partition_offset,
                )
            )
        name = owner.attempt(owner.pipeline_name)
        steps = owner.validate_steps(self.relation)
        steps += owner.where_steps(query, self.relation, self.qualifiers)
        group = query.args.get("group")
        having = query.args.get("having")
        if not group:
            self.without_group_by(having)
            return
        if statement.window is None:
            owner.fail(
                self.error(
                    "CREATE TABLE … AS SELECT needs a WINDOW before GROUP BY, e.g. "
                    "WINDOW TUMBLING (SIZE 1 MINUTE) (sluice aggregates over windows)",
                    statement.name.offset,
                )
            )
        keys = owner.attempt(lambda: self.group_keys(group))
        if keys is None:
            return
        self.keys = keys
        outputs = self.select_items()
        condition = owner.attempt(lambda: self.having(having)) if having is not None else None
        sink = owner.attempt(lambda: owner.sink(properties))
        if owner.failed or outputs is None or sink is None or name is None:
            return
        if not self.aggregates:
            raise self.error(
                "a table needs at least one aggregate, e.g. COUNT(*) AS n", owner.query_offset
            )
        steps.append({"window": self.window_document()})
        if condition is not None:
            steps.append({"filter": condition})
        projection = self.projection(outputs)
        if projection is not None:
            steps.append({"map": projection})
        topic, dlq = sink
        document = {
            "pipeline": name,
            "source": owner.source_document(self.relation, tuple(k.name for k in self.keys)),
            "steps": steps,
            "sink": {"topic": topic},
            "dlq": {"topic": dlq},
        }
        columns = [o.column for o in outputs if o.kind == "key"]
        columns += [Column(bound, False) for bound in WINDOW_BOUNDS]
        columns += [o.column for o in outputs if o.kind != "key"]
        output = Relation(statement.name, "table", topic, columns, statement, pipeline=name)
        if "TIMESTAMP" in properties:
            output.timestamp = owner.output_timestamp(properties, output, self.relation, {})
        owner.finish(self.relation, document, output)

    def without_group_by(self, having: exp.Expr | None) -> None:
        # one error for the one thing missing: HAVING names it best when present
        if having is not None:
            self.owner.fail(
                self.error(
                    "HAVING needs GROUP BY: … WINDOW … GROUP BY key HAVING condition",
                    self.statement.clause_offset("HAVING"),
                )
            )
            return
        for item in self.query.expressions:
            for node in item.walk():
                if _is_aggregate(node):
                    self.owner.fail(
                        self.error(
                            f"aggregate {_describe(node)} needs GROUP BY: a table aggregates "
                            "per key, e.g. … WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY user_id",
                            node,
                        )
                    )
                    return
        self.owner.fail(
            self.error(
                "CREATE TABLE … AS SELECT needs aggregates and GROUP BY, e.g. "
                "SELECT user_id, COUNT(*) AS n … GROUP BY user_id",
                self.statement.name.offset,
            )
        )

    def group_keys(self, group: exp.Group) -> list[Column]:
        keys: list[Column] = []
        for node in group.expressions:
            if not isinstance(node, exp.Column) or isinstance(node.this, exp.Star):
                raise self.error(
                    f"GROUP BY takes columns, not {_describe(node)}: compute it as a column "
                    "of a derived stream first, then group by that column",
                    node,
                )
            parts = self.owner.unqualified(node, self.qualifiers)
            if len(parts) != 1:
                raise self.error(
                    f"GROUP BY {_describe(node)}: group by a top-level column (compute nested "
                    "values in a derived stream first)",
                    node,
                )
            column = self.relation.column(parts[0])
            if column is None:
                raise self.owner.unknown_column(parts[0], self.relation, "GROUP BY", node)
            if any(k.name == column.name for k in keys):
                raise self.error(f"GROUP BY names '{column.name}' twice", node)
            keys.append(column)
        return keys

    # -- aggregates

    def call(self, node: exp.Expr) -> str:
        """The window aggregate for an SQL aggregate call, e.g. `count_distinct(order_id)`."""
        name = cast(str, _aggregate_name(node))
        upper = name.upper()
        for inner in node.walk():
            if inner is not node and _is_aggregate(inner):
                raise self.error(f"aggregates cannot be nested: {_describe(node)}", inner)

        def argument(value: exp.Expr | None) -> str:
            if value is None or _is_star(value):
                raise self.error(f"{upper}(*): only COUNT(*) counts rows", node)
            if isinstance(value, exp.Distinct):
                raise self.error(
                    f"{upper}(DISTINCT …): DISTINCT works in COUNT(DISTINCT x) only", node
                )
            resolved = self.owner.resolve(value, self.relation, self.qualifiers, f"{upper}(…)")
            return resolved.sql()

        if isinstance(node, exp.Anonymous):
            args: list[exp.Expr] = list(node.expressions)
        else:
            args = [a for a in (node.this, *(node.args.get("expressions") or [])) if a is not None]
        if name == "count":
            inner = node.this
            if inner is None or isinstance(inner, exp.Star):
                text = "count()"
            elif isinstance(inner, exp.Distinct):
                if len(inner.expressions) != 1:
                    raise self.error("COUNT(DISTINCT …) takes one value", node)
                text = f"count_distinct({argument(inner.expressions[0])})"
            else:
                text = f"count({argument(inner)})"
        elif name == "percentile":
            if len(args) != 2:
                raise self.error(
                    "PERCENTILE takes a value and a fraction, e.g. PERCENTILE(amount, 0.9)", node
                )
            text = f"percentile({argument(args[0])}, {args[1].sql()})"
        else:
            if len(args) != 1:
                hint = {
                    "max": " (GREATEST(a, b) is the larger of values)",
                    "min": " (LEAST(a, b) is the smaller of values)",
                }.get(name, "")
                raise self.error(f"{upper}() takes one value{hint}", node)
            text = f"{name}({argument(args[0])})"
        try:
            parse_aggregate(text)
        except ExpressionError as exc:
            raise self.error(exc.reason, node) from None
        return text

    def reference(self, node: exp.Expr) -> exp.Column:
        """The window result's field holding an aggregate (a hidden one if no alias)."""
        text = self.call(node)
        name = self.named.get(text)
        if name is None:
            number = len(self.hidden) + 1
            name = f"_agg{number}"
            while name in self.reserved or name in self.aggregates:
                number += 1
                name = f"_agg{number}"
            self.aggregates[name] = text
            self.named[text] = name
            self.hidden.append(name)
        return _build_column([exp.Identifier(this=name, quoted=_needs_quotes(name))])

    # -- the select list and HAVING, over the window's result record

    def key_named(self, name: exp.Identifier) -> Column | None:
        for key in self.keys:
            if key.name == name.name or (not name.quoted and key.name.lower() == name.name.lower()):
                return key
        return None

    def over_result(self, node: exp.Expr, where: str, *, aliases: bool) -> exp.Expr:
        """`node` rewritten over the window's result: aggregate calls become their fields,
        columns must be GROUP BY keys, window bounds (WINDOWSTART, window_end…) or, in
        HAVING, select aliases."""

        def visit(current: exp.Expr) -> exp.Expr:
            if _is_aggregate(current):
                return self.reference(current)
            if not isinstance(current, exp.Column) or isinstance(current.this, exp.Star):
                return current
            parts = self.owner.unqualified(current, self.qualifiers)
            head = parts[0]
            key = self.key_named(head)
            if key is not None:
                return _build_column([_identifier(key), *parts[1:]])
            if aliases and len(parts) == 1:
                value = self.aliases.get(head.name)
                if value is not None:
                    return value.copy()
            bound = _BOUND_NAMES.get(head.name.lower())
            if bound is not None and len(parts) == 1 and self.relation.column(head) is None:
                return _build_column([exp.Identifier(this=bound, quoted=False)])
            if self.relation.column(head) is not None:
                raise self.error(
                    f"column '{head.name}' in {where} is neither in GROUP BY nor inside an "
                    f"aggregate: add it to GROUP BY, or aggregate it, e.g. MAX({head.name})",
                    current,
                )
            raise self.owner.unknown_column(head, self.relation, where, current)

        return node.transform(visit, copy=True)

    def select_items(self) -> list[_Output] | None:
        owner = self.owner
        items = list(self.query.expressions)
        key_names = {k.name for k in self.keys}
        self.reserved = {i.alias for i in items if isinstance(i, exp.Alias)} | key_names
        # aggregates named by the select list first: HAVING and expressions reuse them
        for item in items:
            if isinstance(item, exp.Alias) and _is_aggregate(item.this):
                alias = item.alias
                text = owner.attempt(functools.partial(self.call, item.this))
                if text is None or alias in self.aggregates:
                    continue
                if alias in key_names or alias in WINDOW_BOUNDS:
                    what = "a GROUP BY column" if alias in key_names else "the window's"
                    owner.fail(
                        self.error(f"'{alias}' is {what}: name the aggregate otherwise", item)
                    )
                    continue
                self.aggregates[alias] = text
                self.named.setdefault(text, alias)
        outputs: list[_Output] = []
        names: set[str] = set()
        for item in items:
            output = owner.attempt(functools.partial(self.select_item, item))
            if output is None:
                continue
            if output.column.name in names:
                owner.fail(
                    self.error(
                        f"two output columns are named '{output.column.name}': give one "
                        "another alias",
                        item,
                    )
                )
                continue
            names.add(output.column.name)
            outputs.append(output)
            self.aliases.setdefault(output.column.name, output.value)
        return None if owner.failed else outputs

    def select_item(self, item: exp.Expr) -> _Output | None:
        if _is_star(item):
            raise self.error(
                "SELECT * has no meaning in a table: select the GROUP BY columns and aggregates",
                item,
            )
        if isinstance(item, exp.Alias):
            alias = item.args["alias"]
            column = Column(alias.name, bool(alias.quoted))
            if _is_aggregate(item.this):
                if column.name not in self.aggregates:
                    raise _Quiet()  # its error is reported already
                reference: exp.Expr = _build_column([_identifier(column)])
                return _Output(column, reference, "aggregate")
            value = self.over_result(item.this, "the select list", aliases=False)
            key = self.key_of(value)
            if key is None:
                self.owner.check_expression(value)
            return _Output(column, value, "key" if key is not None else "computed", key)
        value = self.over_result(item, "the select list", aliases=False)
        key = self.key_of(value)
        if key is not None:
            return _Output(key, value, "key", key)
        if isinstance(value, exp.Column) and value.name in WINDOW_BOUNDS:
            return None  # always in a window's result
        example = "COUNT(*) AS n" if _is_aggregate(item) else f"{_describe(item)} AS x"
        raise self.error(f"{_describe(item)} needs a name: add AS alias, e.g. {example}", item)

    def key_of(self, value: exp.Expr) -> Column | None:
        if isinstance(value, exp.Column) and len(_column_parts(value)) == 1:
            return next((k for k in self.keys if k.name == value.name), None)
        return None

    def having(self, having: exp.Having) -> str:
        condition = self.over_result(having.this, "HAVING", aliases=True)
        return self.owner.check_expression(condition, condition=True)

    def projection(self, outputs: list[_Output]) -> dict[str, str] | None:
        """The map after the window, or None when the window's result is the answer."""
        keys = [o for o in outputs if o.kind == "key"]
        shown = {o.key.name for o in keys if o.key is not None}
        plain = all(o.key is not None and o.column.name == o.key.name for o in keys)
        if (
            not self.hidden
            and plain
            and shown == {k.name for k in self.keys}
            and len(keys) == len(shown)
            and all(o.kind != "computed" for o in outputs)
        ):
            return None
        projection: dict[str, str] = {o.column.name: o.value.sql() for o in keys}
        for bound in WINDOW_BOUNDS:
            projection.setdefault(bound, bound)
        for output in outputs:
            if output.kind != "key":
                projection[output.column.name] = output.value.sql()
        return projection

    def window_document(self) -> dict[str, Any]:
        window = self.statement.window
        assert window is not None
        document: dict[str, Any] = {"type": window.kind}
        for slot, duration in (
            ("size", window.size),
            ("hop", window.advance),
            ("gap", window.gap),
            ("grace", window.grace),
        ):
            if duration is not None:
                document[slot] = _format_duration(duration.ms)
        names = [k.name for k in self.keys]
        document["key"] = names if len(names) > 1 else names[0]
        document["emit"] = "updates" if self.owner.emit_mode() == "CHANGES" else "final"
        document["aggregates"] = dict(self.aggregates)
        return document
