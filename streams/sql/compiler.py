"""SQL statements compiled to pipeline specs: the same `PipelineSpec` a YAML file gives.

One compiler per kind of statement, each given the statement, its `Diagnostics` and the
`Catalog` of what the statements before it define:

- `CREATE STREAM s (columns) WITH (KAFKA_TOPIC …)` and `CREATE TABLE t (columns) WITH
  (…, KEY …)` declare a source or a lookup table: no pipeline (`streams.sql.declare`).
- `CREATE STREAM d AS SELECT … FROM s [JOIN …] [WHERE …]` is a pipeline ending in a `map`
  (`streams.sql.stream`); JOIN a lookup table is an `enrich` step (`joins`), JOIN a
  stream WITHIN … a `join` step (`stream_joins`).
- `CREATE TABLE t AS SELECT keys, aggregates FROM s … WINDOW … GROUP BY keys [HAVING …]`
  ends in a `window` step, and without WINDOW in an `aggregate` step of running
  aggregates (`streams.sql.tables`, over `grouped`).

Each pipeline is first written as the document a YAML file would hold (what
`sluice explain` prints), then validated into a `PipelineSpec` exactly as YAML is.
Column references are checked against what the source declares (`scope`), so
`sluice check` finds a misspelt column before any record does.
"""

from __future__ import annotations

from pathlib import Path

from streams.core.errors import ConfigError, ConfigErrors
from streams.sql.catalog import Catalog
from streams.sql.declare import declare
from streams.sql.diagnostics import Diagnostics, SqlError, report
from streams.sql.parser import parse_statements
from streams.sql.program import Compiled, CompiledPipeline, SqlProgram
from streams.sql.properties import Properties
from streams.sql.statements import Statement
from streams.sql.stream import StreamCompiler
from streams.sql.tables import RunningTable, WindowedTable
from streams.steps.spec_fields import PipelineSpec

__all__ = [
    "CompiledPipeline",
    "SqlProgram",
    "compile_sql",
    "load_sql_file",
    "load_sql_program",
]


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
    program = SqlProgram(file, text)
    statements, parse_errors = parse_statements(text)
    errors: list[SqlError] = list(parse_errors)
    catalog = Catalog(program.relations, statements)
    for error in parse_errors:
        if error.statement is not None:  # readers of a broken statement stay quiet
            catalog.broken.add(error.statement.lower())
    for statement in statements:
        diagnostics = Diagnostics(
            errors, statement.name.text, statement.offset, statement.query_offset
        )
        compiled = compile_statement(diagnostics, catalog, statement)
        if diagnostics.failed or compiled is None:
            catalog.broken.add(statement.name.text.lower())
            continue
        program.relations.append(compiled.relation)
        if compiled.pipeline is not None:
            program.pipelines.append(compiled.pipeline)
    if not statements and not errors:
        errors.append(SqlError("no statements: this file declares no stream", 0))
    program.errors = report(errors, text, file)
    return program


def compile_statement(
    diagnostics: Diagnostics, catalog: Catalog, statement: Statement
) -> Compiled | None:
    """What one statement defines, by its kind; None when it has an error (collected)."""
    if catalog.find(statement.name) is not None:
        diagnostics.fail(
            diagnostics.error(
                f"'{statement.name.text}' is already defined by an earlier statement",
                statement.name.offset,
            )
        )
        return None
    try:
        if statement.query is None:
            return declare(diagnostics, Properties(diagnostics, statement, catalog), statement)
        if statement.kind == "stream":
            return StreamCompiler(diagnostics, catalog, statement).compile()
        if statement.window is not None:
            return WindowedTable(diagnostics, catalog, statement).compile()
        return RunningTable(diagnostics, catalog, statement).compile()
    except SqlError as error:
        diagnostics.fail(error)
        return None
