"""The schema registry over HTTPS with a private CA (`schema_registry.ssl_cafile`): the test
Apicurio serves HTTPS beside HTTP with a certificate for 127.0.0.1 signed by a test CA
(tests.brokers.registry). A worker trusting that CA reads an Avro topic written by
confluent-kafka's serializer (itself through HTTPS) and writes Avro with a derived schema
registered over HTTPS; its results equal `sluice replay`. `sluice consume --decode` and
`sluice check --registry` use the CA too; without it, check fails with one line naming the
certificate problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer

from streams.config.loader import load_pipeline
from streams.offline import replay
from streams.runtime.broker import EmbeddedBroker
from tests.brokers.registry import ApicurioRegistry
from tests.integration.conftest import consume_all, create_topics, produce_lines, unique
from tests.integration.test_formats import (
    PAYMENT_V1,
    canonical,
    check_registry,
    context,
    iso,
    payments,
    sluice,
)

pytestmark = pytest.mark.integration

PIPELINE = """
pipeline: tls
source: {{topic: {source}, format: avro, timestamp: ts}}
steps:
  - filter: "amount > 1"
  - map: {{id: id, user: user, gross: "amount * qty", ts: ts}}
sink: {{topic: {out}, format: avro}}
"""


async def test_registry_over_https_with_a_private_ca(
    tansu: EmbeddedBroker, schema_registry: ApicurioRegistry, make_worker: Any, tmp_path: Path
) -> None:
    tag = unique("tls")
    source, out = f"src-{tag}", f"out-{tag}"
    ca_file = schema_registry.tls.ca_file
    assert schema_registry.https_url.startswith("https://127.0.0.1:")
    client = SchemaRegistryClient(
        {"url": schema_registry.https_url, "ssl.ca.location": str(ca_file)}
    )
    records = payments(30, seed=11)
    serialize = AvroSerializer(client, json.dumps(PAYMENT_V1))
    lines = [serialize(r, context(source)) for r in records]
    decoded = [{**r, "ts": iso(r["ts"])} for r in records]

    pipeline = PIPELINE.format(source=source, out=out)
    (tmp_path / "p.yaml").write_text(pipeline)
    (tmp_path / "in.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in decoded))
    await replay(load_pipeline(tmp_path / "p.yaml"), str(tmp_path / "in.jsonl"), tmp_path / "r")
    expected = [orjson.loads(x) for x in (tmp_path / "r" / f"{out}.jsonl").read_bytes().split()]
    assert 10 < len(expected) < len(records)  # the filter keeps some, not all

    await create_topics(tansu, source, partitions=1)
    registry = f"schema_registry: {{url: '{schema_registry.https_url}', ssl_cafile: '{ca_file}'}}\n"
    worker = make_worker({"p": pipeline}, broker_url=tansu.url, extra=registry, start=False)
    checked = check_registry(worker.config)  # columns and the derived schema, over HTTPS
    assert checked.returncode == 0, checked.stdout + checked.stderr
    worker.start()
    worker.wait_ready()
    await produce_lines(tansu, source, lines)
    got = await consume_all(tansu, out, len(expected), settle=0.5)
    deserialize = AvroDeserializer(client)
    assert canonical([deserialize(m.value, context(out)) for m in got]) == canonical(expected)
    assert worker.stop() == 0

    printed = sluice(
        worker.config, "consume", source, "--from-beginning", "--decode",
        "--limit", str(len(records)), "--idle-timeout", "15",
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    assert [orjson.loads(line) for line in printed.stdout.splitlines()] == decoded

    # the same config without the CA: the registry's certificate is not trusted
    untrusted = tmp_path / "untrusted"
    (untrusted / "pipelines").mkdir(parents=True)
    (untrusted / "sluice.yaml").write_text(
        f"brokers: ['{tansu.url}']\nschema_registry: {{url: '{schema_registry.https_url}'}}\n"
    )
    (untrusted / "pipelines" / "p.yaml").write_text(pipeline)
    refused = check_registry(untrusted)
    assert refused.returncode == 1
    output = (refused.stdout + refused.stderr).decode()
    assert "Traceback" not in output
    lines_said = [line for line in output.splitlines() if "certificate" in line]
    assert len(lines_said) == 1, output
    assert "TLS certificate is not trusted (unable to get local issuer certificate)" in output
    assert "set schema_registry.ssl_cafile" in lines_said[0]
