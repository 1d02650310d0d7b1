"""The columns of a registry-format source and the fields a pipeline reads from it.

A source read as Avro, Protobuf or JSON Schema without declared columns (no `validate`
schema, no SQL column list) takes its fields from the schema registry, as ksqlDB's
`CREATE STREAM … WITH (VALUE_FORMAT='AVRO')` does. `sluice check --registry` and the worker
at start fetch the latest schema under `<topic>-value` (TopicNameStrategy) and hand its
field names here; this module says which field the pipeline reads that the schema lacks.
Pure: no network (the runtime layer fetches, streams.runtime.formats).

What is "read from the source": `source.key`, `source.timestamp`, then every step's
expressions and key fields up to the first step that changes the record's shape — a `map`
gives its select list's names (checked no further against the schema), an `enrich` adds its
`fields` (or anything, without a list), a window, aggregate, join or component ends the check
(their results are not the source's records); without such a step, the sink's route
conditions too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from models import pipeline_spec as spec
from streams.expressions.expression import Expression

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class ColumnUse:
    """One field the pipeline reads: its name and the config path that reads it."""

    name: str
    path: Path

    @property
    def where(self) -> str:
        dotted = ""
        for part in self.path:
            dotted += f"[{part}]" if isinstance(part, int) else f".{part}" if dotted else part
        return dotted


@dataclass(frozen=True, slots=True)
class SourceSchema:
    """The latest schema of a source topic's subject: where it is, and its fields."""

    subject: str
    version: int | None
    schema_id: int
    fields: tuple[str, ...]

    def describe(self) -> str:
        version = f" version {self.version}" if self.version is not None else ""
        return f"subject {self.subject}{version} (schema id {self.schema_id})"


class SchemaFieldsError(ValueError):
    """A registered schema whose top-level fields cannot be listed."""


def schema_fields(
    schema_type: str,
    text: str,
    schema_id: int = 0,
    references: Sequence[tuple[str, str]] = (),
) -> tuple[str, ...]:
    """The top-level field names of a registered schema: an Avro record's fields, a JSON
    Schema's `properties`, a Protobuf schema's first message's fields. `references`: (name,
    text) of the schemas it references (a `.proto` file's imports need them)."""
    if schema_type == "PROTOBUF":
        from streams.formats.protobuf import ProtobufReader, ProtobufSchemaError

        try:
            message = ProtobufReader(text, schema_id, references).message_class((0,))
        except ProtobufSchemaError as exc:
            raise SchemaFieldsError(str(exc)) from None
        return tuple(f.name for f in message.DESCRIPTOR.fields)
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise SchemaFieldsError(f"the schema is not JSON ({exc})") from None
    if schema_type == "JSON":
        properties = parsed.get("properties") if isinstance(parsed, dict) else None
        if not isinstance(properties, dict):
            raise SchemaFieldsError("the JSON Schema has no top-level 'properties'")
        return tuple(properties)
    if not isinstance(parsed, dict) or parsed.get("type") != "record":
        raise SchemaFieldsError("the Avro schema is not a record")
    return tuple(str(f["name"]) for f in parsed.get("fields", []) if isinstance(f, dict))


def declares_columns(pipeline: spec.PipelineSpec) -> bool:
    """Its source's columns are declared (a validate step: YAML, or a SQL column list)."""
    return any(isinstance(step, spec.ValidateStepSpec) for step in pipeline.steps)


def _fields(expression: Expression | None, path: Path) -> Iterator[ColumnUse]:
    if expression is not None:
        for name in sorted(expression.fields):
            yield ColumnUse(name, path)


def _names(names: Sequence[str] | None, path: Path) -> Iterator[ColumnUse]:
    for name in names or ():
        yield ColumnUse(name, path)


def _aggregate_fields(aggregates: dict[str, Any], path: Path) -> Iterator[ColumnUse]:
    for name, call in aggregates.items():
        yield from _fields(call.argument, (*path, name))


def source_reads(
    pipeline: spec.PipelineSpec, fields: Sequence[str]
) -> list[tuple[ColumnUse, tuple[str, ...]]]:
    """Each field the pipeline reads, with the names available at that point (the
    schema's fields, or what an earlier map/enrich made of them)."""
    known: tuple[str, ...] | None = tuple(fields)
    reads: list[tuple[ColumnUse, tuple[str, ...]]] = []

    def read(uses: Iterator[ColumnUse]) -> None:
        assert known is not None
        reads.extend((use, known) for use in uses)

    source = pipeline.source
    read(_names(source.key, ("source", "key")))
    read(_names([source.timestamp] if source.timestamp else [], ("source", "timestamp")))
    for index, step in enumerate(pipeline.steps):
        at: Path = ("steps", index)
        if isinstance(step, spec.FilterStepSpec):
            read(_fields(step.filter, (*at, "filter")))
        elif isinstance(step, spec.MapStepSpec):
            for name, expression in step.map.items():
                read(_fields(expression, (*at, "map", name)))
            known = tuple(step.map)
        elif isinstance(step, spec.DedupeStepSpec):
            read(_names(step.dedupe.key, (*at, "dedupe", "key")))
        elif isinstance(step, spec.RateLimitStepSpec):
            read(_names(step.ratelimit.key, (*at, "ratelimit", "key")))
        elif isinstance(step, spec.AlertStepSpec):
            read(_fields(step.alert.when, (*at, "alert", "when")))
            read(_names(step.alert.key, (*at, "alert", "key")))
        elif isinstance(step, spec.EnrichStepSpec):
            read(_names(step.enrich.on, (*at, "enrich", "on")))
            if step.enrich.fields is None:
                break  # the table's columns join in: unknown here
            known = (*(known or ()), *step.enrich.fields)
        elif isinstance(step, spec.WindowStepSpec):
            read(_names(step.window.key, (*at, "window", "key")))
            read(_aggregate_fields(step.window.aggregates, (*at, "window", "aggregates")))
            break
        elif isinstance(step, spec.AggregateStepSpec):
            read(_names(step.aggregate.key, (*at, "aggregate", "key")))
            read(_aggregate_fields(step.aggregate.aggregates, (*at, "aggregate", "aggregates")))
            break
        elif isinstance(step, spec.JoinStepSpec):
            read(_names(step.join.key, (*at, "join", "key")))
            break
        else:  # component, validate: the record may become anything
            break
    else:  # the record reaching the sink still has known fields: its routes' conditions
        for index, route in enumerate(pipeline.sink.route or ()):
            read(_fields(route.when, ("sink", "route", index, "when")))
    return reads


def unknown_columns(pipeline: spec.PipelineSpec, fields: Sequence[str]) -> list[ColumnUse]:
    """The fields the pipeline reads that are not there (empty for declared columns)."""
    if declares_columns(pipeline):
        return []
    seen: set[tuple[str, Path]] = set()
    unknown = []
    for use, known in source_reads(pipeline, fields):
        if use.name not in known and (use.name, use.path) not in seen:
            seen.add((use.name, use.path))
            unknown.append(use)
    return unknown
