"""Decoding a batch of wire-format messages, given the readers of the schema ids it names.

`split_ids` says which schema ids a batch needs (the runtime fetches the missing ones
first); `decode_batch` then decodes the messages of each id together with one reader and
returns, per message, its plain record or a `RecordError` of type `schema` naming the id
and the reason — the pipeline dead-letters those at step `source` with the original bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import orjson

from streams.core.errors import RecordError
from streams.formats.wire import HEADER_SIZE, WireError, schema_id_of

SCHEMA_ERROR = "schema"


class Reader(Protocol):
    def decode_batch(self, raws: Sequence[bytes]) -> list[Any]: ...


class JsonSchemaReader:
    """JSON Schema values: JSON text after the header. Not validated against the schema
    (the producer's serializer did; ksqlDB's JSON_SR reads the same way)."""

    def decode_batch(self, raws: Sequence[bytes]) -> list[Any]:
        out: list[Any] = []
        loads = orjson.loads
        for raw in raws:
            try:
                out.append(loads(memoryview(raw)[HEADER_SIZE:]))
            except orjson.JSONDecodeError as exc:
                out.append(ValueError(f"invalid JSON: {exc}"))
        return out


def schema_ids(raws: Sequence[bytes]) -> set[int]:
    """The schema ids the wire-format messages among `raws` name."""
    ids = set()
    for raw in raws:
        if len(raw) >= HEADER_SIZE and raw[0] == 0:
            ids.add(int.from_bytes(raw[1:HEADER_SIZE], "big"))
    return ids


def decode_batch(
    raws: Sequence[bytes],
    readers: Mapping[int, Reader | str],
    format_name: str,
) -> list[Any]:
    """Per message: its plain record, or a RecordError (type `schema`). `readers` maps a
    schema id to its reader, or to the reason it has none (not in the registry, not a
    schema of this format)."""
    out: list[Any] = [None] * len(raws)
    by_id: dict[int, list[int]] = {}
    for position, raw in enumerate(raws):
        try:
            schema_id = schema_id_of(raw)
        except WireError as exc:
            out[position] = RecordError(str(exc), SCHEMA_ERROR)
            continue
        by_id.setdefault(schema_id, []).append(position)
    for schema_id, positions in by_id.items():
        reader = readers.get(schema_id, "not fetched from the registry")
        if isinstance(reader, str):
            error = RecordError(f"schema id {schema_id}: {reader}", SCHEMA_ERROR)
            for position in positions:
                out[position] = error
            continue
        values = reader.decode_batch([raws[p] for p in positions])
        for position, decoded in zip(positions, values, strict=True):
            value = decoded
            if isinstance(value, ValueError):
                value = RecordError(
                    f"schema id {schema_id}: the value does not decode as {format_name} "
                    f"({str(value)[:300]})",
                    SCHEMA_ERROR,
                )
            elif value.__class__ is not dict:
                value = RecordError(
                    f"schema id {schema_id}: decoded to a {type(value).__name__}, not a record",
                    SCHEMA_ERROR,
                )
            out[position] = value
    return out
