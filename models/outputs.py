"""Where a pipeline reads and writes: its source, lookup tables, sink (a topic or routes)
and dead-letter topic, with the record format of each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, PlainValidator, ValidationInfo, model_validator

from models.fields import FieldList, Format, Spec, Topic, invalid

if TYPE_CHECKING:  # compiled by the loader (streams.steps.spec_fields), see models.pipeline_spec
    from streams.expressions import Expression as Condition


class SourceSpec(Spec):
    topic: Topic
    key: FieldList | None = None
    timestamp: str | None = Field(None, description="field holding the event time")
    format: Format = "json"
    key_format: Format = "json"


class TableSpec(Spec):
    topic: Topic
    key: FieldList
    format: Format = "json"
    key_format: Format = "json"


def _output_schema(value: Any, info: ValidationInfo) -> str | None:
    """`schema: FILE.avsc` of an Avro output, relative to the pipeline file: made absolute,
    and checked to hold a JSON object at load time (`sluice check` names the line)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.endswith(".avsc"):
        raise invalid(
            "schema_file", f"expected the path of an Avro schema file (.avsc), got {value!r}"
        )
    path = Path(value)
    base = (info.context or {}).get("base")
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise invalid("schema_file", f"cannot read {str(path)!r}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise invalid("schema_file", f"{str(path)!r} is not JSON: {exc}") from None
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise invalid("schema_file", f"{str(path)!r}: expected an Avro record schema")
    return str(path.resolve())


SchemaFile = Annotated[str | None, PlainValidator(_output_schema)]


class _OutputFormat(Spec):
    """How an output topic's records are written: JSON, or Avro through the registry with
    a schema derived from the pipeline or given (`schema: FILE.avsc`)."""

    format: Format = "json"
    schema_file: SchemaFile = Field(None, alias="schema")

    @model_validator(mode="after")
    def _schema_needs_avro(self) -> _OutputFormat:
        if self.format in ("protobuf", "json_schema"):
            raise ValueError(
                f"outputs are written as 'json' or 'avro' (read-only format {self.format!r})"
            )
        if self.schema_file is not None and self.format != "avro":
            raise ValueError("'schema: FILE.avsc' is for 'format: avro'")
        return self


class RouteSpec(_OutputFormat):
    when: Condition | None = None
    to: Topic | None = None
    else_: Topic | None = Field(None, alias="else")

    @model_validator(mode="after")
    def _one_form(self) -> RouteSpec:
        if self.else_ is not None:
            if self.when is not None or self.to is not None:
                raise ValueError("a route is either {when: ..., to: topic} or {else: topic}")
        elif self.when is None or self.to is None:
            raise ValueError("a route needs both 'when' and 'to' (or is {else: topic})")
        return self

    @property
    def topic(self) -> str:
        return self.to or self.else_ or ""


class SinkSpec(_OutputFormat):
    topic: Topic | None = None
    route: list[RouteSpec] | None = None
    # keys written as text (json), or as Avro strings registered under `<topic>-key`
    key_format: Literal["json", "avro"] = "json"

    @model_validator(mode="after")
    def _one_form(self) -> SinkSpec:
        if (self.topic is None) == (self.route is None):
            raise ValueError("the sink needs either 'topic' or 'route' (not both)")
        if self.route is not None:
            if not self.route:
                raise ValueError("'route' needs at least one {when: ..., to: topic}")
            for position, rule in enumerate(self.route[:-1]):
                if rule.else_ is not None:
                    raise ValueError(f"route[{position}]: 'else' must be the last route")
        return self

    def topics(self) -> list[str]:
        if self.topic is not None:
            return [self.topic]
        return list(dict.fromkeys(rule.topic for rule in self.route or []))


class DeadLetterSpec(Spec):
    topic: Topic
