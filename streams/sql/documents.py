"""The pipeline document a derived statement compiles to (what a YAML file would hold and
`sluice explain` prints), and its validation into a `PipelineSpec` exactly as YAML's."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from streams.sql.catalog import Relation
from streams.sql.diagnostics import Diagnostics
from streams.sql.program import Compiled, CompiledPipeline
from streams.sql.properties import Properties
from streams.steps.spec_fields import PipelineSpec


def document(
    name: str,
    source: dict[str, Any],
    tables: dict[str, Any],
    steps: list[dict[str, Any]],
    sink: tuple[str, str],
) -> dict[str, Any]:
    """A pipeline document, in the order a YAML file holds its keys."""
    found: dict[str, Any] = {"pipeline": name, "source": source}
    if tables:
        found["tables"] = tables
    found["steps"] = steps
    found["sink"] = {"topic": sink[0]}
    found["dlq"] = {"topic": sink[1]}
    return found


def source_document(relation: Relation, key: tuple[str, ...] | None) -> dict[str, Any]:
    source: dict[str, Any] = {"topic": relation.topic}
    if key:
        source["key"] = list(key) if len(key) > 1 else key[0]
    if relation.timestamp is not None:
        source["timestamp"] = relation.timestamp
    if relation.format != "json":
        source["format"] = relation.format
    return source


def validate_steps(relation: Relation) -> list[dict[str, Any]]:
    """A declared stream's columns are the inline schema its readers validate."""
    if relation.kind != "source" or not relation.columns:
        return []
    return [{"validate": {"schema": {c.name: c.schema_type for c in relation.columns}}}]


def finish(
    diagnostics: Diagnostics,
    properties: Properties,
    document: dict[str, Any],
    output: Relation,
) -> Compiled:
    """Validate the document into a spec exactly as a YAML file's: the statement's
    pipeline and the stream or table it defines."""
    statement = properties.statement
    prop = statement.properties.get("VALUE_FORMAT")
    output.format = properties.value_format(prop, derived=True)
    if output.format != "json":
        document["sink"]["format"] = output.format
    try:
        context = {"tables": sorted(document.get("tables", {}))}
        spec = PipelineSpec.model_validate(document, context=context)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise diagnostics.error(f"{where}: {message}" if where else message) from None
    pipeline = CompiledPipeline(properties.label, statement, document, spec)
    return Compiled(output, pipeline)
