"""Topics in Avro, JSON Schema and Protobuf through a real schema registry (Apicurio 3.3.3),
written by confluent-kafka's serializers (an independent producer): a worker's results equal
`sluice replay` over JSON Lines of the decoded values; an Avro output reads back with
confluent-kafka's AvroDeserializer; a producer moving to a BACKWARD-compatible v2 mid-stream
has both versions processed; bad input is a `schema` dead letter with the original bytes.

One worker per broker runs all four pipelines (a worker and a registry are the cost here).

Then, on tansu (sluice's side only): `sluice produce --format … --schema` and
`sluice consume --decode` round trips checked with confluent-kafka's deserializer; the
registry down at start (one line, exit 1) and while running (cached ids keep going, a new id
waits with /ready false, nothing skipped); an incompatible Avro output refused by
`sluice check --registry` and at start, one line each. All in this one file: one registry
per test process."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from streams.config.loader import load_pipeline
from streams.offline import replay
from streams.runtime.broker import EmbeddedBroker, free_port
from streams.sql.compiler import load_sql_program
from tests.brokers.registry import ApicurioRegistry
from tests.integration.conftest import (
    SLUICE,
    Broker,
    consume_all,
    create_topics,
    produce_lines,
    unique,
)
from tests.waiting import eventually

pytestmark = pytest.mark.integration

PAYMENT_V1 = {
    "type": "record",
    "name": "Payment",
    "namespace": "shop",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "user", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "qty", "type": "long"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}
# BACKWARD compatible: a new optional field with a default
PAYMENT_V2 = {
    **PAYMENT_V1,
    "fields": [
        *PAYMENT_V1["fields"],
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}
JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "user": {"type": "string"},
        "amount": {"type": "number"},
        "qty": {"type": "integer"},
    },
    "required": ["id", "user", "amount", "qty"],
}


def iso(ms: int) -> str:
    """ISO-8601 UTC with milliseconds, computed here (not by sluice)."""
    moment = dt.datetime.fromtimestamp(ms // 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def payments(count: int, seed: int) -> list[dict[str, Any]]:
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    return [
        {
            "id": f"p{seed}-{n}",
            "user": f"u{(n * 7 + seed) % 5}",
            "amount": round(((n * 37 + seed) % 50) / 4, 2),
            "qty": n % 4 + 1,
            "ts": now - (count - n) * 10,
        }
        for n in range(count)
    ]


def payment_class() -> Any:
    """A Protobuf message class built from a hand-made descriptor (no protoc here)."""
    proto = descriptor_pb2.FileDescriptorProto(
        name=f"{unique('pay')}.proto", package="shop", syntax="proto3"
    )
    message = proto.message_type.add(name="Payment")
    kinds = descriptor_pb2.FieldDescriptorProto
    for number, (name, kind) in enumerate(
        [
            ("id", kinds.TYPE_STRING),
            ("user", kinds.TYPE_STRING),
            ("amount", kinds.TYPE_DOUBLE),
            ("qty", kinds.TYPE_INT64),
        ],
        1,
    ):
        message.field.add(name=name, number=number, type=kind, label=kinds.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    return message_factory.GetMessageClass(pool.Add(proto).message_types_by_name["Payment"])


def set_backward(registry: ApicurioRegistry, subject: str) -> None:
    request = urllib.request.Request(
        f"{registry.url}/config/{subject}",
        data=json.dumps({"compatibility": "BACKWARD"}).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def context(topic: str) -> SerializationContext:
    return SerializationContext(topic, MessageField.VALUE)


def canonical(values: list[Any]) -> Counter[bytes]:
    rounded = [
        {k: round(v, 6) if isinstance(v, float) else v for k, v in x.items()} for x in values
    ]
    return Counter(orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for v in rounded)


PIPELINES = {
    "avro": """
pipeline: fa
source: {{topic: avro-{tag}, format: avro, timestamp: ts}}
steps:
  - filter: "amount > 1"
  - map: {{id: id, user: user, gross: "amount * qty", note: "COALESCE(note, 'none')", ts: ts}}
