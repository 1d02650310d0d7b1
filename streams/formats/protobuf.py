"""Protobuf values in the wire format, decoded with message classes built at run time from
the `.proto` text the registry holds.

A registered schema is either `.proto` text or a base64 FileDescriptorProto (what
confluent-kafka's ProtobufSerializer registers; Apicurio keeps it as sent, and its
`?format=serialized` answer is lossy text). `.proto` text is parsed here
(proto-schema-parser) into a FileDescriptorProto; protobuf builds the classes.
Well-known imports (`google/protobuf/*.proto`) come from protobuf itself; other imports are
schema references, whose `.proto` texts the caller fetched (dependencies first) and which
go into the same pool under their import names. After the 5-byte header comes the
message-index list (zig-zag varints; a single 0 means the file's first message).
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Sequence
from typing import Any

from google.protobuf import (  # the well-known types, loaded into the default pool
    any_pb2,  # noqa: F401
    descriptor_pb2,
    descriptor_pool,
    duration_pb2,  # noqa: F401
    empty_pb2,  # noqa: F401
    message_factory,
    struct_pb2,  # noqa: F401
    timestamp_pb2,  # noqa: F401
    wrappers_pb2,  # noqa: F401
)
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from proto_schema_parser import ast
from proto_schema_parser.parser import Parser

from streams.formats.plain import iso_utc
from streams.formats.wire import HEADER_SIZE

_FDP = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "double": _FDP.TYPE_DOUBLE,
    "float": _FDP.TYPE_FLOAT,
    "int64": _FDP.TYPE_INT64,
    "uint64": _FDP.TYPE_UINT64,
    "int32": _FDP.TYPE_INT32,
    "fixed64": _FDP.TYPE_FIXED64,
    "fixed32": _FDP.TYPE_FIXED32,
    "bool": _FDP.TYPE_BOOL,
    "string": _FDP.TYPE_STRING,
    "bytes": _FDP.TYPE_BYTES,
    "uint32": _FDP.TYPE_UINT32,
    "sfixed32": _FDP.TYPE_SFIXED32,
    "sfixed64": _FDP.TYPE_SFIXED64,
    "sint32": _FDP.TYPE_SINT32,
    "sint64": _FDP.TYPE_SINT64,
}
_LABELS = {
    ast.FieldCardinality.REPEATED: _FDP.LABEL_REPEATED,
    ast.FieldCardinality.OPTIONAL: _FDP.LABEL_OPTIONAL,
    ast.FieldCardinality.REQUIRED: _FDP.LABEL_REQUIRED,
}


class ProtobufSchemaError(ValueError):
    """`.proto` text that cannot be turned into message classes."""


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _set_type(field: Any, type_name: str) -> None:
    if type_name in _SCALARS:
        field.type = _SCALARS[type_name]
    else:  # a message or enum: resolved by the pool, relative to the field's scope
        field.type_name = type_name


def _add_enum(target: Any, enum: ast.Enum) -> None:
    proto = target.add(name=enum.name)
    for element in enum.elements:
        if isinstance(element, ast.EnumValue):
            proto.value.add(name=element.name, number=element.number)


def _add_field(message: Any, field: ast.Field, syntax: str, oneof: int | None = None) -> None:
    proto = message.field.add(name=field.name, number=field.number)
    proto.label = _LABELS.get(field.cardinality, _FDP.LABEL_OPTIONAL)  # type: ignore[arg-type]
    if field.cardinality is ast.FieldCardinality.OPTIONAL and syntax == "proto3":
        proto.proto3_optional = True
    _set_type(proto, field.type)
    if oneof is not None:
        proto.oneof_index = oneof


def _add_message(target: Any, message: ast.Message, syntax: str) -> None:
    proto = target.add(name=message.name)
    for element in message.elements:
        if isinstance(element, ast.Field):
            _add_field(proto, element, syntax)
        elif isinstance(element, ast.MapField):
            entry = proto.nested_type.add(name=_camel(element.name) + "Entry")
            entry.options.map_entry = True
            key = entry.field.add(name="key", number=1, label=_FDP.LABEL_OPTIONAL)
            _set_type(key, element.key_type)
            value = entry.field.add(name="value", number=2, label=_FDP.LABEL_OPTIONAL)
            _set_type(value, element.value_type)
            field = proto.field.add(name=element.name, number=element.number)
            field.label = _FDP.LABEL_REPEATED
            field.type_name = entry.name
        elif isinstance(element, ast.OneOf):
            index = len(proto.oneof_decl)
            proto.oneof_decl.add(name=element.name)
            for part in element.elements:
                if isinstance(part, ast.Field):
                    _add_field(proto, part, syntax, index)
        elif isinstance(element, ast.Message):
            _add_message(proto.nested_type, element, syntax)
        elif isinstance(element, ast.Enum):
            _add_enum(proto.enum_type, element)
    # proto3 `optional` fields each live in a synthetic oneof, declared after the real ones
    for field_proto in proto.field:
        if field_proto.proto3_optional:
            field_proto.oneof_index = len(proto.oneof_decl)
            proto.oneof_decl.add(name="_" + field_proto.name)


def file_descriptor(
    text: str, name: str, imports: Collection[str] = ()
) -> descriptor_pb2.FileDescriptorProto:
    """The FileDescriptorProto of `.proto` text; `imports`: the import names it may use
    besides the well-known `google/protobuf/*.proto` (its schema references)."""
    try:
        parsed = Parser().parse(text)
    except Exception as exc:  # the parser raises its own kinds
        raise ProtobufSchemaError(f"cannot parse the .proto text: {exc}") from None
    syntax = parsed.syntax or "proto2"
    proto = descriptor_pb2.FileDescriptorProto(name=name, syntax=syntax)
    for element in parsed.file_elements:
        if isinstance(element, ast.Package):
            proto.package = element.name
        elif isinstance(element, ast.Import):
            if not element.name.startswith("google/protobuf/") and element.name not in imports:
                raise ProtobufSchemaError(
                    f"imports {element.name!r}, which is not among its schema references"
                )
            proto.dependency.append(element.name)
        elif isinstance(element, ast.Message):
            _add_message(proto.message_type, element, syntax)
        elif isinstance(element, ast.Enum):
            _add_enum(proto.enum_type, element)
    return proto


def _serialized_descriptor(text: str) -> descriptor_pb2.FileDescriptorProto | None:
    """A schema registered as a base64 FileDescriptorProto (what confluent-kafka's
    ProtobufSerializer sends; Apicurio keeps it as sent), else None."""
    if "message" in text or "syntax" in text:
        return None
    try:
        proto = descriptor_pb2.FileDescriptorProto.FromString(
            base64.b64decode(text.strip(), validate=True)
        )
    except Exception:  # not base64, or not a descriptor: read as .proto text
        return None
    return proto if proto.message_type else None


def _descriptor(
    text: str, name: str, imports: Collection[str]
) -> descriptor_pb2.FileDescriptorProto:
    return _serialized_descriptor(text) or file_descriptor(text, name, imports)


def _well_known(pool: descriptor_pool.DescriptorPool, name: str) -> None:
    found = descriptor_pool.Default().FindFileByName(name)
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(found.serialized_pb))


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data):
            raise ValueError("the message-index list is cut short")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
        if shift > 63:
            raise ValueError("a message index is not a valid varint")


def _zigzag(value: int) -> int:
    return (value >> 1) ^ -(value & 1)


class ProtobufReader:
    """Decodes wire-format messages of one registered `.proto` schema."""

    def __init__(
        self,
        schema_text: str,
        schema_id: int = 0,
        references: Sequence[tuple[str, str]] = (),
    ) -> None:
        """`references`: (import name, schema text) of each schema reference, each after
        those it references (streams.runtime.schema_registry.RegistryClient.references)."""
        names = {name for name, _ in references}
        files = [(name, _descriptor(text, name, names)) for name, text in references]
        proto = _descriptor(schema_text, f"sluice_schema_{schema_id}.proto", names)
        pool = descriptor_pool.DescriptorPool()
        added: set[str] = set()
        try:
            for name, dependency in [*files, ("", proto)]:
                for imported in dependency.dependency:
                    if imported not in names and imported not in added:
                        _well_known(pool, imported)
                        added.add(imported)
                if name:
                    dependency.name = name  # how the files importing it name it
                    pool.Add(dependency)
            self.file = pool.Add(proto)
        except Exception as exc:  # unresolved types, duplicate names…
            raise ProtobufSchemaError(f"invalid .proto schema: {exc}") from None
        if not self.file.message_types_by_name:
            raise ProtobufSchemaError("the .proto schema declares no message")
        self._classes: dict[tuple[int, ...], type[Message]] = {}

    def message_class(self, indexes: tuple[int, ...]) -> type[Message]:
        """The message class at these message indexes ((0,): the file's first message)."""
        found = self._classes.get(indexes)
        if found is None:
            messages: Sequence[Descriptor] = self.file.message_types_by_name.values()
            descriptor: Descriptor | None = None
            for index in indexes:
                if index >= len(messages):
                    raise ValueError(f"message index {list(indexes)} is not in the schema")
                descriptor = list(messages)[index]
                messages = descriptor.nested_types
            assert descriptor is not None
            found = self._classes[indexes] = message_factory.GetMessageClass(descriptor)
        return found

    def decode(self, raw: bytes) -> dict[str, Any]:
        count, position = _read_varint(raw, HEADER_SIZE)
        count = _zigzag(count)
        if count == 0:
            indexes: tuple[int, ...] = (0,)
        else:
            if count < 0 or count > 100:
                raise ValueError(f"a message-index list of {count} entries")
            found = []
            for _ in range(count):
                index, position = _read_varint(raw, position)
                found.append(_zigzag(index))
            indexes = tuple(found)
        message = self.message_class(indexes)()
        try:
            message.ParseFromString(raw[position:])
        except Exception as exc:  # DecodeError, and others for garbage
            raise ValueError(f"{type(exc).__name__}: {exc}") from None
        record: dict[str, Any] = to_plain(message)
        return record

    def decode_batch(self, raws: Sequence[bytes]) -> list[Any]:
        out: list[Any] = []
        for raw in raws:
            try:
                out.append(self.decode(raw))
            except ValueError as exc:
                out.append(exc)
        return out


def _scalar(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return to_plain(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        known = field.enum_type.values_by_number.get(value)
        return known.name if known is not None else value
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    return value


def to_plain(message: Message) -> Any:
    """A message as a plain record: every field (proto3 defaults included, unset message
    and optional fields null), enums by name, bytes base64, `Timestamp` ISO-8601."""
    descriptor = message.DESCRIPTOR
    if descriptor.full_name == "google.protobuf.Timestamp":
        return iso_utc(message.ToDatetime())
    record: dict[str, Any] = {}
    for field in descriptor.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            record[field.name] = {str(k): _scalar(value_field, v) for k, v in value.items()}
        elif field.is_repeated:
            record[field.name] = [_scalar(field, v) for v in value]
        elif field.has_presence and not message.HasField(field.name):
            record[field.name] = None
        else:
            record[field.name] = _scalar(field, value)
    return record
