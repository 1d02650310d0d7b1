"""The Avro schema of a pipeline's results, derived from the pipeline when no
`schema: FILE.avsc` is given.

The fields are those of the records reaching the topic: the source schema's (the latest
registered version of the source's subject, logical types as steps see them: timestamps,
dates, bytes and UUIDs as strings), then each step's change — an inline `validate` schema
types its fields, a `map` keeps the names of its select list (a bare field keeps that
field's type), a `window` gives its key fields, `window_start`/`window_end` (strings) and
an aggregate per name (`count` → long, `avg`/`percentile` → double, `sum`/`min`/`max`/…
the argument's type). Every field is optional (`["null", T]`, default null) so records
missing it still encode and later versions stay BACKWARD compatible. An expression whose
type is not known gets the union of the JSON scalar types. Steps whose output cannot be
known (`enrich` adds table fields, `component`) make the derivation fail with a message
asking for `schema:`.
"""

from __future__ import annotations

import re
from typing import Any

from models.pipeline_spec import (
    AlertStepSpec,
    DedupeStepSpec,
    FilterStepSpec,
    MapStepSpec,
    PipelineSpec,
    RateLimitStepSpec,
    ValidateStepSpec,
    WindowStepSpec,
)
from streams.expressions import Expression
from streams.formats.plain import PLAIN_LOGICAL_TYPES

ANY_SCALAR: list[Any] = ["null", "boolean", "long", "double", "string"]
_INLINE = {
    "str": "string",
    "int": "long",
    "float": "double",
    "bool": "boolean",
    "datetime": "string",
}
_NAME = re.compile(r"[^A-Za-z0-9_]")

Fields = dict[str, Any]  # field name -> Avro type (without the null branch)


class DeriveError(ValueError):
    """No schema can be derived; the message says why and what to give instead."""


def _as_seen(avro_type: Any) -> Any:
    """An Avro type as decoded records hold it (see streams.formats.plain)."""
    if isinstance(avro_type, list):
        return [_as_seen(t) for t in avro_type]
    if isinstance(avro_type, str):
        return "string" if avro_type in ("bytes", "fixed") else avro_type
    if isinstance(avro_type, dict):
        if avro_type.get("logicalType") in PLAIN_LOGICAL_TYPES:
            return "string"
        kind = avro_type.get("type")
        if kind in ("bytes", "fixed") and avro_type.get("logicalType") != "decimal":
            return "string"
        if kind == "record":
            return {
                **avro_type,
                "fields": [{**f, "type": _as_seen(f["type"])} for f in avro_type["fields"]],
            }
        if kind == "array":
            return {**avro_type, "items": _as_seen(avro_type["items"])}
        if kind == "map":
            return {**avro_type, "values": _as_seen(avro_type["values"])}
    return avro_type


def _without_null(avro_type: Any) -> Any:
    if isinstance(avro_type, list):
        rest = [t for t in avro_type if t != "null"]
        return rest[0] if len(rest) == 1 else rest
    return avro_type


def source_fields(schema: dict[str, Any] | None) -> Fields | None:
    if schema is None or schema.get("type") != "record":
        return None
    return {f["name"]: _without_null(_as_seen(f["type"])) for f in schema["fields"]}


def _expression_type(expression: Expression, fields: Fields | None) -> Any:
    if expression.field is not None and fields is not None and expression.field in fields:
        return fields[expression.field]
    return ANY_SCALAR


def _aggregate_type(function: str, argument: Any, fields: Fields | None) -> Any:
    if function in ("count", "count_distinct"):
        return "long"
    if function in ("avg", "percentile"):
        return "double"
    if argument is not None:
        found = _expression_type(argument, fields)
        if found in ("long", "int") and function == "sum":
            return "long"
        return found
    return ANY_SCALAR


