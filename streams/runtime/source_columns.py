"""Columns from the schema registry for sources declared without them.

`sluice check --registry` and the worker at start fetch the latest schema under
`<topic>-value` of every registry-format source that declares no columns (no validate
schema, no SQL column list) and check each field the pipeline reads against it
(streams.formats.columns): an unknown field is a ConfigError naming the file and line, the
field, the subject/version and the schema's fields. A subject with no version yet (no
producer has written) cannot be checked: the pipeline is left out, as without `--registry`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

from models.pipeline_spec import REGISTRY_FORMATS, PipelineSpec
from streams.config.yaml_lines import YamlDocument
from streams.core.errors import ConfigError, ConfigErrors
from streams.formats.columns import (
    ColumnUse,
    SchemaFieldsError,
    SourceSchema,
    declares_columns,
    schema_fields,
    unknown_columns,
)
from streams.runtime.schema_registry import RegistryClient
from streams.sql.catalog import did_you_mean

# (pipeline, column use) -> (file, line) of the text that reads it
Locator = Callable[[PipelineSpec, ColumnUse], tuple[str | None, int | None]]


def needs_columns(spec: PipelineSpec) -> bool:
    return spec.source.format in REGISTRY_FORMATS and not declares_columns(spec)


async def source_schema(client: RegistryClient, topic: str) -> SourceSchema | None:
    """The latest schema under `<topic>-value` and its fields; None without a version."""
    subject = f"{topic}-value"
    latest = await client.latest(subject)
    if latest is None:
        return None
    references = [(name, found.text) for name, found in await client.references(latest)]
    try:
        fields = schema_fields(latest.schema_type, latest.text, latest.schema_id, references)
    except SchemaFieldsError as exc:
        raise ConfigErrors(
            [ConfigError(f"source topic {topic}: subject {subject}: {exc}")]
        ) from None
    return SourceSchema(subject, latest.version, latest.schema_id, fields)


async def column_errors(
    client: RegistryClient,
    pipelines: Mapping[str, PipelineSpec],
    locate: Locator | None = None,
) -> tuple[list[ConfigError], set[str]]:
    """Every unknown field of every pipeline whose source takes its columns from the
    registry, and the names of the pipelines that could be checked. RegistryUnavailable
    propagates (the caller words a registry that does not answer)."""
    schemas: dict[str, SourceSchema | None] = {}
    errors: list[ConfigError] = []
    checked: set[str] = set()
    for name, spec in pipelines.items():
        if not needs_columns(spec):
            continue
        topic = spec.source.topic
        if topic not in schemas:
            schemas[topic] = await source_schema(client, topic)
        schema = schemas[topic]
        if schema is None:
            continue
        checked.add(name)
        for use in unknown_columns(spec, schema.fields):
            file, line = locate(spec, use) if locate is not None else (None, None)
            errors.append(
                ConfigError(
                    f"pipeline {spec.pipeline}: unknown column {use.name!r} of source topic "
                    f"{topic}{did_you_mean(use.name, schema.fields)}: the latest schema, "
                    f"{schema.describe()}, has {', '.join(schema.fields) or 'no fields'}",
                    file=file,
                    line=line,
                    field=use.where,
                )
            )
    return errors, checked


def locator(files: Mapping[str, Path], documents: Mapping[str, YamlDocument]) -> Locator:
    """Lines from the loaded config: a YAML pipeline's document, or for a .sql file the
    first mention of the column in the pipeline's statement (else anywhere in the file)."""
    programs: dict[Path, object] = {}

    def locate(spec: PipelineSpec, use: ColumnUse) -> tuple[str | None, int | None]:
        file = files.get(spec.pipeline)
        document = documents.get(spec.pipeline)
        if document is not None:
            return document.file, document.line_of(use.path)
        if file is None:
            return None, None
        if file.suffix.lower() != ".sql":
            return str(file), None
        return str(file), _sql_line(file, spec.pipeline, use.name, programs)

    return locate


def _sql_line(file: Path, pipeline: str, column: str, programs: dict[Path, object]) -> int | None:
    from streams.sql.compiler import SqlProgram, compile_sql

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    program = programs.get(file)
    if not isinstance(program, SqlProgram):
        program = programs[file] = compile_sql(text, str(file))
    offsets = sorted(p.statement.offset for p in program.pipelines)
    start, end = 0, len(text)
    for compiled in program.pipelines:
        if compiled.spec.pipeline == pipeline:
            start = compiled.statement.offset
            end = next((o for o in offsets if o > start), len(text))
            break
    word = re.compile(rf"(?<![\w.]){re.escape(column)}(?!\w)", re.IGNORECASE)
    found = word.search(text, start, end) or word.search(text)
    return text.count("\n", 0, found.start() if found else start) + 1


async def registry_column_problems(
    client: RegistryClient,
    pipelines: Mapping[str, PipelineSpec],
    locate: Locator | None = None,
) -> tuple[list[str], set[str]]:
    """`sluice check --registry`: one line per unknown column, and the pipelines whose
    columns came from the registry. RegistryUnavailable propagates."""
    try:
        errors, checked = await column_errors(client, pipelines, locate)
    except ConfigErrors as exc:
        return [e.describe() for e in exc.errors], set()
    return [e.describe() for e in errors], checked