sink: {{topic: out-avro-{tag}}}
dlq: {{topic: dlq-avro-{tag}}}
""",
    "avro_out": """
pipeline: fo
source: {{topic: avro-{tag}, format: avro, key: user}}
steps:
  - filter: "amount > 1"
  - map: {{id: id, user: user, gross: "amount * qty", qty: qty, ts: ts}}
sink: {{topic: out-avro2-{tag}, format: avro, key_format: avro}}
dlq: {{topic: dlq-avro2-{tag}}}
""",
    "json_schema": """
pipeline: fj
source: {{topic: js-{tag}, format: json_schema}}
steps:
  - filter: "amount > 1"
  - map: {{id: id, user: user, gross: "amount * qty"}}
sink: {{topic: out-js-{tag}}}
dlq: {{topic: dlq-js-{tag}}}
""",
    "protobuf": """
pipeline: fp
source: {{topic: pb-{tag}, format: protobuf}}
steps:
  - filter: "amount > 1"
  - map: {{id: id, user: user, gross: "amount * qty"}}
sink: {{topic: out-pb-{tag}}}
dlq: {{topic: dlq-pb-{tag}}}
""",
}

# SQL: a stream declared without columns (they are the registry schema's), a windowed table
# keyed by user (a re-key stage, reading Avro) written in Avro with a derived schema
SQL = """
CREATE STREAM pay WITH (KAFKA_TOPIC = 'avro-{tag}', VALUE_FORMAT = 'AVRO', TIMESTAMP = 'ts');
CREATE TABLE per_user WITH (KAFKA_TOPIC = 'per-user-{tag}', VALUE_FORMAT = 'AVRO') AS
SELECT user, COUNT(*) AS n, SUM(amount) AS total FROM pay
WINDOW TUMBLING (SIZE 1 SECOND) GROUP BY user EMIT FINAL;
"""


async def test_registry_formats_match_replay(
    broker: Broker, schema_registry: ApicurioRegistry, make_worker: Any, tmp_path: Path
) -> None:
    tag = unique("f")
    client = SchemaRegistryClient({"url": schema_registry.url})

    # Avro: v1 for the first half, then the producer moves to v2 (BACKWARD compatible)
    avro_topic = f"avro-{tag}"
    set_backward(schema_registry, f"{avro_topic}-value")
    records = payments(40, seed=1)
    v1 = AvroSerializer(client, json.dumps(PAYMENT_V1))
    v2 = AvroSerializer(client, json.dumps(PAYMENT_V2))
    avro_lines = [v1(r, context(avro_topic)) for r in records[:20]]
    for n, record in enumerate(records[20:]):
        record["note"] = None if n % 3 == 0 else f"n{n}"
        avro_lines.append(v2(record, context(avro_topic)))
    v1_id = int.from_bytes(avro_lines[0][1:5], "big")
    v2_id = int.from_bytes(avro_lines[-1][1:5], "big")
    assert v1_id != v2_id  # two versions on the topic
    bad = [
        b'{"id": "not-avro"}',  # no magic byte
        b"\x00" + (987654).to_bytes(4, "big") + b"\x02",  # an id the registry does not have
        b"\x00" + v1_id.to_bytes(4, "big") + b"\x02\x41",  # cut short: does not decode
    ]
    decoded_avro = [{**r, "ts": iso(r["ts"])} for r in records]

    js_records = [{k: v for k, v in r.items() if k != "ts"} for r in payments(30, seed=2)]
    js = JSONSerializer(json.dumps(JSON_SCHEMA), client)
    js_lines = [js(r, context(f"js-{tag}")) for r in js_records]

    pb_records = [{k: v for k, v in r.items() if k != "ts"} for r in payments(30, seed=3)]
    payment = payment_class()
    pb = ProtobufSerializer(payment, client, {"use.deprecated.format": False})
    pb_lines = [pb(payment(**r), context(f"pb-{tag}")) for r in pb_records]

    # the independent side: sluice replay over JSON Lines of the decoded values
    inputs = {"avro": decoded_avro, "avro_out": decoded_avro, "json_schema": js_records}
    inputs["protobuf"] = pb_records
    expected: dict[str, list[Any]] = {}
    for name, text in PIPELINES.items():
        (tmp_path / f"{name}.yaml").write_text(text.format(tag=tag))
        spec = load_pipeline(tmp_path / f"{name}.yaml")
        source = tmp_path / f"{name}.jsonl"
        source.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in inputs[name]))
        await replay(spec, str(source), tmp_path / f"replay-{name}")
        topic = spec.sink.topic
        assert topic is not None
        out = (tmp_path / f"replay-{name}" / f"{topic}.jsonl").read_bytes().splitlines()
        expected[name] = [orjson.loads(line) for line in out]
    (tmp_path / "sql.sql").write_text(SQL.format(tag=tag))
    program = load_sql_program(tmp_path / "sql.sql")
    await replay(program.specs(), {avro_topic: str(tmp_path / "avro.jsonl")}, tmp_path / "sql")
    per_user = f"per-user-{tag}"
    windows = [
        orjson.loads(x) for x in (tmp_path / "sql" / f"{per_user}.jsonl").read_bytes().splitlines()
    ]
    assert len(windows) >= 5  # every user, in one or two windows
    assert len(expected["avro"]) > 20  # most pass the filter, of both versions
    assert {"none", "n1"} <= {r["note"] for r in expected["avro"]}

    # the Avro topic in one partition: its records reach the re-key stage in event-time
    # order, so no window closes before its last record (grace 0) however batches fall
    await create_topics(broker, avro_topic, partitions=1)
    await create_topics(broker, f"js-{tag}", f"pb-{tag}")
    worker = make_worker(
        {name: text.format(tag=tag) for name, text in PIPELINES.items()},
        extra=f"schema_registry: {{url: '{schema_registry.url}'}}\n",
        start=False,
    )
    (worker.config / "pipelines" / "sql.sql").write_text(SQL.format(tag=tag))
    worker.start()
    worker.wait_ready()
    await produce_lines(broker, avro_topic, avro_lines[:20] + bad + avro_lines[20:])
    await produce_lines(broker, f"js-{tag}", js_lines)
    await produce_lines(broker, f"pb-{tag}", pb_lines)

    for name, prefix in (("avro", "out-avro"), ("json_schema", "out-js"), ("protobuf", "out-pb")):
        got = await consume_all(broker, f"{prefix}-{tag}", len(expected[name]), settle=0.5)
        assert canonical([orjson.loads(m.value) for m in got]) == canonical(expected[name]), name

    # the Avro output, read back by confluent-kafka's deserializer with the registered schema
    deserialize = AvroDeserializer(client)
    topic = f"out-avro2-{tag}"
    got = await consume_all(broker, topic, len(expected["avro_out"]), settle=0.5)
    assert all(m.value[0] == 0 for m in got)
    values = [deserialize(m.value, context(topic)) for m in got]
    assert canonical(values) == canonical(expected["avro_out"])
    key_context = SerializationContext(topic, MessageField.KEY)  # key_format: avro
    assert [deserialize(m.key, key_context) for m in got] == [v["user"] for v in values]
    registered = client.get_latest_version(f"{topic}-value").schema.schema_str
    fields = {f["name"]: f["type"] for f in json.loads(registered)["fields"]}
    assert fields["qty"] == ["null", "long"] and fields["ts"] == ["null", "string"]

    # the SQL table: re-keyed by a field of the Avro records, its windows in Avro
    got = await consume_all(broker, per_user, len(windows), settle=0.5)
    assert canonical([deserialize(m.value, context(per_user)) for m in got]) == canonical(windows)

    # every bad input: a `schema` dead letter with the original bytes, naming the id
    for dlq in (f"dlq-avro-{tag}", f"dlq-avro2-{tag}"):
        letters = await consume_all(broker, dlq, len(bad), settle=0.5)
        assert sorted(m.value for m in letters) == sorted(bad)
        by_value = {m.value: dict(m.headers) for m in letters}
        assert all(h["sluice.error.type"] == b"schema" for h in by_value.values())
        assert all(h["sluice.error.step"] == b"source" for h in by_value.values())
        assert b"magic byte" in by_value[bad[0]]["sluice.error.message"]
        assert b"schema id 987654" in by_value[bad[1]]["sluice.error.message"]
        assert f"schema id {v1_id}".encode() in by_value[bad[2]]["sluice.error.message"]
    assert worker.metric("sluice_dead_letters_total") == 3 * len(bad)  # the SQL table's too
    assert worker.stop() == 0


PROTO = """syntax = "proto3";
package shop;
message Payment { string id = 1; string user = 2; double amount = 3; int64 qty = 4; }
"""


def sluice(config: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(SLUICE), *args, "--config", str(config)],
        capture_output=True,
        timeout=timeout,
        check=False,
        env=os.environ.copy(),
    )


def check_registry(config: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(SLUICE), "check", str(config), "--registry"],
        capture_output=True,
        timeout=60,
        check=False,
    )


def config_dir(tmp_path: Path, broker: EmbeddedBroker, registry_url: str, extra: str = "") -> Path:
    config = tmp_path / "config"
    (config / "pipelines").mkdir(parents=True, exist_ok=True)
    (config / "sluice.yaml").write_text(
        f"brokers: ['{broker.url}']\nschema_registry: {{url: '{registry_url}'}}\n{extra}"
    )
    return config


async def test_produce_and_consume_in_registry_formats(
    tansu: EmbeddedBroker, schema_registry: ApicurioRegistry, tmp_path: Path
) -> None:
    config = config_dir(tmp_path, tansu, schema_registry.url)
    client = SchemaRegistryClient({"url": schema_registry.url})
    (tmp_path / "p.avsc").write_text(json.dumps(PAYMENT_V1))
    (tmp_path / "p.proto").write_text(PROTO)
    for format_name, schema in (("avro", "p.avsc"), ("protobuf", "p.proto")):
        records = payments(12, seed=4)
        if format_name == "protobuf":
            records = [{k: v for k, v in r.items() if k != "ts"} for r in records]
        lines = tmp_path / "in.jsonl"
        lines.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records) + b'{"id": 1}\n')
        topic = unique(format_name)
        await create_topics(tansu, topic, partitions=1)
        sent = sluice(
            config, "produce", topic, "--input", str(lines), "--format", format_name,
            "--schema", str(tmp_path / schema),
        )  # fmt: skip
        # the last line does not fit the schema: reported and skipped, exit 1
        assert sent.returncode == 1, sent.stderr
        assert b"line 13: cannot encode it" in sent.stderr
        printed = sluice(
            config, "consume", topic, "--from-beginning", "--decode", "--limit", "12",
            "--idle-timeout", "15",
        )  # fmt: skip
        assert printed.returncode == 0, printed.stderr
        decoded = [orjson.loads(line) for line in printed.stdout.splitlines()]
        if format_name == "avro":
            assert decoded == [{**r, "ts": iso(r["ts"])} for r in records]
            messages = await consume_all(tansu, topic, 12, settle=0)
            deserialize = AvroDeserializer(client)
            assert [deserialize(m.value, context(topic)) for m in messages] == [
                {**r, "ts": dt.datetime.fromtimestamp(r["ts"] / 1000, dt.UTC)} for r in records
            ]
        else:
            assert decoded == records


def test_registry_down_at_start_is_one_line(
    tansu: EmbeddedBroker, make_worker: Any, tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/apis/ccompat/v7"
    worker = make_worker(
        {"p": f"pipeline: p\nsource: {{topic: {unique('a')}, format: avro}}\nsink: {{topic: o}}\n"},
        broker_url=tansu.url,
        extra=f"schema_registry: {{url: '{closed}'}}\nkafka: {{connect_timeout: 2s}}\n",
        start=False,
    )
    began = time.monotonic()
    worker.start()
    assert worker.process.wait(60) == 1
    assert time.monotonic() - began >= 2
    lines = [line for line in worker.output().splitlines() if "did not answer" in line]
    assert len(lines) == 1 and "within kafka.connect_timeout (2s)" in lines[0]
    assert "Traceback" not in worker.output()


async def test_incompatible_output_is_refused_by_check_and_at_start(
    tansu: EmbeddedBroker, schema_registry: ApicurioRegistry, make_worker: Any, tmp_path: Path
) -> None:
    tag = unique("c")
    client = SchemaRegistryClient({"url": schema_registry.url})
    source, out = f"src-{tag}", f"out-{tag}"
    AvroSerializer(client, json.dumps(PAYMENT_V1))(payments(1, 0)[0], context(source))
    set_backward(schema_registry, f"{out}-value")
    existing = {  # named as sluice names the records it derives: sluice.<pipeline>_<topic>
        "type": "record",
        "name": f"p_{out}".replace("-", "_"),
        "namespace": "sluice",
        "fields": [{"name": "gross", "type": "string"}],
    }
    AvroSerializer(client, json.dumps(existing))({"gross": "x"}, context(out))
    pipeline = (
        f"pipeline: p\nsource: {{topic: {source}, format: avro}}\n"
        "steps:\n  - map: {id: id, gross: qty}\n"
        f"sink: {{topic: {out}, format: avro}}\n"
    )
    worker = make_worker(
        {"p": pipeline},
        broker_url=tansu.url,
        extra=f"schema_registry: {{url: '{schema_registry.url}'}}\n",
        start=False,
    )
    checked = check_registry(worker.config)
    assert checked.returncode == 1
    lines = checked.stdout.decode().splitlines()
    # the source's columns came from the registry (and fit): no "known at run time" warning
    assert not any("come from the schema registry at run time" in line for line in lines)
    problems = [line for line in lines if "not compatible" in line]
    assert len(problems) == 1 and f"not compatible with subject {out}-value" in problems[0]
    worker.start()
    assert worker.process.wait(60) == 1
    refused = [line for line in worker.output().splitlines() if "refuses" in line]
    assert len(refused) == 1 and f"subject {out}-value" in refused[0]


async def test_registry_down_while_running(
    tansu: EmbeddedBroker, schema_registry: ApicurioRegistry, make_worker: Any
) -> None:
    tag = unique("d")
    source, out = f"src-{tag}", f"out-{tag}"
    await create_topics(tansu, source, partitions=1)
    client = SchemaRegistryClient({"url": schema_registry.url})
    set_backward(schema_registry, f"{source}-value")
    v1 = AvroSerializer(client, json.dumps(PAYMENT_V1))
    v2 = AvroSerializer(client, json.dumps(PAYMENT_V2))
    records = payments(30, seed=6)
    first = [v1(r, context(source)) for r in records[:10]]
    second = [v1(r, context(source)) for r in records[10:20]]
    third = [v2(r, context(source)) for r in records[20:]]  # a new id, registered now
    worker = make_worker(
        {"p": f"pipeline: p\nsource: {{topic: {source}, format: avro}}\nsink: {{topic: {out}}}\n"},
        broker_url=tansu.url,
        extra=f"schema_registry: {{url: '{schema_registry.url}'}}\n",
    )
    worker.wait_ready()
    await produce_lines(tansu, source, first)
    assert len(await consume_all(tansu, out, 10, settle=0)) == 10  # v1's id now cached
    schema_registry.pause()
    try:
        await produce_lines(tansu, source, second)
        assert len(await consume_all(tansu, out, 20, settle=0)) == 20  # cached: no registry
        await produce_lines(tansu, source, third)
        await eventually(
            lambda: "waiting for the schema registry" in worker.output(None), 30, "a log line"
        )
        await eventually(lambda: worker.get("/ready")[0] == 503, 10, "not ready")
        _, body = worker.get("/ready")
        assert body["checks"]["schema_registry"] is False
        assert len(await consume_all(tansu, out, 21, timeout=2, settle=0)) == 20  # it waits
    finally:
        schema_registry.resume()
    got = await consume_all(tansu, out, 30, settle=1)
    assert sorted(orjson.loads(m.value)["id"] for m in got) == sorted(r["id"] for r in records)
    await eventually(lambda: worker.get("/ready")[0] == 200, 30, "ready again")
    assert "the schema registry answers again" in worker.output(None)
    assert worker.metric("sluice_dead_letters_total") == 0
    assert worker.stop() == 0