def result_fields(spec: PipelineSpec, source: dict[str, Any] | None) -> Fields:
    """The fields of the records the pipeline writes to its sink (see the module)."""
    fields = source_fields(source)
    for name, step in spec.named_steps():
        if isinstance(step, ValidateStepSpec) and step.validate_.schema_ is not None:
            typed = {
                field: _INLINE.get(kind.removesuffix("?"), ANY_SCALAR)
                for field, kind in step.validate_.schema_.items()
                if kind.removesuffix("?") in _INLINE
            }
            fields = {**(fields or {}), **typed}
        elif isinstance(step, MapStepSpec):
            fields = {out: _expression_type(e, fields) for out, e in step.map.items()}
        elif isinstance(step, WindowStepSpec):
            window = step.window
            keys = {k: (fields or {}).get(k, ANY_SCALAR) for k in window.key or ()}
            fields = {
                **keys,
                "window_start": "string",
                "window_end": "string",
                **{
                    out: _aggregate_type(call.function, call.argument, fields)
                    for out, call in window.aggregates.items()
                },
            }
        elif isinstance(step, FilterStepSpec | DedupeStepSpec | RateLimitStepSpec | AlertStepSpec):
            continue
        else:
            raise DeriveError(
                f"step {name!r} ({step.kind}) makes fields sluice cannot know in advance"
            )
    if fields is None:
        raise DeriveError(
            "the fields are not known (the source is not an Avro topic with a registered "
            "schema, and no map or window names them)"
        )
    return fields


def derive_schema(spec: PipelineSpec, topic: str, source: dict[str, Any] | None) -> dict[str, Any]:
    """The Avro record schema for `topic`'s values (see the module docstring); DeriveError
    naming the topic and asking for `schema: FILE.avsc` when it cannot be derived."""
    try:
        fields = result_fields(spec, source)
    except DeriveError as exc:
        raise DeriveError(
            f"cannot derive an Avro schema for topic {topic!r}: {exc}; give one with "
            "'schema: FILE.avsc'"
        ) from None
    return {
        "type": "record",
        "name": _NAME.sub("_", f"{spec.pipeline}_{topic}"),
        "namespace": "sluice",
        "fields": [
            {"name": name, "type": _nullable(kind), "default": None}
            for name, kind in fields.items()
        ],
    }


def derive_alert_schema(
    spec: PipelineSpec, topic: str, source: dict[str, Any] | None
) -> dict[str, Any]:
    """The Avro schema of an alert topic: `alert`, `status`, `severity`, the alert's key
    fields, `since`/`until` (ISO text) and `value`, the record as the alert step saw it (a
    nested record of the fields derived up to that step)."""
    position = next(
        n
        for n, step in enumerate(spec.steps)
        if isinstance(step, AlertStepSpec) and spec.alert_topic(step.alert) == topic
    )
    alert = spec.steps[position]
    assert isinstance(alert, AlertStepSpec)
    before = spec.model_copy(update={"steps": spec.steps[:position]})
    try:
        fields = result_fields(before, source)
    except DeriveError as exc:
        raise DeriveError(
            f"cannot derive an Avro schema for alert topic {topic!r}: {exc}"
        ) from None
    name = _NAME.sub("_", f"{spec.pipeline}_{topic}")
    columns: Fields = {"alert": "string", "status": "string", "severity": "string"}
    columns |= {k: fields.get(k, ANY_SCALAR) for k in alert.alert.key or ()}
    columns |= {"since": "string", "until": "string"}
    value = {
        "type": "record",
        "name": f"{name}_value",
        "fields": [{"name": k, "type": _nullable(t), "default": None} for k, t in fields.items()],
    }
    return {
        "type": "record",
        "name": name,
        "namespace": "sluice",
        "fields": [
            *({"name": k, "type": _nullable(t), "default": None} for k, t in columns.items()),
            {"name": "value", "type": ["null", value], "default": None},
        ],
    }


def _nullable(kind: Any) -> Any:
    if isinstance(kind, list):
        return ["null", *[k for k in kind if k != "null"]]
    return ["null", kind]
