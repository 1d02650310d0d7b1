"""The pure codecs of streams.formats: the wire header, Avro and Protobuf decoding against
independently encoded bytes (fastavro's writer, protobuf's own serializer), the batch
decoder's dead-letter reasons, and the Avro writer's round trip."""

from __future__ import annotations

import base64
import datetime as dt
import io
from decimal import Decimal
from typing import Any

import orjson
import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from google.protobuf import descriptor_pb2

from streams.core.errors import RecordError
from streams.formats.avro import AvroReader, AvroSchemaError, AvroWriter, load_schema
from streams.formats.codec import JsonSchemaReader, decode_batch, schema_ids
from streams.formats.protobuf import ProtobufReader, ProtobufSchemaError
from streams.formats.wire import WireError, frame, schema_id_of

LOGICAL = {
    "type": "record",
    "name": "R",
    "fields": [
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {
            "name": "price",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
        },
        {"name": "blob", "type": "bytes"},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "maybe", "type": ["null", "long"], "default": None},
        {
            "name": "micros",
            "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}],
            "default": None,
        },
    ],
}


def avro_bytes(schema: dict[str, Any], value: dict[str, Any], schema_id: int = 7) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, parse_schema(schema), value)
    return frame(schema_id, out.getvalue())


def test_wire_header() -> None:
    assert schema_id_of(frame(70000, b"x")) == 70000
    for raw in (b"", b"{}", b"\x00\x00\x01", b"\x01\x00\x00\x00\x01x"):
        with pytest.raises(WireError, match="magic byte"):
            schema_id_of(raw)
    assert schema_ids([frame(1, b""), frame(2, b"a"), b"{}", frame(1, b"b")]) == {1, 2}


def test_avro_logical_types_become_plain_values() -> None:
    value = {
        "ts": dt.datetime(2026, 11, 25, 10, 0, 0, 5000, tzinfo=dt.UTC),
        "day": dt.date(2026, 11, 25),
        "price": Decimal("12.34"),
        "blob": b"\x00\xff",
        "tags": ["a"],
        "maybe": None,
        "micros": dt.datetime(2026, 11, 25, 10, 0, 0, 123, tzinfo=dt.UTC),
    }
    decoded = AvroReader(orjson.dumps(LOGICAL).decode()).decode(avro_bytes(LOGICAL, value))
    assert decoded == {
        "ts": "2026-11-25T10:00:00.005Z",
        "day": "2026-11-25",
        "price": Decimal("12.34"),  # exact
        "blob": base64.b64encode(b"\x00\xff").decode(),
        "tags": ["a"],
        "maybe": None,
        "micros": "2026-11-25T10:00:00.000123Z",  # sub-millisecond digits kept
    }


def test_avro_writer_round_trips_plain_values() -> None:
    writer = AvroWriter(LOGICAL, 9)
    plain = {
        "ts": "2026-11-25T10:00:00.005Z",
        "day": dt.date(2026, 11, 25),
        "price": "12.34",
        "blob": "AP8=",
        "tags": [],
        "maybe": 3,
        "micros": None,
    }
    raw = writer.encode(plain)
    assert schema_id_of(raw) == 9
    back = schemaless_reader(io.BytesIO(raw[5:]), parse_schema(LOGICAL), None)
    assert isinstance(back, dict)
    assert back["ts"] == dt.datetime(2026, 11, 25, 10, 0, 0, 5000, tzinfo=dt.UTC)
    assert back["price"] == Decimal("12.34") and back["blob"] == b"\x00\xff"
    assert back["maybe"] == 3
    with pytest.raises(ValueError, match="does not fit"):
        AvroWriter(
            {"type": "record", "name": "S", "fields": [{"name": "a", "type": "long"}]}, 1
        ).encode({"a": "text"})


def test_avro_errors() -> None:
    with pytest.raises(AvroSchemaError):
        load_schema('{"type": "record"}')
    schema = {"type": "record", "name": "S", "fields": [{"name": "a", "type": "string"}]}
    reader = AvroReader(orjson.dumps(schema).decode())
    good = avro_bytes(schema, {"a": "hello"})
    values = reader.decode_batch([good, good[:-2], good + b"\x00"])
    assert values[0] == {"a": "hello"}
    assert isinstance(values[1], ValueError)
    assert isinstance(values[2], ValueError) and "left over" in str(values[2])


def test_decode_batch_reasons() -> None:
    schema = {"type": "record", "name": "S", "fields": [{"name": "a", "type": "long"}]}
    reader = AvroReader(orjson.dumps(schema).decode())
    string_schema = AvroReader('"string"')
    good = avro_bytes(schema, {"a": 5}, 1)
    raws = [good, b"{}", frame(2, b"\x02"), good[:5], frame(3, b"\x02a")]
    out = decode_batch(
        raws, {1: reader, 2: "not found in the schema registry", 3: string_schema}, "avro"
    )
    assert out[0] == {"a": 5}
    errors = out[1:]
    assert all(isinstance(e, RecordError) and e.error_type == "schema" for e in errors)
    assert "magic byte" in str(errors[0])
    assert "schema id 2: not found" in str(errors[1])
    assert "schema id 1: the value does not decode as avro" in str(errors[2])
    assert "schema id 3: decoded to a str" in str(errors[3])
    assert decode_batch([frame(4, b"")], {}, "avro")[0].error_type == "schema"


