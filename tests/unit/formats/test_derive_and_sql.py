"""The Avro schema derived for a pipeline's results, and VALUE_FORMAT in SQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema

from models.pipeline_spec import PipelineSpec
from streams.formats.avro import AvroWriter
from streams.formats.derive import ANY_SCALAR, DeriveError, derive_alert_schema, derive_schema
from streams.sql.compiler import load_sql_program
from streams.steps.pipeline import Pipeline

SOURCE = {
    "type": "record",
    "name": "Payment",
    "fields": [
        {"name": "user", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "qty", "type": "long"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "blob", "type": ["null", "bytes"]},
    ],
}


def spec(steps: list[dict[str, Any]]) -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "pipeline": "p",
            "source": {"topic": "in", "format": "avro"},
            "steps": steps,
            "sink": {"topic": "out-1", "format": "avro"},
        }
    )


def fields_of(schema: dict[str, Any]) -> dict[str, Any]:
    parse_schema(schema)  # a schema fastavro accepts
    return {f["name"]: f["type"] for f in schema["fields"]}


def test_a_filter_keeps_the_source_fields_as_steps_see_them() -> None:
    schema = derive_schema(spec([{"filter": "amount > 0"}]), "out-1", SOURCE)
    assert schema["name"] == "p_out_1"
    assert fields_of(schema) == {
        "user": ["null", "string"],
        "amount": ["null", "double"],
        "qty": ["null", "long"],
        "ts": ["null", "string"],  # ISO-8601 text in records
        "blob": ["null", "string"],  # base64 text
    }
    assert all(f["default"] is None for f in schema["fields"])


def test_a_map_types_bare_fields_and_unions_the_rest() -> None:
    schema = derive_schema(spec([{"map": {"who": "user", "gross": "amount * qty"}}]), "o", SOURCE)
    assert fields_of(schema) == {"who": ["null", "string"], "gross": ANY_SCALAR}


def test_window_columns() -> None:
    window = {
        "window": {
            "type": "tumbling",
            "size": "1m",
            "key": "user",
            "aggregates": {
                "n": "count()",
                "total": "sum(qty)",
                "mean": "avg(amount)",
                "top": "max(amount)",
                "p": "percentile(amount, 0.5)",
            },
        }
    }
    assert fields_of(derive_schema(spec([window]), "o", SOURCE)) == {
        "user": ["null", "string"],
        "window_start": ["null", "string"],
        "window_end": ["null", "string"],
        "n": ["null", "long"],
        "total": ["null", "long"],
        "mean": ["null", "double"],
        "top": ["null", "double"],
        "p": ["null", "double"],
    }


def test_inline_validation_types_fields_without_a_source_schema() -> None:
    steps = [{"validate": {"schema": {"a": "int", "b": "str?", "c": "list"}}}]
    assert fields_of(derive_schema(spec(steps), "o", None)) == {
        "a": ["null", "long"],
        "b": ["null", "string"],
    }


def test_what_cannot_be_derived_asks_for_a_schema_file() -> None:
    with pytest.raises(DeriveError, match=r"schema: FILE\.avsc"):
        derive_schema(spec([{"filter": "true"}]), "o", None)
    component = {"component": {"class": "tests.fixtures.components:CountPerKey"}}
    with pytest.raises(DeriveError, match="component"):
        derive_schema(spec([component]), "o", SOURCE)


def test_outputs_are_json_or_avro_and_schema_files_are_checked(tmp_path: Path) -> None:
    base = {"pipeline": "p", "source": {"topic": "in"}}
    with pytest.raises(ValueError, match="read-only format"):
        PipelineSpec.model_validate({**base, "sink": {"topic": "o", "format": "protobuf"}})
    with pytest.raises(ValueError, match="cannot read"):
        PipelineSpec.model_validate(
            {**base, "sink": {"topic": "o", "format": "avro", "schema": "nope.avsc"}},
            context={"base": str(tmp_path)},
        )
    (tmp_path / "o.avsc").write_text('{"type": "record", "name": "O", "fields": []}')
    with pytest.raises(ValueError, match="for 'format: avro'"):
        PipelineSpec.model_validate(
            {**base, "sink": {"topic": "o", "schema": "o.avsc"}}, context={"base": str(tmp_path)}
        )
    found = PipelineSpec.model_validate(
        {
            **base,
            "sink": {"route": [{"when": "true", "to": "a", "format": "avro"}, {"else": "b"}]},
            "steps": [{"alert": {"name": "x", "when": "true", "format": "avro"}}],
        }
    )
    assert found.output_formats() == {"a": ("avro", None), "p-alerts": ("avro", None)}


def test_value_format_in_sql(tmp_path: Path) -> None:
    (tmp_path / "f.sql").write_text(
        "CREATE STREAM pay WITH (KAFKA_TOPIC = 'pay', VALUE_FORMAT = 'PROTOBUF');\n"
        "CREATE STREAM big WITH (KAFKA_TOPIC = 'big', VALUE_FORMAT = 'avro') AS\n"
        "SELECT id, amount FROM pay WHERE amount > 1;\n"
        "CREATE STREAM bigger AS SELECT * FROM big WHERE amount > 2;\n"
    )
    specs = {s.pipeline: s for s in load_sql_program(tmp_path / "f.sql").specs()}
    assert specs["big"].source.format == "protobuf"
    assert specs["big"].sink.format == "avro"
    assert specs["bigger"].source.format == "avro"  # reads what `big` writes
    assert specs["bigger"].sink.format == "json"


async def test_alert_records_fit_the_derived_alert_schema() -> None:
    """The alert step's own records (firing, then resolved) encode with the schema."""
    alerting = spec(
        [
            {"map": {"user": "user", "amount": "amount"}},
            {"alert": {"name": "big", "when": "amount > 10", "key": "user", "format": "avro"}},
        ]
    )
    schema = derive_alert_schema(alerting, "p-alerts", SOURCE)
    assert fields_of(schema)["user"] == ["null", "string"]
    writer = AvroWriter(schema, 1)
    result = await Pipeline(alerting).process_values(
        [{"user": "a", "amount": 20.0}, {"user": "a", "amount": 1.0}]
    )
    alerts = [e.value for e in result.outputs["p-alerts"]]
    assert [a["status"] for a in alerts] == ["firing", "resolved"]
    for alert in alerts:
        assert writer.encode(alert)[0] == 0
