"""The Avro side of `sluice bench peers`: the schemas of the demo payments and of each
job's results, the wire-format encoding of the input, and the Avro/JSON ratios.

The input schema holds the demo payment as it is (`ts` stays ISO-8601 text, not a
`timestamp-millis`), so every contender's steps see the very records of the JSON variant
and the only difference measured is the format. Pure: no broker, no registry client
(the harness passes the registered schema id).
"""

from __future__ import annotations

import io
from typing import Any

import orjson
from fastavro import parse_schema, schemaless_writer

from streams.formats.wire import frame

PAYMENT_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Payment",
    "namespace": "bench",
    "fields": [
        {"name": "payment_id", "type": "string"},
        {"name": "user_id", "type": "string"},
        {"name": "merchant", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "currency", "type": "string"},
        {"name": "country", "type": "string"},
        {
            "name": "card",
            "type": {
                "type": "record",
                "name": "Card",
                "fields": [
                    {"name": "number", "type": "string"},
                    {"name": "scheme", "type": "string"},
                ],
            },
        },
        {"name": "ts", "type": "string"},
    ],
}

# Quix's running count's result: the payment with its key's count
COUNT_SCHEMA: dict[str, Any] = {
    **PAYMENT_SCHEMA,
    "name": "CountedPayment",
    "fields": [*PAYMENT_SCHEMA["fields"], {"name": "n", "type": "long"}],
}

# sluice's `aggregate` step's result: the count alone (no key fields without `key:`)
SLUICE_COUNT_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Count",
    "namespace": "bench",
    "fields": [{"name": "n", "type": "long"}],
}

# Quix Streams' window result: {"start", "end"} in epoch ms and the aggregates
QUIX_WINDOW_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "PaymentWindow",
    "namespace": "bench",
    "fields": [
        {"name": "start", "type": "long"},
        {"name": "end", "type": "long"},
        {"name": "n", "type": "long"},
        {"name": "total", "type": "double"},
    ],
}

RESULT_SCHEMAS = {"filter": PAYMENT_SCHEMA, "count": COUNT_SCHEMA, "window": QUIX_WINDOW_SCHEMA}


def schema_text(schema: dict[str, Any]) -> str:
    return orjson.dumps(schema).decode()


def encode_values(values: list[bytes], schema_id: int) -> list[bytes]:
    """JSON payment values as Confluent wire-format Avro under `schema_id`."""
    parsed = parse_schema(PAYMENT_SCHEMA)
    encoded = []
    for value in values:
        out = io.BytesIO()
        schemaless_writer(out, parsed, orjson.loads(value))
        encoded.append(frame(schema_id, out.getvalue()))
    return encoded


def format_ratios(found: dict[str, Any], formats: list[str]) -> dict[str, Any]:
    """Per regime, job and contender measured in both formats: its Avro rate over its JSON
    rate (`catch-up: filter: sluice avro/json`) and its Avro CPU per event over its JSON
    one (`… cpu avro/json`); the Avro variant's sluice/quix is among that variant's own
    ratios. `found` maps labels (`catch-up`,
    `catch-up avro`) to {"jobs": {job: {contender: summary}}}."""
    ratios: dict[str, Any] = {}
    if "json" not in formats or "avro" not in formats:
        return ratios
    for label, measured in found.items():
        avro = found.get(f"{label} avro")
        if label.endswith(" avro") or avro is None:
            continue
        for job, contenders in measured["jobs"].items():
            for name, summary in avro["jobs"].get(job, {}).items():
                json_summary = contenders.get(name, {})
                theirs = json_summary.get("median_events_per_second")
                ours = summary.get("median_events_per_second")
                if theirs and ours:
                    ratios[f"{label}: {job}: {name} avro/json"] = round(ours / theirs, 3)
                # CPU per event moves much less than events/s on a shared machine
                theirs = json_summary.get("median_cpu_us_per_event")
                ours = summary.get("median_cpu_us_per_event")
                if theirs and ours:
                    ratios[f"{label}: {job}: {name} cpu avro/json"] = round(ours / theirs, 3)
    return ratios