def test_json_schema_values() -> None:
    out = decode_batch(
        [frame(5, b'{"a": 1}'), frame(5, b"{nope"), frame(5, b"[1]")],
        {5: JsonSchemaReader()},
        "json_schema",
    )
    assert out[0] == {"a": 1}
    assert "invalid JSON" in str(out[1]) and "decoded to a list" in str(out[2])


PROTO = """
syntax = "proto3";
package t;
import "google/protobuf/timestamp.proto";
message Pay {
  string id = 1;
  int64 amount = 2;
  repeated string tags = 3;
  Inner inner = 4;
  enum Kind { A = 0; B = 1; }
  Kind kind = 5;
  map<string, int32> counts = 6;
  oneof choice { string a = 7; int32 b = 8; }
  google.protobuf.Timestamp ts = 9;
  optional string note = 10;
  bytes blob = 11;
  message Nested { double x = 1; }
}
message Inner { bool ok = 1; }
"""


def test_protobuf_from_proto_text() -> None:
    reader = ProtobufReader(PROTO, 3)
    pay = reader.message_class((0,))
    message = pay(id="x", amount=5, tags=["a"], kind=1, counts={"k": 3}, b=4, blob=b"\x01")
    message.inner.ok = True
    message.ts.FromMilliseconds(1_764_064_800_005)
    decoded = reader.decode(frame(3, b"\x00" + message.SerializeToString()))
    assert decoded == {
        "id": "x",
        "amount": 5,
        "tags": ["a"],
        "inner": {"ok": True},
        "kind": "B",
        "counts": {"k": 3},
        "a": None,
        "b": 4,
        "ts": "2025-11-25T10:00:00.005Z",
        "note": None,
        "blob": "AQ==",
    }
    # message indexes [0, 1]: Pay.Nested, after the map's entry type as protoc orders them
    # (zig-zag varints: count 2 -> 0x04, 0 -> 0x00, 1 -> 0x02)
    nested = reader.message_class((0, 1))(x=1.5)
    assert reader.decode(frame(3, b"\x04\x00\x02" + nested.SerializeToString())) == {"x": 1.5}
    # [1]: Inner (count 1 -> 0x02, index 1 -> 0x02)
    inner = reader.message_class((1,))(ok=True)
    assert reader.decode(frame(3, b"\x02\x02" + inner.SerializeToString())) == {"ok": True}
    values = reader.decode_batch([frame(3, b"\x02\x08"), frame(3, b"\x00\xff\xff"), frame(3, b"")])
    assert all(isinstance(v, ValueError) for v in values)


def test_protobuf_from_a_serialized_descriptor() -> None:
    """confluent-kafka's ProtobufSerializer registers a base64 FileDescriptorProto."""
    proto = descriptor_pb2.FileDescriptorProto(name="p.proto", package="s", syntax="proto3")
    message = proto.message_type.add(name="P")
    kinds = descriptor_pb2.FieldDescriptorProto
    message.field.add(name="n", number=1, type=kinds.TYPE_INT64, label=kinds.LABEL_OPTIONAL)
    reader = ProtobufReader(base64.b64encode(proto.SerializeToString()).decode())
    assert reader.decode(frame(1, b"\x00\x08\x07")) == {"n": 7}


def test_protobuf_schema_errors() -> None:
    with pytest.raises(ProtobufSchemaError, match="references"):
        ProtobufReader('syntax = "proto3"; import "other.proto"; message A { int32 a = 1; }')
    with pytest.raises(ProtobufSchemaError):
        ProtobufReader('syntax = "proto3"; message A { Missing a = 1; }')
    with pytest.raises(ProtobufSchemaError, match="no message"):
        ProtobufReader('syntax = "proto3";')


async def test_registry_errors_never_show_credentials() -> None:
    from models.settings import SchemaRegistrySettings
    from streams.runtime.broker import free_port
    from streams.runtime.schema_registry import RegistryClient, RegistryUnavailable

    port = free_port()  # nothing listens there
    client = RegistryClient(
        SchemaRegistrySettings(url=f"http://me:hunter2@127.0.0.1:{port}/apis/ccompat/v7")
    )
    try:
        with pytest.raises(RegistryUnavailable) as caught:
            await client.schema(1)
    finally:
        await client.close()
    assert f"127.0.0.1:{port}/apis/ccompat/v7 did not answer" in str(caught.value)
    assert "hunter2" not in str(caught.value) and "me:" not in str(caught.value)
