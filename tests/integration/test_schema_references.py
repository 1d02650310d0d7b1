"""Schema references through the real registry (Apicurio 3.3.3's Confluent API), written by
confluent-kafka's serializers (an independent producer):

- Avro: `Customer` references the named type `Address` registered under another subject
  (registered here with `Schema(..., references=[SchemaReference(...)])`; the serializer
  with `auto.register.schemas: False, use.latest.version: True`);
- Protobuf: `Order` imports `money.proto`, both registered by confluent-kafka's
  ProtobufSerializer itself (the dependency under its file name, the message's schema with
  a reference to it). Registering them by hand and `use.latest.version` does not work with
  Apicurio 3.3.3: its `?format=serialized` answer is not base64, which confluent-kafka
  requires.

A worker reading both topics (columns from the registry, no declared fields) writes what
`sluice replay` over the decoded values writes, in JSON and — for the Avro topic — in Avro
with a schema derived from the referencing one (read back by confluent-kafka's
AvroDeserializer); `sluice consume --decode` prints the decoded Avro records."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from streams.config.loader import load_pipeline
from streams.offline import replay
from streams.runtime.broker import EmbeddedBroker
from tests.brokers.registry import ApicurioRegistry
from tests.integration.conftest import consume_all, create_topics, produce_lines, unique
from tests.integration.test_formats import canonical, context, sluice

pytestmark = pytest.mark.integration

PIPELINES = {
    "avro": """
pipeline: refa
source: {{topic: cust-{tag}, format: avro}}
steps:
  - filter: "score > 2"
sink: {{topic: out-cust-{tag}}}
""",
    # an Avro output whose schema is derived from the referencing source schema
    "avro_out": """
pipeline: refo
source: {{topic: cust-{tag}, format: avro}}
steps:
  - filter: "score > 2"
sink: {{topic: out-cust-avro-{tag}, format: avro}}
""",
    "protobuf": """
pipeline: refp
source: {{topic: order-{tag}, format: protobuf}}
steps:
  - filter: "qty > 1"
