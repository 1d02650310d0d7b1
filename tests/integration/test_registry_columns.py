"""Columns from a real schema registry (Apicurio 3.3.3) for sources declared without them,
as ksqlDB takes a `VALUE_FORMAT='AVRO'` stream's columns: `sluice check --registry` and the
worker at start check every column a YAML or SQL pipeline reads against the latest schema of
`<topic>-value`; without `--registry` the check warns that it cannot tell."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer

from streams.runtime.broker import EmbeddedBroker
from tests.brokers.registry import ApicurioRegistry
from tests.integration.conftest import SLUICE, unique
from tests.integration.test_formats import PAYMENT_V1, context, payments

pytestmark = pytest.mark.integration

RUN_TIME_WARNING = "come from the schema registry at run time"


def check(config: Path, *flags: str) -> tuple[int, list[str]]:
    done = subprocess.run(
        [str(SLUICE), "check", str(config), *flags], capture_output=True, timeout=60, check=False
    )
    return done.returncode, done.stdout.decode().splitlines()


def pipelines(source: str, amount: str, quantity: str) -> tuple[str, str]:
    yaml_text = (
        f"pipeline: y\nsource: {{topic: {source}, format: avro, key: user}}\n"
        f'steps:\n  - filter: "{amount} > 0"\nsink: {{topic: out-y}}\n'
    )
    sql_text = (
        f"CREATE STREAM pay WITH (KAFKA_TOPIC = '{source}', VALUE_FORMAT = 'AVRO');\n"
        "\n"
        "CREATE STREAM big WITH (KAFKA_TOPIC = 'out-big') AS\n"
        "SELECT id, amount FROM pay\n"
        f"WHERE {quantity} > 1;\n"
    )
    return yaml_text, sql_text


async def test_columns_come_from_the_registry(
    tansu: EmbeddedBroker, schema_registry: ApicurioRegistry, make_worker: Any
) -> None:
    source = f"src-{unique('cols')}"
    client = SchemaRegistryClient({"url": schema_registry.url})
    AvroSerializer(client, json.dumps(PAYMENT_V1))(payments(1, 0)[0], context(source))
    schema_id = client.get_latest_version(f"{source}-value").schema_id
    extra = f"schema_registry: {{url: '{schema_registry.url}'}}\n"

    # the right columns: checked against the registry, so the run-time warning is gone
    good_yaml, good_sql = pipelines(source, "amount", "qty")
    good = make_worker({"y": good_yaml}, broker_url=tansu.url, extra=extra, start=False)
    (good.config / "pipelines" / "s.sql").write_text(good_sql)
    code, lines = check(good.config, "--registry")
    assert code == 0, lines
    assert not any(RUN_TIME_WARNING in line for line in lines)
    code, lines = check(good.config)  # offline: the columns cannot be known
    assert code == 0 and sum(RUN_TIME_WARNING in line for line in lines) == 2

    # a misspelt column in each: file, line, column, subject/version and the fields
    bad_yaml, bad_sql = pipelines(source, "amout", "qtty")
    bad = make_worker({"y": bad_yaml}, broker_url=tansu.url, extra=extra, start=False)
    (bad.config / "pipelines" / "s.sql").write_text(bad_sql)
    code, lines = check(bad.config, "--registry")
    assert code == 1
    fields = "has id, user, amount, qty, ts"
    where = f"subject {source}-value version 1 (schema id {schema_id})"
    yaml_file, sql_file = bad.config / "pipelines" / "y.yaml", bad.config / "pipelines" / "s.sql"
    (yaml_line,) = [line for line in lines if line.startswith(f"{yaml_file}:4: steps[0].filter")]
    assert "unknown column 'amout'" in yaml_line and "did you mean 'amount'" in yaml_line
    assert where in yaml_line and fields in yaml_line
    (sql_line,) = [line for line in lines if line.startswith(f"{sql_file}:5: ")]
    assert "unknown column 'qtty'" in sql_line and where in sql_line and fields in sql_line

    # the worker at start: the same lines, exit 1, no traceback
    bad.start()
    assert bad.process.wait(90) == 1
    output = bad.output()
    assert "Traceback" not in output
    found = re.findall(r"unknown column '(\w+)' of source topic", output)
    assert sorted(set(found)) == ["amout", "qtty"]
    assert f"{yaml_file}:4: steps[0].filter" in output
