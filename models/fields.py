"""The base of every part of the pipeline file and the field types they share: topics,
field lists, names, durations and record formats. Pure structure: nothing here compiles
or imports code."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PlainValidator
from pydantic_core import PydanticCustomError

from models.durations import parse_duration_ms

TOPIC_PATTERN = r"^[A-Za-z0-9._\-]{1,249}$"
_FIELD_PATTERN = re.compile(r"^[^\s]+$")
_STEP_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,200}$")


def invalid(kind: str, message: str) -> PydanticCustomError:
    """A validation error of type `kind` whose reason is `message` as written."""
    # the message goes in as a context value: pydantic templates do not support !r
    return PydanticCustomError(kind, "{reason}", {"reason": message})


def _to_duration(value: Any) -> int:
    try:
        return parse_duration_ms(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", "{reason}", {"reason": str(exc)}) from None


DurationMs = Annotated[int, PlainValidator(_to_duration)]
Topic = Annotated[str, Field(pattern=TOPIC_PATTERN)]
# a topic's record format: JSON, or the Confluent wire format with a schema registry
Format = Literal["json", "avro", "protobuf", "json_schema"]
REGISTRY_FORMATS = ("avro", "protobuf", "json_schema")


def _to_step_name(value: Any) -> str:
    """A step's name labels its metrics and names its state (`<pipeline>.<name>`, and the
    changelog topic `<app_id>-<pipeline>.<name>-changelog`): letters, digits, `_` and `-`
    only, so no two pipelines' state can share a name; `__…` is the runtime's own."""
    if not isinstance(value, str) or not _STEP_NAME.match(value):
        raise invalid(
            "step_name",
            f"step name {value!r}: use letters, digits, '_' and '-' (it names the step's "
            "state and metrics)",
        )
    if value.startswith("__"):
        raise invalid("step_name", f"step name {value!r}: names starting with '__' are reserved")
    return value


StepName = Annotated[str, PlainValidator(_to_step_name)]
# A pipeline's name may hold '.', '-' and '_': its state is `<pipeline>.<step>` and step
# names hold no '.', so the last '.' of a store name always splits pipeline from step
# (streams.core.state.store_owner); '-' may join it to the app id because app ids hold none.
PipelineName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._\-]{1,200}$")]


def _to_table_name(value: Any) -> str:
    """A lookup table's rows are kept as `<pipeline>.tables.<name>`: no '.' in the name, so
    two pipelines' tables never share one."""
    if not isinstance(value, str) or not _STEP_NAME.match(value):
        raise invalid(
            "table_name",
            f"table name {value!r}: use letters, digits, '_' and '-' (it names the table's "
            "rows in the worker)",
        )
    return value


TableName = Annotated[str, PlainValidator(_to_table_name)]


def _field_list(value: Any) -> tuple[str, ...]:
    fields = [value] if isinstance(value, str) else value
    if not isinstance(fields, list | tuple) or not fields:
        raise PydanticCustomError("fields", "expected a field name or a list of field names")
    for name in fields:
        if not isinstance(name, str) or not _FIELD_PATTERN.match(name):
            raise invalid("fields", f"{name!r} is not a field name")
    return tuple(fields)


FieldList = Annotated[tuple[str, ...], PlainValidator(_field_list), PlainSerializer(list)]


class Spec(BaseModel):
    """A part of the pipeline file: unknown fields are errors, values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
