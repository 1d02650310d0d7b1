"""Record formats in a worker: decoding registry-encoded sources, encoding Avro outputs.

Readers are cached per schema id for the worker's life (an id's schema never changes), so
a registry that goes down while running costs nothing for ids already seen. A batch naming
an id not yet fetched waits for the registry — logged once, `/ready` false — and is then
processed: nothing is skipped. An id the registry does not know, a value without the wire
header or one that does not decode is a `schema` dead letter (streams.formats.codec).

At start the registry must answer within `kafka.connect_timeout` (else one line, exit 1);
each Avro output's schema (given, or derived from the pipeline and the source subject's
latest schema) is registered under `<topic>-value`, and a compatibility refusal is one line
naming the topic and the registry's reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from google.protobuf import json_format

from models.pipeline_spec import REGISTRY_FORMATS, PipelineSpec
from models.settings import Settings
from streams.core.errors import ConfigErrors, SluiceError
from streams.core.records import Event
from streams.formats.avro import AvroReader, AvroSchemaError, AvroWriter, inline_references
from streams.formats.codec import JsonSchemaReader, Reader, decode_batch, schema_ids
from streams.formats.derive import DeriveError, derive_alert_schema, derive_schema
from streams.formats.protobuf import ProtobufReader, ProtobufSchemaError
from streams.formats.wire import frame
from streams.runtime.schema_registry import (
    SCHEMA_TYPES,
    RegisteredSchema,
    RegistryClient,
    RegistryRefused,
    RegistryUnavailable,
    RegistryUntrusted,
)
from streams.runtime.source_columns import Locator, column_errors

log = logging.getLogger("sluice.formats")

RETRY_S = 1.0
Encoder = Callable[[Any], bytes]


class RegistryUnreachable(SluiceError):
    """The registry did not answer at start within kafka.connect_timeout."""


class SchemaMismatch(SluiceError):
    """An output schema the registry refuses (not compatible), or that cannot be made."""


def uses_registry(pipelines: dict[str, PipelineSpec]) -> bool:
    for spec in pipelines.values():
        formats: list[str] = [spec.source.format, spec.source.key_format]
        formats += [t.format for t in spec.tables.values()]
        formats += [f for f, _ in spec.output_formats().values()]
        if any(f != "json" for f in formats):
            return True
    return False


ANY_FORMAT = "any"  # `sluice consume --decode`: each schema's own type


def reader_for(
    schema: RegisteredSchema,
    format_name: str,
    references: Sequence[tuple[str, RegisteredSchema]] = (),
) -> Reader | str:
    """The reader of a registered schema, or why a topic of `format_name` cannot use it.
    `references`: the schemas it references, each after its own (RegistryClient.references)."""
    expected = SCHEMA_TYPES.get(format_name, schema.schema_type)
    if schema.schema_type != expected:
        return f"is a {schema.schema_type} schema, but the topic is read as {format_name}"
    for name, referenced in references:
        if referenced.schema_type != schema.schema_type:
            return f"references {name!r}, a {referenced.schema_type} schema"
    try:
        if expected == "AVRO":
            return AvroReader(schema.text, [r.text for _, r in references])
        if expected == "PROTOBUF":
            return ProtobufReader(
                schema.text, schema.schema_id, [(name, r.text) for name, r in references]
            )
        return JsonSchemaReader()
    except (AvroSchemaError, ProtobufSchemaError) as exc:
        return str(exc)


def load_schema_file(path: str, base: Path | None) -> dict[str, Any]:
    file = Path(path)
    if not file.is_absolute() and base is not None:
        file = base / file
    try:
        schema = orjson.loads(file.read_bytes())
    except OSError as exc:
        raise SchemaMismatch(f"{file}: cannot read the Avro schema ({exc.strerror})") from None
    except orjson.JSONDecodeError as exc:
        raise SchemaMismatch(f"{file}: not JSON ({exc})") from None
    if not isinstance(schema, dict):
        raise SchemaMismatch(f"{file}: an Avro schema for records is a JSON object")
    return schema


class RecordFormats:
    """The registry side of one worker (see the module docstring)."""

    def __init__(self, settings: Settings, schema_base: Path | None = None) -> None:
        self.settings = settings
        self.client = RegistryClient(settings.schema_registry)
        self.schema_base = schema_base
        self.readers: dict[tuple[int, str], Reader | str] = {}
        self.waiting: str | None = None  # the reason a batch waits for the registry
        self.encoders: dict[str, Encoder] = {}
        self.key_encoders: dict[str, Encoder] = {}
        # where a pipeline reads a column (file, line): set by the CLI from the loaded config
        self.locate: Locator | None = None

    @property
    def ready(self) -> bool:
        return self.waiting is None

    async def close(self) -> None:
        await self.client.close()

    # --- start ----------------------------------------------------------------------

    async def start(self, pipelines: dict[str, PipelineSpec]) -> None:
        """Wait for the registry (kafka.connect_timeout), then register every Avro output."""
        deadline = time.monotonic() + self.settings.kafka.connect_timeout / 1000
        while True:
            try:
                await self.client.incompatibilities("sluice-probe-never-registered", "{}")
                break
            except RegistryUnavailable as exc:
                if isinstance(exc, RegistryUntrusted) or time.monotonic() >= deadline:
                    raise RegistryUnreachable(
                        str(exc)
                        if isinstance(exc, RegistryUntrusted)  # waiting would not help
                        else f"{exc} within kafka.connect_timeout "
                        f"({self.settings.kafka.connect_timeout / 1000:g}s)"
                    ) from None
                await asyncio.sleep(RETRY_S)
        await self._check_columns(pipelines)
        for spec in pipelines.values():
            for topic, (format_name, schema_file) in spec.output_formats().items():
                if format_name == "avro" and topic not in self.encoders:
                    self.encoders[topic] = await self._writer(spec, topic, schema_file)
            if spec.sink.key_format == "avro":
                for topic in spec.sink.topics():
                    self.key_encoders[topic] = await self._key_writer(spec, topic)

    async def _check_columns(self, pipelines: dict[str, PipelineSpec]) -> None:
        """Sources without declared columns: the fields the steps read are in the latest
        schema of `<topic>-value` (streams.runtime.source_columns), else one line each."""
        try:
            errors, _ = await column_errors(self.client, pipelines, self.locate)
        except ConfigErrors as exc:
            errors = exc.errors
        if errors:
            raise SchemaMismatch("\n".join(e.describe() for e in errors))

    async def _key_writer(self, spec: PipelineSpec, topic: str) -> Encoder:
        """Keys (text) as Avro strings, the schema `"string"` under `<topic>-key`."""
        try:
            schema_id = await self.client.register(f"{topic}-key", '"string"')
        except RegistryRefused as exc:
            raise SchemaMismatch(
                f"pipeline {spec.pipeline}: the registry refuses an Avro string key for topic "
                f"{topic} (subject {topic}-key, HTTP {exc.status}): {exc}"
            ) from None
        return AvroWriter('"string"', schema_id).encode

    async def output_schema(
        self, spec: PipelineSpec, topic: str, schema_file: str | None
    ) -> dict[str, Any]:
        """The Avro schema of an output: the given file, or derived (streams.formats.derive)."""
        if schema_file is not None:
            return load_schema_file(schema_file, self.schema_base)
        source = None
        if spec.source.format == "avro":
            latest = await self.client.latest(f"{spec.source.topic}-value")
            if latest is not None and latest.schema_type == "AVRO":
                # named types from schema references written out: the derived schema
                # stands alone under the output's subject
                referenced = [found.text for _, found in await self.client.references(latest)]
                source = inline_references(orjson.loads(latest.text), referenced)
        try:
            if topic not in spec.sink.topics():
                return derive_alert_schema(spec, topic, source)
            return derive_schema(spec, topic, source)
        except DeriveError as exc:
            raise SchemaMismatch(f"pipeline {spec.pipeline}: {exc}") from None

    async def _writer(self, spec: PipelineSpec, topic: str, schema_file: str | None) -> Encoder:
        schema = await self.output_schema(spec, topic, schema_file)
        text = orjson.dumps(schema).decode()
        try:
            AvroWriter(schema, 0)  # a schema fastavro refuses: said before the registry
            schema_id = await self.client.register(f"{topic}-value", text)
        except AvroSchemaError as exc:
            raise SchemaMismatch(f"pipeline {spec.pipeline}, topic {topic}: {exc}") from None
        except RegistryRefused as exc:
            raise SchemaMismatch(
                f"pipeline {spec.pipeline}: the registry refuses the Avro schema for topic "
                f"{topic} (subject {topic}-value, HTTP {exc.status}): {exc}"
            ) from None
        log.info("topic %s: Avro schema id %d (subject %s-value)", topic, schema_id, topic)
        return AvroWriter(schema, schema_id).encode

    # --- decoding -------------------------------------------------------------------

    async def _fetch(self, ids: set[int], format_name: str) -> None:
        """Readers for `ids` not cached yet; waits (logged once, not ready) while the
        registry does not answer."""
        for schema_id in sorted(ids):
            if (schema_id, format_name) in self.readers:
                continue
            why = "not found in the schema registry"
            while True:
                try:
                    found = await self.client.schema(schema_id)
                    # referenced schemas: fetched now, so a registry down later costs nothing
                    references = await self.client.references(found) if found else []
                    break
                except RegistryUnavailable as exc:
                    if self.waiting is None:
                        log.warning(
                            "waiting for the schema registry (schema id %d): %s", schema_id, exc
                        )
                    self.waiting = str(exc)
                    await asyncio.sleep(RETRY_S)
                except RegistryRefused as exc:
                    found, why = None, str(exc).removeprefix(f"schema id {schema_id}: ")
                    log.warning("schema id %d: %s", schema_id, exc)
                    break
            if self.waiting is not None:
                log.info("the schema registry answers again")
                self.waiting = None
            self.readers[(schema_id, format_name)] = (
                reader_for(found, format_name, references) if found is not None else why
            )

    async def fetch_for(self, raws: Sequence[bytes], format_name: str) -> None:
        """Readers for every schema id `raws` name (before re-keying by their fields)."""
        await self._fetch(schema_ids(raws), format_name)

    async def decode_values(self, raws: Sequence[bytes], format_name: str) -> list[Any]:
        """Each raw value's plain record, or the RecordError (type `schema`) saying why not."""
        ids = schema_ids(raws)
        await self._fetch(ids, format_name)
        readers = {i: self.readers[(i, format_name)] for i in ids}
        return decode_batch(raws, readers, format_name)

    async def decode_keys(self, keys: Sequence[bytes | None], format_name: str) -> list[Any]:
        """Registry-encoded keys as text: a string key as it is, anything else as JSON;
        a key that does not decode stays as its raw text."""
        present = [k for k in keys if k is not None]
        decoded = iter(await self.decode_values(present, format_name)) if present else iter(())
        out: list[Any] = []
        for key in keys:
            if key is None:
                out.append(None)
                continue
            value = next(decoded)
            if isinstance(value, Exception):
                out.append(key.decode("utf-8", errors="backslashreplace"))
            else:
                out.append(value if isinstance(value, str) else orjson.dumps(value).decode())
        return out

    async def decode_source(
        self, spec: PipelineSpec, keys: Sequence[bytes | None], events: list[Event]
    ) -> None:
        """Set each event's value (and key, for a `key_format`) from its raw bytes."""
        source = spec.source
        if source.format in REGISTRY_FORMATS and events:
            values = await self.decode_values([e.raw for e in events], source.format)
            for event, value in zip(events, values, strict=True):
                event.value = value
        if source.key_format in REGISTRY_FORMATS and events:
            texts = await self.decode_keys(keys, source.key_format)
            for event, text in zip(events, texts, strict=True):
                event.key = text

    def peek(self, raw: bytes, format_name: str) -> Any:
        """The record in `raw` with a reader already cached, else None (re-keying)."""
        ids = schema_ids([raw])
        readers = {i: self.readers.get((i, format_name), "") for i in ids}
        value = decode_batch([raw], readers, format_name)[0]
        return value if value.__class__ is dict else None


