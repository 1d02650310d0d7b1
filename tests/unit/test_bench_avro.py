"""The Avro variant of `sluice bench peers`, pure parts: the wire-format input decodes back
to the JSON records, the Avro/JSON ratios pair each contender with itself, the table shows
both formats and a failed variant."""

from __future__ import annotations

import io
from typing import Any

import orjson
from fastavro import parse_schema, schemaless_reader

from bench.avro_payments import PAYMENT_SCHEMA, encode_values, format_ratios
from bench.peers import Events, Variant, describe


def summary(rate: int | None, cpu: float | None = None) -> dict[str, Any]:
    if not rate:
        return {"failed": "boom"}
    return {"median_events_per_second": rate, **({"median_cpu_us_per_event": cpu} if cpu else {})}


def test_encoded_values_are_the_json_records_in_the_wire_format() -> None:
    events = Events.generate(50, seed=3)
    encoded = encode_values([v for _, v in events.records], 42)
    parsed = parse_schema(PAYMENT_SCHEMA)
    for (_, json_value), raw in zip(events.records, encoded, strict=True):
        assert raw[:5] == b"\x00" + (42).to_bytes(4, "big")
        assert schemaless_reader(io.BytesIO(raw[5:]), parsed, None) == orjson.loads(json_value)
    assert sum(map(len, encoded)) < sum(len(v) for _, v in events.records)


def test_avro_over_json_pairs_each_contender_measured_in_both() -> None:
    found = {
        "catch-up": {
            "jobs": {"filter": {"sluice": summary(40_000, 10.0), "quix": summary(20_000)}}
        },
        "catch-up avro": {
            "jobs": {"filter": {"sluice": summary(30_000, 25.0), "quix": summary(None)}},
        },
        "live": {"jobs": {"filter": {"sluice": summary(10_000)}}},  # no Avro run: no ratio
    }
    assert format_ratios(found, ["json", "avro"]) == {
        "catch-up: filter: sluice avro/json": 0.75,
        "catch-up: filter: sluice cpu avro/json": 2.5,
    }
    assert format_ratios(found, ["avro"]) == {}


def test_the_table_shows_both_formats_and_a_failed_avro_variant() -> None:
    jobs = {"filter": {"sluice": summary(40_000), "quix": summary(20_000)}}
    result = {
        "avro_failed": "RegistryStartError: no java",
        "brokers": {
            "tansu": {
                "catch-up": {"jobs": jobs, "ratios": {"filter: sluice/quix": 2.0}},
                "catch-up avro": {"jobs": jobs, "ratios": {"filter: sluice/quix": 2.0}},
                "avro/json": {"catch-up: filter: sluice avro/json": 1.0},
            }
        },
    }
    lines = describe(result).splitlines()
    assert lines[0] == "avro: FAILED: RegistryStartError: no java"
    assert "tansu, catch-up avro (events/s, median of runs):" in lines
    assert lines[-2:] == [
        "tansu, Avro over JSON (events/s of each contender):",
        "  catch-up: filter: sluice avro/json = 1.00",
    ]


def test_the_avro_variant_runs_the_reference_loop_sluice_and_quix() -> None:
    avro, json_variant = Variant("avro", "http://registry"), Variant()
    assert avro.contenders("filter", transactions=True) == ["raw-batch", "quix", "sluice"]
    assert "sluice-eos" in json_variant.contenders("filter", transactions=True)
    assert (avro.label, json_variant.label) == (" avro", "")
