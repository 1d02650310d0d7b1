"""`sluice bench windows`: a windowed pipeline in replay against DuckDB's GROUP BY.

Both read the same JSON Lines file of generated payments and compute per-user 1-minute
tumbling windows with count, sum, avg, max, p95 and distinct merchants. DuckDB is the
batch limit (columnar, vectorized, all cores); the ratio is sluice's time over DuckDB's.
The results are also compared: counts, sums and maxima exactly, p95 within 1%
(sluice's sketch) and distinct counts exactly (under 1,000 per window).
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

WINDOW_PIPELINE = """
pipeline: bench-windows
source: {topic: payments, timestamp: ts}
steps:
  - window:
      type: tumbling
      size: 1m
      grace: 10s            # the generator sends 3% of events up to 5 s late
      key: user_id
      aggregates:
        n: count()
        total: sum(amount)
        mean: avg(amount)
        biggest: max(amount)
        p95: percentile(amount, 0.95)
        merchants: count_distinct(merchant)
sink: {topic: windows}
"""

DUCKDB_QUERY = """
SELECT user_id,
       time_bucket(INTERVAL 1 MINUTE, ts::TIMESTAMPTZ) AS window_start,
       count(*) AS n, sum(amount) AS total, avg(amount) AS mean, max(amount) AS biggest,
       quantile_disc(amount, 0.95) AS p95, count(DISTINCT merchant) AS merchants
FROM read_json('{path}', format='newline_delimited',
               columns={{user_id: 'VARCHAR', ts: 'VARCHAR', amount: 'DOUBLE', merchant: 'VARCHAR'}})
GROUP BY ALL
"""


def bench_windows(
    events: int = 200_000, runs: int = 3, results_dir: Path | None = None
) -> dict[str, Any]:
    import duckdb

    spec = PipelineSpec.model_validate(yaml.safe_load(WINDOW_PIPELINE))
    with tempfile.TemporaryDirectory(prefix="sluice-bench-") as tmp:
        folder = Path(tmp)
        source = folder / "payments.jsonl"
        write_lines(source, payments(events, seed=13, malformed_ratio=0))
        sluice_best = duck_best = float("inf")
        for _ in range(runs):
            began = time.perf_counter()
            asyncio.run(replay(spec, str(source), folder / "out"))
            sluice_best = min(sluice_best, time.perf_counter() - began)
        rows: list[Any] = []
        for _ in range(runs):
            began = time.perf_counter()
            connection = duckdb.connect()
            connection.execute("SET TimeZone = 'UTC'")
            rows = connection.execute(DUCKDB_QUERY.format(path=source)).fetchall()
            connection.close()
            duck_best = min(duck_best, time.perf_counter() - began)
        ours = [
            orjson.loads(x) for x in (folder / "out" / "windows.jsonl").read_bytes().splitlines()
        ]
    mismatches = _compare(ours, rows)
    result = {
        "benchmark": "windows",
        "pipeline": "tumbling 1m per user: count, sum, avg, max, p95, count_distinct",
        "events": events,
        "windows": len(ours),
        "sluice_seconds": round(sluice_best, 3),
        "duckdb_seconds": round(duck_best, 3),
        "sluice_events_per_second": round(events / sluice_best),
        "ratio_duckdb_time_to_sluice_time": round(duck_best / sluice_best, 3),
        "mismatching_windows": mismatches,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if results_dir is not None:
        save_result(results_dir, "windows", result)
    return result


def _compare(ours: list[dict[str, Any]], rows: list[Any]) -> int:
    theirs = {}
    for user, start, n, total, mean, biggest, p95, merchants in rows:
        key = (user, start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"))
        theirs[key] = (n, total, mean, biggest, p95, merchants)
    bad = 0 if len(ours) == len(theirs) else abs(len(ours) - len(theirs))
    for record in ours:
        want = theirs.get((record["user_id"], record["window_start"]))
        if want is None:
            bad += 1
            continue
        n, total, mean, biggest, p95, merchants = want
        same = (
            record["n"] == n
            and abs(record["total"] - total) <= 1e-6 * max(1.0, abs(total))
            and record["biggest"] == biggest
            and record["merchants"] == merchants
            and abs(record["p95"] - p95) <= 0.01 * abs(p95) + 1e-9
        )
        bad += 0 if same else 1
    return bad
