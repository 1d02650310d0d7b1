"""Avro values in the wire format: decoded with fastavro a batch at a time, encoded with a
schema registered under the topic's subject.

A reader is built once per schema id (fastavro's `parse_schema` costs ~100 µs; decoding a
200-byte record ~2 µs), and each record is decoded with its writer's schema: records of
every registered version of a subject are read as written (schema evolution needs no reader
schema: steps see the fields a record has).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import orjson
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from streams.formats.plain import (
    PLAIN_LOGICAL_TYPES,
    epoch_datetime,
    iso_utc,
    parse_iso_utc,
    plain,
)
from streams.formats.wire import HEADER_SIZE, frame

_CONVERTED_LOGICAL = PLAIN_LOGICAL_TYPES | {"decimal"}


class AvroSchemaError(ValueError):
    """Schema text that is not a valid Avro schema."""


def load_schema(text: str | dict[str, Any], references: Sequence[str] = ()) -> Any:
    """Parsed Avro schema (fastavro's form) from its JSON text or dict. `references`: the
    texts of the schemas it references (schema references), each after those it references;
    their named types go into the parsed schema's named types, where fastavro's reader
    looks them up."""
    named: dict[str, Any] = {}
    try:
        for referenced in references:
            parse_schema(orjson.loads(referenced), named)
        schema = orjson.loads(text) if isinstance(text, str) else text
        return parse_schema(schema, named)
    except Exception as exc:  # fastavro raises many kinds for a bad schema
        raise AvroSchemaError(f"not a valid Avro schema: {exc}") from None


def _has_converted_types(
    schema: Any, named: dict[str, Any] | None = None, seen: set[str] | None = None
) -> bool:
    """Whether decoded values may hold types plain JSON cannot (bytes, datetimes…).
    `named`: the named types (a referenced record is a name), `seen` the names visited."""
    if isinstance(schema, str):
        if named and schema in named:
            seen = seen if seen is not None else set()
            if schema in seen:  # a recursive type: its fields are being looked at
                return False
            seen.add(schema)
            return _has_converted_types(named[schema], named, seen)
        return schema in ("bytes", "fixed")
    if isinstance(schema, list):
        return any(_has_converted_types(part, named, seen) for part in schema)
    if isinstance(schema, dict):
        if schema.get("logicalType") in _CONVERTED_LOGICAL or schema.get("type") in (
            "bytes",
            "fixed",
        ):
            return True
        return any(
            _has_converted_types(part, named, seen)
            for key, part in schema.items()
            if key in ("type", "items", "values", "fields")
        ) or any(_has_converted_types(f.get("type"), named, seen) for f in schema.get("fields", ()))
    return False


_TIMESTAMP_UNITS = {"timestamp-millis": 1, "timestamp-micros": 1000}


def _timestamp_unit(field_type: Any) -> int | None:
    """Units per millisecond of a `timestamp-*` field (bare or `["null", …]`), else None."""
    if isinstance(field_type, list):
        found = [t for t in field_type if t != "null"]
        return _timestamp_unit(found[0]) if len(found) == 1 else None
    if isinstance(field_type, dict):
        return _TIMESTAMP_UNITS.get(str(field_type.get("logicalType")))
    return None


def _without_logical(field_type: Any) -> Any:
    if isinstance(field_type, list):
        return [_without_logical(t) for t in field_type]
    if isinstance(field_type, dict) and field_type.get("logicalType") in _TIMESTAMP_UNITS:
        return {k: v for k, v in field_type.items() if k != "logicalType"}
    return field_type


class _IsoTimes:
    """Epoch milliseconds as `2026-11-25T10:00:00.005Z`, the second's text cached."""

    def __init__(self) -> None:
        self.seconds: dict[int, str] = {}

    def __call__(self, millis: int) -> str:
        second, rest = divmod(millis, 1000)
        text = self.seconds.get(second)
        if text is None:
            if len(self.seconds) >= 4096:
                self.seconds.clear()
            text = self.seconds[second] = epoch_datetime(second * 1000).strftime(
                "%Y-%m-%dT%H:%M:%S"
            )
        return f"{text}.{rest:03d}Z"


class AvroReader:
    """Decodes wire-format messages of one writer schema.

    Measured (bench/formats.py, 200-byte payments with a timestamp-millis field): letting
    fastavro build a datetime per record and walking every record to turn it into text cost
    ~60% of the decode; so top-level `timestamp-*` fields are read as plain longs and turned
    into ISO text with the second's text cached, and only fields whose type needs it (bytes,
    decimals, nested logical types…) go through `plain`. A batch is read from one buffer."""

    def __init__(self, schema_text: str, references: Sequence[str] = ()) -> None:
        self.schema = load_schema(schema_text, references)
        named = self.schema.get("__named_schemas") if isinstance(self.schema, dict) else None
        self._times = _IsoTimes()
        self._timestamps: list[tuple[str, int]] = []
        self._other: list[str] = []
        reading = self.schema
        if isinstance(self.schema, dict) and self.schema.get("type") == "record":
            fields = []
            for field in self.schema["fields"]:
                unit = _timestamp_unit(field["type"])
                if unit is not None:
                    self._timestamps.append((field["name"], unit))
                    fields.append({**field, "type": _without_logical(field["type"])})
                    continue
                if _has_converted_types(field["type"], named):
                    self._other.append(field["name"])
                fields.append(field)
            reading = parse_schema({**self.schema, "fields": fields}, _write_hint=False)
            self._whole = False
        else:
            self._whole = _has_converted_types(self.schema, named)
        self._reading = reading

    def _finish(self, value: Any) -> Any:
        if self._whole:
            return plain(value)
        if value.__class__ is not dict:
            return value
        times = self._times
        for name, unit in self._timestamps:
            stamp = value.get(name)
            if stamp is not None:
                if unit == 1 or stamp % unit == 0:
                    value[name] = times(stamp // unit)
                else:  # microseconds below the millisecond: kept
                    value[name] = iso_utc(epoch_datetime(0) + dt.timedelta(microseconds=stamp))
        for name in self._other:
            value[name] = plain(value.get(name))
        return value

    def decode(self, raw: bytes) -> Any:
        """The plain record in `raw` (header included); raises ValueError when it does not
        decode with this schema."""
        return self._one(io.BytesIO(raw), HEADER_SIZE, len(raw))

    def _one(self, stream: io.BytesIO, start: int, end: int) -> Any:
        stream.seek(start)
        try:
            value = schemaless_reader(stream, self._reading, None)
        except Exception as exc:  # truncated or corrupt payloads raise EOFError, IndexError…
            raise ValueError(f"{type(exc).__name__}: {exc}") from None
        if stream.tell() != end:
            raise ValueError(
                f"{end - stream.tell()} bytes left over or missing after the record "
                "(another schema?)"
            )
        return self._finish(value)

    def decode_batch(self, raws: Sequence[bytes]) -> list[Any]:
        """Each message's record, or the ValueError that decoding it raised."""
        stream = io.BytesIO(b"".join(raws))
        one = self._one
        out: list[Any] = []
        position = 0
        for raw in raws:
            end = position + len(raw)
            try:
                out.append(one(stream, position + HEADER_SIZE, end))
            except ValueError as exc:
                out.append(exc)
            position = end
        return out


def _writer_value(value: Any, schema: Any) -> Any:
    """A plain record back in the types fastavro writes for `schema` (ISO text for
    timestamps, base64 text for bytes, text or floats for decimals)."""
    if value is None:
        return None
    if isinstance(schema, list):
        for branch in schema:
            if branch == "null":
                continue
            try:
                return _writer_value(value, branch)
            except (ValueError, TypeError):
                continue
        return value
    if isinstance(schema, str):
        if schema == "bytes" and isinstance(value, str):
            return base64.b64decode(value)
        return value
    kind = schema.get("type")
    logical = schema.get("logicalType")
    if logical in ("timestamp-millis", "timestamp-micros") and isinstance(value, str):
        return parse_iso_utc(value)
    if logical == "decimal" and isinstance(value, str | float | int):
        return Decimal(str(value))
    if kind in ("bytes", "fixed") and isinstance(value, str):
        return base64.b64decode(value)
    if kind == "record" and isinstance(value, dict):
        return {f["name"]: _writer_value(value.get(f["name"]), f["type"]) for f in schema["fields"]}
    if kind == "array" and isinstance(value, list):
        return [_writer_value(v, schema["items"]) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: _writer_value(v, schema["values"]) for k, v in value.items()}
    return value


class AvroWriter:
    """Encodes plain records with one registered schema (its id in the header)."""

    def __init__(self, schema: str | dict[str, Any], schema_id: int) -> None:
        self.schema = load_schema(schema)
        self.schema_id = schema_id
        convert = _has_converted_types(self.schema)
        self._prepare: Callable[[Any], Any] | None = (
            (lambda value: _writer_value(value, self.schema)) if convert else None
        )

    def encode(self, value: Any) -> bytes:
        """Wire-format bytes; ValueError naming the field when the record does not fit."""
        stream = io.BytesIO()
        if self._prepare is not None:
            value = self._prepare(value)
        try:
            schemaless_writer(stream, self.schema, value)
        except Exception as exc:  # fastavro: ValueError, TypeError, AttributeError…
            raise ValueError(f"does not fit the Avro schema: {exc}") from None
        return frame(self.schema_id, stream.getvalue())


_NAMED_KINDS = ("record", "enum", "fixed")


def _full_name(node: dict[str, Any], namespace: str) -> tuple[str, str]:
    """A named type's full name and the namespace its own fields resolve names in."""
    name = str(node.get("name", ""))
    if "." in name:
        return name, name.rpartition(".")[0]
    space = str(node.get("namespace", namespace) or "")
    return (f"{space}.{name}" if space else name), space


def _collect_named(node: Any, namespace: str, named: dict[str, dict[str, Any]]) -> None:
    if isinstance(node, list):
        for part in node:
            _collect_named(part, namespace, named)
    elif isinstance(node, dict):
        kind = node.get("type")
        if kind in _NAMED_KINDS:
            full, space = _full_name(node, namespace)
            named.setdefault(full, node)
            for field in node.get("fields", ()):
                _collect_named(field.get("type"), space, named)
        else:
            for key in ("type", "items", "values"):
                if key in node:
                    _collect_named(node[key], namespace, named)


def inline_references(schema: Any, references: Sequence[str]) -> Any:
    """`schema` with each named type it takes from `references` (their texts) written out
    where it is first used — later uses keep the name, as Avro requires — so the schema
    stands alone: what a schema derived from it (streams.formats.derive) needs."""
    named: dict[str, dict[str, Any]] = {}
    for text in references:
        _collect_named(orjson.loads(text), "", named)
    defined: set[str] = set()

    def walk(node: Any, namespace: str) -> Any:
        if isinstance(node, str):
            full = node if "." in node or not namespace else f"{namespace}.{node}"
            found = named.get(full) or named.get(node)
            if found is None or full in defined or node in defined:
                return node
            space, _, short = _full_name(found, "")[0].rpartition(".")
            return walk({**found, "name": short, "namespace": space}, space)
        if isinstance(node, list):
            return [walk(part, namespace) for part in node]
        if not isinstance(node, dict):
            return node
        kind = node.get("type")
        if kind in _NAMED_KINDS:
            full, space = _full_name(node, namespace)
            defined.add(full)
            if kind == "record":
                fields = [{**f, "type": walk(f.get("type"), space)} for f in node["fields"]]
                return {**node, "fields": fields}
            return node
        changed = {
            key: walk(node[key], namespace) for key in ("type", "items", "values") if key in node
        }
        return {**node, **changed}

    return walk(schema, "")
