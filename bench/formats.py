"""Avro against JSON on the decode path, in process (no broker, no registry): events/s of
a filter pass-through pipeline fed the same ~200-byte payments as JSON bytes (the pipeline's
own decoder) or as Confluent wire-format Avro (streams.formats: one fastavro reader per
schema id, a batch at a time, values converted to plain records). The ratio is what an Avro
source costs a worker; `python -m bench.formats [N]`.
"""

from __future__ import annotations

import asyncio
import io
import sys
import time
from typing import Any

import orjson
from fastavro import parse_schema, schemaless_writer

from models.pipeline_spec import PipelineSpec
from streams.core.records import Event
from streams.formats.avro import AvroReader
from streams.formats.codec import decode_batch
from streams.formats.wire import frame
from streams.steps.pipeline import Pipeline

SCHEMA = {
    "type": "record",
    "name": "Payment",
    "fields": [
        {"name": "payment_id", "type": "string"},
        {"name": "user_id", "type": "string"},
        {"name": "merchant", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "currency", "type": "string"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}
BATCH = 1000


def _payments(count: int) -> list[dict[str, Any]]:
    return [
        {
            "payment_id": f"pay-{n:08d}",
            "user_id": f"user-{n % 1000:04d}",
            "merchant": f"merchant-{n % 50:02d}",
            "amount": (n % 997) / 3,
            "currency": ("EUR", "USD", "GBP")[n % 3],
            "ts": 1_764_064_800_000 + n,
        }
        for n in range(count)
    ]


def _spec() -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "pipeline": "bench-formats",
            "source": {"topic": "payments", "timestamp": "ts"},
            "steps": [{"filter": "amount > 0"}],
            "sink": {"topic": "out"},
        }
    )


async def _run(raws: list[bytes], avro: AvroReader | None) -> float:
    pipeline = Pipeline(_spec(), max_event_time_skew_ms=10**13)
    began = time.perf_counter()
    for start in range(0, len(raws), BATCH):
        chunk = raws[start : start + BATCH]
        events = [Event(None, raw=raw) for raw in chunk]
        if avro is not None:
            for event, value in zip(events, decode_batch(chunk, {1: avro}, "avro"), strict=True):
                event.value = value
        await pipeline.process(events)
    return len(raws) / (time.perf_counter() - began)


def measure(count: int = 200_000) -> dict[str, float]:
    records = _payments(count)
    json_raws = [orjson.dumps({**r, "ts": r["ts"] / 1000}) for r in records]
    parsed = parse_schema(SCHEMA)
    avro_raws = []
    for record in records:
        out = io.BytesIO()
        schemaless_writer(out, parsed, record)
        avro_raws.append(frame(1, out.getvalue()))
    reader = AvroReader(orjson.dumps(SCHEMA).decode())
    json_rate = asyncio.run(_run(json_raws, None))
    avro_rate = asyncio.run(_run(avro_raws, reader))
    return {
        "events": count,
        "json_events_per_s": round(json_rate),
        "avro_events_per_s": round(avro_rate),
        "avro_over_json": round(avro_rate / json_rate, 3),
        "json_bytes": sum(map(len, json_raws)) / count,
        "avro_bytes": sum(map(len, avro_raws)) / count,
    }


if __name__ == "__main__":
    print(orjson.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)).decode())
