"""Readers of schemas with references (the referenced texts given dependencies first),
against bytes encoded independently: fastavro's writer with the schemas expanded by hand,
protobuf's own serializer with descriptors built by hand."""

from __future__ import annotations

import base64
import io

import orjson
import pytest
from fastavro import parse_schema, schemaless_writer
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from streams.formats.avro import AvroReader, AvroSchemaError, inline_references
from streams.formats.columns import schema_fields
from streams.formats.protobuf import ProtobufReader, ProtobufSchemaError
from streams.formats.wire import frame

GEO = {"type": "record", "name": "Geo", "namespace": "t", "fields": [
    {"name": "lat", "type": "double"}, {"name": "raw", "type": "bytes"}]}  # fmt: skip
ADDRESS = {"type": "record", "name": "Address", "namespace": "t", "fields": [
    {"name": "city", "type": "string"}, {"name": "geo", "type": "t.Geo"}]}  # fmt: skip
CUSTOMER = {"type": "record", "name": "Customer", "namespace": "t", "fields": [
    {"name": "name", "type": "string"},
    {"name": "home", "type": "t.Address"},
    {"name": "work", "type": ["null", "t.Address"], "default": None}]}  # fmt: skip


def test_avro_with_chained_references() -> None:
    """Customer -> Address -> Geo (bytes inside the referenced record: base64 text)."""
    expanded = {**CUSTOMER, "fields": [
        CUSTOMER["fields"][0], {"name": "home", "type": {**ADDRESS, "fields": [
            ADDRESS["fields"][0], {"name": "geo", "type": GEO}]}},
        {"name": "work", "type": ["null", "t.Address"], "default": None}]}  # fmt: skip
    value = {
        "name": "ann",
        "home": {"city": "Oslo", "geo": {"lat": 59.9, "raw": b"\x01\x02"}},
        "work": {"city": "Bergen", "geo": {"lat": 60.4, "raw": b""}},
    }
    stream = io.BytesIO()
    schemaless_writer(stream, parse_schema(expanded), value)
    reader = AvroReader(
        orjson.dumps(CUSTOMER).decode(),
        [orjson.dumps(GEO).decode(), orjson.dumps(ADDRESS).decode()],
    )
    assert reader.decode_batch([frame(7, stream.getvalue())]) == [
        {
            "name": "ann",
            "home": {"city": "Oslo", "geo": {"lat": 59.9, "raw": "AQI="}},
            "work": {"city": "Bergen", "geo": {"lat": 60.4, "raw": ""}},
        }
    ]
    with pytest.raises(AvroSchemaError, match=r"t\.Address"):  # a reference not given
        AvroReader(orjson.dumps(CUSTOMER).decode(), [orjson.dumps(GEO).decode()])


MONEY = (
    'syntax = "proto3";\npackage common;\nmessage Money { string currency = 1; int64 cents = 2; }\n'
)
ORDER = """syntax = "proto3";
package shop;
import "common/money.proto";
import "google/protobuf/timestamp.proto";
message Order { string id = 1; common.Money total = 2; google.protobuf.Timestamp at = 3; }
"""


def money_descriptor() -> descriptor_pb2.FileDescriptorProto:
    kinds = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(
        name="common/money.proto", package="common", syntax="proto3"
    )
    message = proto.message_type.add(name="Money")
    message.field.add(name="currency", number=1, type=kinds.TYPE_STRING, label=1)
    message.field.add(name="cents", number=2, type=kinds.TYPE_INT64, label=1)
    return proto


def test_protobuf_importing_a_referenced_proto() -> None:
    """`.proto` text importing another registered `.proto` (and a well-known type); the
    referenced file as text or as a base64 descriptor (confluent-kafka registers those)."""
    kinds = descriptor_pb2.FieldDescriptorProto
    order = descriptor_pb2.FileDescriptorProto(
        name="order.proto",
        package="shop",
        syntax="proto3",
        dependency=["common/money.proto"],
    )
    message = order.message_type.add(name="Order")
    message.field.add(name="id", number=1, type=kinds.TYPE_STRING, label=1)
    message.field.add(
        name="total", number=2, type=kinds.TYPE_MESSAGE, type_name=".common.Money", label=1
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(money_descriptor())
    order_class = message_factory.GetMessageClass(pool.Add(order).message_types_by_name["Order"])
    money_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("common.Money"))
    encoded = order_class(id="o1", total=money_class(currency="EUR", cents=125))
    raw = frame(3, b"\x00" + encoded.SerializeToString())
    serialized_money = base64.b64encode(money_descriptor().SerializeToString()).decode()
    for money in (MONEY, serialized_money):
        reader = ProtobufReader(ORDER, 3, [("common/money.proto", money)])
        assert reader.decode(raw) == {
            "id": "o1",
            "total": {"currency": "EUR", "cents": 125},
            "at": None,
        }
    fields = schema_fields("PROTOBUF", ORDER, 3, [("common/money.proto", MONEY)])
    assert fields == ("id", "total", "at")
    with pytest.raises(ProtobufSchemaError, match="not among its schema references"):
        ProtobufReader(ORDER, 3)


def test_inline_references_makes_a_standalone_schema() -> None:
    """The first use of a referenced type is written out (its own references too), later
    uses keep the name: fastavro parses the result with nothing else given."""
    inlined = inline_references(
        CUSTOMER, [orjson.dumps(GEO).decode(), orjson.dumps(ADDRESS).decode()]
    )
    parse_schema(inlined)  # raises on an unknown or redefined name
    home = inlined["fields"][1]["type"]
    assert (home["name"], home["namespace"]) == ("Address", "t")
    assert home["fields"][1]["type"]["name"] == "Geo"
    assert inlined["fields"][2]["type"] == ["null", "t.Address"]
    assert inline_references(CUSTOMER, []) == CUSTOMER  # nothing to inline: unchanged
