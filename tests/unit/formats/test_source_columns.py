"""The columns a pipeline reads from a registry-format source (streams.formats.columns), the
field list of each schema type, and the SQL/YAML lines an unknown column is reported at
(streams.runtime.source_columns.locator) — pure, no registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from models.pipeline_spec import PipelineSpec
from streams.config.loader import load_config
from streams.formats.columns import (
    ColumnUse,
    SchemaFieldsError,
    SourceSchema,
    schema_fields,
    source_reads,
    unknown_columns,
)
from streams.runtime.source_columns import locator

FIELDS = ("payment_id", "user_id", "amount", "currency", "ts")


def spec(steps: list[Any], **source: Any) -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "pipeline": "p",
            "source": {"topic": "payments", "format": "avro", **source},
            "tables": {"users": {"topic": "users", "key": "user_id"}},
            "steps": steps,
            "sink": {"topic": "out"},
        }
    )


def names(uses: list[ColumnUse]) -> list[tuple[str, str]]:
    return [(u.name, u.where) for u in uses]


def test_every_read_of_a_missing_field_is_found_with_its_path() -> None:
    pipeline = spec(
        [
            {"filter": "amout > 0 AND currency = 'EUR'"},
            {"dedupe": {"key": "payment_ids", "within": "1m"}},
            {
                "window": {
                    "type": "tumbling",
                    "size": "1m",
                    "key": "user",
                    "aggregates": {"total": "sum(amount)", "n": "count_distinct(merchant)"},
                }
            },
        ],
        key="user_id",
        timestamp="time",
    )
    assert names(unknown_columns(pipeline, FIELDS)) == [
        ("time", "source.timestamp"),
        ("amout", "steps[0].filter"),
        ("payment_ids", "steps[1].dedupe.key"),
        ("user", "steps[2].window.key"),
        ("merchant", "steps[2].window.aggregates.n"),
    ]


def test_a_pipeline_reading_only_schema_fields_has_none() -> None:
    pipeline = spec(
        [{"filter": "amount > 0"}, {"ratelimit": {"key": "user_id", "rate": 5}}],
        key="user_id",
        timestamp="ts",
    )
    assert unknown_columns(pipeline, FIELDS) == []
    # every read was looked at: the check is not vacuous
    assert {u.name for u, _ in source_reads(pipeline, FIELDS)} == {"user_id", "ts", "amount"}


def test_a_map_renames_the_columns_later_steps_see() -> None:
    pipeline = spec(
        [
            {"map": {"who": "user_id", "eur": "amount * 2"}},
            {"filter": "eur > 10 AND amount > 0"},  # amount is gone after the map
        ]
    )
    assert names(unknown_columns(pipeline, FIELDS)) == [("amount", "steps[1].filter")]


def test_enrich_adds_its_fields_and_shape_changing_steps_end_the_check() -> None:
    enriched = spec(
        [
            {"enrich": {"table": "users", "on": "user_id", "fields": ["tier"]}},
            {"filter": "tier = 'gold' AND colour = 'red'"},
        ]
    )
    assert names(unknown_columns(enriched, FIELDS)) == [("colour", "steps[1].filter")]
    windowed = spec(
        [
            {"window": {"type": "tumbling", "size": "1m", "aggregates": {"n": "count()"}}},
            {"filter": "n > 1"},  # the window's result, not the source's record
        ]
    )
    assert unknown_columns(windowed, FIELDS) == []


def test_route_conditions_read_the_record_the_sink_gets() -> None:
    routed = PipelineSpec.model_validate(
        {
            "pipeline": "p",
            "source": {"topic": "payments", "format": "avro"},
            "steps": [{"map": {"eur": "amount"}}],
            "sink": {"route": [{"when": "eur > 5 OR amount > 5", "to": "big"}, {"else": "rest"}]},
        }
    )
    assert names(unknown_columns(routed, FIELDS)) == [("amount", "sink.route[0].when")]


def test_declared_columns_are_not_checked_against_the_registry() -> None:
    declared = spec([{"validate": {"schema": {"amout": "float"}}}, {"filter": "amout > 0"}])
    assert unknown_columns(declared, FIELDS) == []


def test_schema_fields_of_each_schema_type() -> None:
    avro = {"type": "record", "name": "P", "fields": [{"name": "a", "type": "long"}]}
    assert schema_fields("AVRO", json.dumps(avro)) == ("a",)
    assert schema_fields("JSON", json.dumps({"properties": {"x": {}, "y": {}}})) == ("x", "y")
    proto = 'syntax = "proto3";\nmessage P { string id = 1; double amount = 2; }\n'
    assert schema_fields("PROTOBUF", proto) == ("id", "amount")
    with pytest.raises(SchemaFieldsError, match="not a record"):
        schema_fields("AVRO", '"string"')
    with pytest.raises(SchemaFieldsError, match="properties"):
        schema_fields("JSON", "{}")


def test_source_schema_names_subject_and_version() -> None:
    schema = SourceSchema("payments-value", 2, 7, FIELDS)
    assert schema.describe() == "subject payments-value version 2 (schema id 7)"


def test_the_locator_points_at_the_yaml_line_and_the_sql_mention(tmp_path: Path) -> None:
    config = tmp_path / "config"
    (config / "pipelines").mkdir(parents=True)
    (config / "sluice.yaml").write_text("brokers: ['kafka://127.0.0.1:9']\n")
    (config / "pipelines" / "y.yaml").write_text(
        "pipeline: y\nsource: {topic: payments, format: avro}\nsteps:\n"
        '  - filter: "amount > 0"\n  - filter: "amout > 1"\nsink: {topic: out}\n'
    )
    (config / "pipelines" / "s.sql").write_text(
        "CREATE STREAM pay WITH (KAFKA_TOPIC = 'pay', VALUE_FORMAT = 'AVRO');\n"
        "\n"
        "CREATE STREAM big WITH (KAFKA_TOPIC = 'big') AS\n"
        "SELECT user_id, amount FROM pay\n"
        "WHERE amout > 100;\n"
    )
    loaded = load_config(config)
    assert not loaded.errors
    locate = locator(loaded.pipeline_files, loaded.documents)
    yaml_use = unknown_columns(loaded.pipelines["y"], FIELDS)
    assert names(yaml_use) == [("amout", "steps[1].filter")]
    assert locate(loaded.pipelines["y"], yaml_use[0]) == (str(config / "pipelines/y.yaml"), 5)
    (sql_name,) = [n for n in loaded.pipelines if n != "y"]
    sql_use = unknown_columns(loaded.pipelines[sql_name], FIELDS)
    assert [u.name for u in sql_use] == ["amout"]
    assert locate(loaded.pipelines[sql_name], sql_use[0]) == (
        str(config / "pipelines/s.sql"),
        5,
    )
