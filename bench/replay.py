"""Benchmarks: sluice against the practical limit, measured in the same run.

`replay`: events/s of `sluice replay` over a validate + filter + map pipeline, and of a
hand-written Python loop doing the same work over orjson-decoded dicts (decode, check
types, filter, project, encode, write). The ratio is what sluice's generality costs;
seconds on one machine mean little, the ratio travels.
"""

from __future__ import annotations

import asyncio
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml

from bench.support import save_result
from models.pipeline_spec import PipelineSpec
from streams.offline import replay
from streams.offline.demo_data import payments, write_lines

BENCH_PIPELINE = """
pipeline: bench-replay
source: {topic: payments, key: user_id}
steps:
  - validate:
      schema: {payment_id: str, user_id: str, merchant: str, amount: float, currency: str}
  - filter: "amount > 0 AND currency IN ('EUR', 'USD', 'GBP')"
  - map:
      payment_id: payment_id
      user_id: user_id
      merchant: merchant
      eur: "CASE WHEN currency = 'USD' THEN amount * 0.92 ELSE amount END"
sink: {topic: bench-out}
dlq: {topic: bench-dlq}
"""

_SCHEMA = {"payment_id": str, "user_id": str, "merchant": str, "amount": float, "currency": str}
_KEEP = frozenset({"EUR", "USD", "GBP"})


def reference_loop(source: Path, output: Path) -> tuple[int, int]:
    """The same work as BENCH_PIPELINE, hand-written: the practical limit for Python."""
    loads, dumps = orjson.loads, orjson.dumps
    kept = bad = 0
    with (
        source.open("rb") as lines,
        output.open("wb") as out,
        (output.with_suffix(".dlq")).open("wb") as dead,
    ):
        batch: list[bytes] = []
        for line in lines:
            try:
                record = loads(line)
                for name, kind in _SCHEMA.items():
                    value = record[name]
                    if value.__class__ is not kind:
                        if kind is float and value.__class__ is int:
                            record[name] = float(value)
                        else:
                            raise TypeError(name)
            except Exception:
                bad += 1
                dead.write(line)
                continue
            amount = record["amount"]
            if amount > 0 and record["currency"] in _KEEP:
                batch.append(
                    dumps(
                        {
                            "payment_id": record["payment_id"],
                            "user_id": record["user_id"],
                            "merchant": record["merchant"],
                            "eur": amount * 0.92 if record["currency"] == "USD" else amount,
                        }
                    )
                )
                kept += 1
                if len(batch) >= 1000:
                    out.write(b"\n".join(batch) + b"\n")
                    batch = []
        if batch:
            out.write(b"\n".join(batch) + b"\n")
    return kept, bad


def _best_of(runs: int, work: Any) -> float:
    best = float("inf")
    for _ in range(runs):
        began = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - began)
    return best


def bench_replay(
    events: int = 200_000, runs: int = 3, results_dir: Path | None = None
) -> dict[str, Any]:
    """Run the replay benchmark; returns (and saves, with `results_dir`) its figures."""
    spec = PipelineSpec.model_validate(yaml.safe_load(BENCH_PIPELINE))
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
        folder = Path(tmp)
        source = folder / "payments.jsonl"
        write_lines(source, payments(events, seed=11))
        summary_holder: list[Any] = []

        def run_sluice() -> None:
            summary_holder.append(asyncio.run(replay(spec, str(source), folder / "out")))

        def run_reference() -> None:
            reference_loop(source, folder / "reference.jsonl")

        sluice_seconds = _best_of(runs, run_sluice)
        reference_seconds = _best_of(runs, run_reference)
        summary = summary_holder[-1]
        kept, bad = reference_loop(source, folder / "reference.jsonl")
    result = {
        "benchmark": "replay",
        "pipeline": "validate(schema) + filter + map",
        "events": events,
        "runs": runs,
        "sluice_events_per_second": round(events / sluice_seconds),
        "reference_events_per_second": round(events / reference_seconds),
        "ratio": round(reference_seconds / sluice_seconds, 3),
        "sluice_out": summary.only.outputs.get("bench-out", 0),
        "reference_out": kept,
        "sluice_dead_letters": summary.only.dead_letters,
        "reference_rejected": bad,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if results_dir is not None:
        save_result(results_dir, "replay", result)
    return result