async def line_encoder(
    settings: Settings, topic: str, format_name: str, schema_file: Path
) -> tuple[int, Encoder]:
    """`sluice produce --format F --schema FILE`: the schema registered under
    `<topic>-value` and an encoder of JSON records into the wire format with its id."""
    client = RegistryClient(settings.schema_registry)
    try:
        text = schema_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaMismatch(f"{schema_file}: cannot read the schema ({exc})") from None
    try:
        schema_id = await client.register(f"{topic}-value", text, SCHEMA_TYPES[format_name])
    except RegistryRefused as exc:
        raise SchemaMismatch(
            f"the registry refuses {schema_file} for subject {topic}-value "
            f"(HTTP {exc.status}): {exc}"
        ) from None
    finally:
        await client.close()
    if format_name == "avro":
        try:
            return schema_id, AvroWriter(text, schema_id).encode
        except AvroSchemaError as exc:
            raise SchemaMismatch(f"{schema_file}: {exc}") from None
    if format_name == "json_schema":
        return schema_id, lambda record: frame(schema_id, orjson.dumps(record))
    try:
        message_class = ProtobufReader(text, schema_id).message_class((0,))
    except ProtobufSchemaError as exc:
        raise SchemaMismatch(f"{schema_file}: {exc}") from None

    def encode_protobuf(record: Any) -> bytes:
        try:
            message = json_format.ParseDict(record, message_class())
        except json_format.ParseError as exc:
            raise ValueError(f"does not fit the Protobuf schema: {exc}") from None
        return frame(schema_id, b"\x00" + message.SerializeToString())

    return schema_id, encode_protobuf


async def registry_problems(settings: Settings, pipelines: dict[str, PipelineSpec]) -> list[str]:
    """`sluice check --registry`: one line per Avro output whose schema cannot be made or
    is not compatible with its subject; one line when the registry does not answer."""
    formats = RecordFormats(settings)
    problems: list[str] = []
    try:
        for spec in pipelines.values():
            for topic, (format_name, schema_file) in spec.output_formats().items():
                if format_name != "avro":
                    continue
                try:
                    schema = await formats.output_schema(spec, topic, schema_file)
                    AvroWriter(schema, 0)
                    why = await formats.client.incompatibilities(
                        f"{topic}-value", orjson.dumps(schema).decode()
                    )
                except RegistryUnavailable as exc:
                    return [str(exc)]
                except (SchemaMismatch, AvroSchemaError) as exc:
                    problems.append(f"pipeline {spec.pipeline}, topic {topic}: {exc}")
                    continue
                if why:
                    problems.append(
                        f"pipeline {spec.pipeline}: the Avro schema for topic {topic} is not "
                        f"compatible with subject {topic}-value: {why}"
                    )
    finally:
        await formats.close()
    return problems
