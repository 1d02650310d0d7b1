"""`CREATE TABLE … AS SELECT … GROUP BY … EMIT CHANGES` without WINDOW: the `aggregate` step,
its results against DuckDB's GROUP BY (and HAVING) over the same records."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import duckdb
import orjson

from streams.sql.compiler import compile_sql
from tests.unit.sql.conftest import compiled, replay_sql

ORDERS = """\
CREATE STREAM orders (
  id VARCHAR NOT NULL, usr VARCHAR NOT NULL, amount DOUBLE NOT NULL, ts BIGINT NOT NULL
) WITH (KAFKA_TOPIC = 'orders', TIMESTAMP = 'ts', KEY = 'usr');
"""
TOTALS = """\
CREATE TABLE totals WITH (KAFKA_TOPIC = 'totals') AS
SELECT usr, COUNT(*) AS n, SUM(amount) AS total, MAX(amount) AS biggest,
       COUNT(DISTINCT id) AS ids
FROM orders
GROUP BY usr
HAVING COUNT(*) >= 2
EMIT CHANGES;
"""


def test_group_by_without_window_compiles_to_an_aggregate_step() -> None:
    (pipeline,) = compiled(ORDERS + TOTALS).pipelines
    steps = pipeline.document["steps"]
    assert steps[1] == {
        "aggregate": {
            "key": "usr",
            "emit": "updates",
            "aggregates": {
                "n": "count()",
                "total": "sum(amount)",
                "biggest": "max(amount)",
                "ids": "count_distinct(id)",
            },
        }
    }
    assert pipeline.document["source"]["key"] == "usr"


def test_emit_final_without_window_is_an_error_naming_the_line() -> None:
    program = compile_sql(ORDERS + TOTALS.replace("EMIT CHANGES", "EMIT FINAL"), "t.sql")
    (error,) = program.errors
    assert "EMIT FINAL needs a WINDOW" in error.describe()
    assert error.describe().startswith("t.sql:10:")


def test_latest_totals_equal_duckdb_group_by_having(tmp_path: Path) -> None:
    rng = random.Random(5)
    rows = [
        {
            "id": f"o{rng.randrange(40)}",
            "usr": rng.choice(["ann", "bob", "cy", "dee", "eve"]),
            "amount": round(rng.uniform(1, 100), 2),
            "ts": 1_795_600_000_000 + i * 1000,
        }
        for i in range(300)
    ]
    topics, _ = asyncio.run(
        replay_sql(ORDERS + TOTALS, [orjson.dumps(r) for r in rows], tmp_path, batch_size=17)
    )
    latest = {r["usr"]: r for r in topics["totals"]}
    duck = duckdb.connect(config={"threads": 1})
    duck.execute("CREATE TABLE o (id TEXT, usr TEXT, amount DOUBLE)")
    duck.executemany(
        "INSERT INTO o VALUES (?, ?, ?)", [(r["id"], r["usr"], r["amount"]) for r in rows]
    )
    expected = {
        usr: {"usr": usr, "n": n, "total": total, "biggest": biggest, "ids": ids}
        for usr, n, total, biggest, ids in duck.execute(
            "SELECT usr, COUNT(*), SUM(amount), MAX(amount), COUNT(DISTINCT id) FROM o "
            "GROUP BY usr HAVING COUNT(*) >= 2"
        ).fetchall()
    }
    assert latest.keys() == expected.keys()
    for usr, record in latest.items():
        assert record["total"] == __import__("pytest").approx(expected[usr].pop("total"))
        record.pop("total")
        assert record == {k: v for k, v in expected[usr].items() if k != "total"}
    # HAVING: each update passes only once the key has two records
    assert len(topics["totals"]) == len(rows) - len(expected)


def test_an_aggregate_over_a_column_the_stream_lacks_names_the_line() -> None:
    program = compile_sql(ORDERS + TOTALS.replace("SUM(amount)", "SUM(amout)"), "t.sql")
    (error,) = program.errors
    assert error.describe().startswith("t.sql:5:")
    assert "unknown column 'amout'" in error.describe()
