"""Avro values in the wire format: decoded with fastavro a batch at a time, encoded with a
schema registered under the topic's subject.

A reader is built once per schema id (fastavro's `parse_schema` costs ~100 µs; decoding a
200-byte record ~2 µs), and each record is decoded with its writer's schema: records of
every registered version of a subject are read as written (schema evolution needs no reader
schema: steps see the fields a record has).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import orjson
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from streams.formats.plain import parse_iso_utc, plain
from streams.formats.wire import HEADER_SIZE, frame

_CONVERTED_LOGICAL = {
    "timestamp-millis",
    "timestamp-micros",
    "local-timestamp-millis",
    "local-timestamp-micros",
    "date",
    "time-millis",
    "time-micros",
    "decimal",
    "uuid",
}


class AvroSchemaError(ValueError):
    """Schema text that is not a valid Avro schema."""


def load_schema(text: str | dict[str, Any]) -> Any:
    """Parsed Avro schema (fastavro's form) from its JSON text or dict."""
    try:
        schema = orjson.loads(text) if isinstance(text, str) else text
        return parse_schema(schema)
    except Exception as exc:  # fastavro raises many kinds for a bad schema
        raise AvroSchemaError(f"not a valid Avro schema: {exc}") from None


def _has_converted_types(schema: Any) -> bool:
    """Whether decoded values may hold types plain JSON cannot (bytes, datetimes…)."""
    if isinstance(schema, str):
        return schema in ("bytes", "fixed")
    if isinstance(schema, list):
        return any(map(_has_converted_types, schema))
    if isinstance(schema, dict):
        if schema.get("logicalType") in _CONVERTED_LOGICAL or schema.get("type") in (
            "bytes",
            "fixed",
        ):
            return True
        return any(
            _has_converted_types(part)
            for key, part in schema.items()
            if key in ("type", "items", "values", "fields")
        ) or any(_has_converted_types(f.get("type")) for f in schema.get("fields", ()))
    return False


class AvroReader:
    """Decodes wire-format messages of one writer schema."""

    def __init__(self, schema_text: str) -> None:
        self.schema = load_schema(schema_text)
        self._convert = _has_converted_types(self.schema)

    def decode(self, raw: bytes) -> Any:
        """The plain record in `raw` (header included); raises ValueError when it does not
        decode with this schema."""
        stream = io.BytesIO(raw)
        stream.seek(HEADER_SIZE)
        try:
            value = schemaless_reader(stream, self.schema, None)
        except Exception as exc:  # truncated or corrupt payloads raise EOFError, IndexError…
            raise ValueError(f"{type(exc).__name__}: {exc}") from None
        if stream.tell() != len(raw):
            raise ValueError(
                f"{len(raw) - stream.tell()} bytes left over after the record (another schema?)"
            )
        return plain(value) if self._convert else value

    def decode_batch(self, raws: Sequence[bytes]) -> list[Any]:
        """Each message's record, or the ValueError that decoding it raised."""
        decode = self.decode
        out: list[Any] = []
        for raw in raws:
            try:
                out.append(decode(raw))
            except ValueError as exc:
                out.append(exc)
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