sink: {{topic: out-order-{tag}}}
""",
}


def avro_schemas(tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
    namespace = "shop_" + tag.replace("-", "_")
    address = {
        "type": "record",
        "name": "Address",
        "namespace": namespace,
        "fields": [{"name": "city", "type": "string"}, {"name": "code", "type": "bytes"}],
    }
    customer = {
        "type": "record",
        "name": "Customer",
        "namespace": namespace,
        "fields": [
            {"name": "name", "type": "string"},
            {"name": "score", "type": "long"},
            {"name": "home", "type": f"{namespace}.Address"},
            {"name": "work", "type": ["null", f"{namespace}.Address"], "default": None},
        ],
    }
    return address, customer


def order_classes(tag: str) -> tuple[Any, Any]:
    """Order (in order.proto) with a Money field from money.proto: descriptors by hand."""
    kinds = descriptor_pb2.FieldDescriptorProto
    money_file = f"{tag}/money.proto"
    money = descriptor_pb2.FileDescriptorProto(name=money_file, package="money", syntax="proto3")
    message = money.message_type.add(name="Money")
    message.field.add(name="currency", number=1, type=kinds.TYPE_STRING, label=1)
    message.field.add(name="cents", number=2, type=kinds.TYPE_INT64, label=1)
    order = descriptor_pb2.FileDescriptorProto(
        name=f"{tag}/order.proto", package="orders", syntax="proto3", dependency=[money_file]
    )
    message = order.message_type.add(name="Order")
    message.field.add(name="id", number=1, type=kinds.TYPE_STRING, label=1)
    message.field.add(
        name="total", number=2, type=kinds.TYPE_MESSAGE, type_name=".money.Money", label=1
    )
    message.field.add(name="qty", number=3, type=kinds.TYPE_INT64, label=1)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(money)
    order_class = message_factory.GetMessageClass(pool.Add(order).message_types_by_name["Order"])
    return order_class, message_factory.GetMessageClass(pool.FindMessageTypeByName("money.Money"))


async def test_schema_references_avro_and_protobuf(
    tansu: EmbeddedBroker, schema_registry: ApicurioRegistry, make_worker: Any, tmp_path: Path
) -> None:
    tag = unique("ref")
    client = SchemaRegistryClient({"url": schema_registry.url})

    address, customer = avro_schemas(tag)
    address_subject = f"address-{tag}"
    client.register_schema(address_subject, Schema(json.dumps(address), "AVRO"))
    version = client.get_latest_version(address_subject).version
    reference = SchemaReference(f"{address['namespace']}.Address", address_subject, version)
    client.register_schema(
        f"cust-{tag}-value", Schema(json.dumps(customer), "AVRO", references=[reference])
    )
    serialize = AvroSerializer(
        client, None, conf={"auto.register.schemas": False, "use.latest.version": True}
    )
    people: list[dict[str, Any]] = [
        {
            "name": f"c{n}",
            "score": n % 5,
            "home": {"city": f"city{n % 3}", "code": bytes([n, n + 1])},
            "work": None if n % 2 else {"city": "office", "code": b""},
        }
        for n in range(20)
    ]
    avro_lines = [serialize(p, context(f"cust-{tag}")) for p in people]

    def plain_address(value: dict[str, Any] | None) -> dict[str, Any] | None:
        return value and {**value, "code": base64.b64encode(value["code"]).decode()}

    decoded_people = [
        {**p, "home": plain_address(p["home"]), "work": plain_address(p["work"])} for p in people
    ]

    order_class, money_class = order_classes(tag)
    serialize_order = ProtobufSerializer(order_class, client, {"use.deprecated.format": False})
    orders: list[dict[str, Any]] = [
        {"id": f"o{n}", "total": {"currency": "EUR", "cents": n * 125}, "qty": n % 4}
        for n in range(20)
    ]
    pb_lines = [
        serialize_order(
            order_class(id=o["id"], total=money_class(**o["total"]), qty=o["qty"]),
            context(f"order-{tag}"),
        )
        for o in orders
    ]
    registered = client.get_latest_version(f"order-{tag}-value")
    assert [r.name for r in registered.schema.references] == [f"{tag}/money.proto"]

    expected: dict[str, list[Any]] = {}
    inputs: dict[str, list[dict[str, Any]]] = {
        "avro": decoded_people,
        "avro_out": decoded_people,
        "protobuf": orders,
    }
    for name, records in inputs.items():
        (tmp_path / f"{name}.yaml").write_text(PIPELINES[name].format(tag=tag))
        spec = load_pipeline(tmp_path / f"{name}.yaml")
        (tmp_path / f"{name}.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
        await replay(spec, str(tmp_path / f"{name}.jsonl"), tmp_path / name)
        out = (tmp_path / name / f"{spec.sink.topic}.jsonl").read_bytes().splitlines()
        expected[name] = [orjson.loads(line) for line in out]
        assert 0 < len(expected[name]) < len(records)

    await create_topics(tansu, f"cust-{tag}", f"order-{tag}", partitions=1)
    worker = make_worker(
        {name: text.format(tag=tag) for name, text in PIPELINES.items()},
        broker_url=tansu.url,
        extra=f"schema_registry: {{url: '{schema_registry.url}'}}\n",
    )
    worker.wait_ready()
    await produce_lines(tansu, f"cust-{tag}", avro_lines)
    await produce_lines(tansu, f"order-{tag}", pb_lines)
    for name, topic in (("avro", f"out-cust-{tag}"), ("protobuf", f"out-order-{tag}")):
        got = await consume_all(tansu, topic, len(expected[name]), settle=0.5)
        assert canonical([orjson.loads(m.value) for m in got]) == canonical(expected[name]), name
    # the derived output schema stands alone (Address written out): confluent-kafka reads it
    topic = f"out-cust-avro-{tag}"
    got = await consume_all(tansu, topic, len(expected["avro_out"]), settle=0.5)
    deserialize = AvroDeserializer(client)
    values = [deserialize(m.value, context(topic)) for m in got]
    assert canonical(values) == canonical(expected["avro_out"])
    assert not client.get_latest_version(f"{topic}-value").schema.references
    assert worker.metric("sluice_dead_letters_total") == 0
    assert worker.stop() == 0

    printed = sluice(
        worker.config, "consume", f"cust-{tag}", "--from-beginning", "--decode",
        "--limit", str(len(people)), "--idle-timeout", "15",
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    assert [orjson.loads(line) for line in printed.stdout.splitlines()] == decoded_people
