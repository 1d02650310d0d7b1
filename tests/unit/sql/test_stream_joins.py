"""`FROM a [LEFT | FULL OUTER] JOIN b WITHIN d [GRACE PERIOD d] ON …`: the join step it
compiles to, its errors (naming the line), and its replay against DuckDB's interval join."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import duckdb
import orjson
import pytest

from streams.offline import replay
from streams.sql.compiler import compile_sql
from tests.unit.sql.conftest import compiled, read_jsonl

STREAMS = """\
CREATE STREAM orders (
  order_id VARCHAR NOT NULL, amount DOUBLE NOT NULL, ts BIGINT NOT NULL
) WITH (KAFKA_TOPIC = 'orders-in', TIMESTAMP = 'ts');
CREATE STREAM payments (
  order_id VARCHAR NOT NULL, method VARCHAR, paid DOUBLE NOT NULL, n INT, at BIGINT NOT NULL
) WITH (KAFKA_TOPIC = 'payments-in', TIMESTAMP = 'at');
"""
JOIN = """\
CREATE STREAM orders_paid WITH (KAFKA_TOPIC = 'orders-paid') AS
SELECT o.order_id, o.amount, p.method, p.paid
FROM orders o {kind} payments p WITHIN 10 SECONDS GRACE PERIOD 1 HOURS
ON o.order_id = p.order_id;
"""


def test_join_within_compiles_to_a_join_step_keyed_by_the_on_columns() -> None:
    (pipeline,) = compiled(STREAMS + JOIN.format(kind="LEFT JOIN")).pipelines
    document = pipeline.document
    assert document["source"] == {"topic": "orders-in", "key": "order_id", "timestamp": "ts"}
    assert document["steps"][1] == {
        "join": {
            "stream": "payments-in",
            "key": "order_id",
            "other_key": "order_id",
            "within": "10s",
            "grace": "1h",
            "type": "left",
            "timestamp": "at",
        }
    }
    assert document["steps"][2] == {
        "map": {
            "order_id": "order_id",
            "amount": "amount",
            "method": 'other."method"',
            "paid": 'other."paid"',
        }
    }


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (
            "CREATE STREAM x AS SELECT o.order_id FROM orders o\n"
            "JOIN payments p ON o.order_id = p.order_id;",
            8,
            "a join of two streams needs WITHIN",
        ),
        (
            "CREATE STREAM x AS SELECT o.order_id FROM orders o\n"
            "JOIN payments p WITHIN 1 MINUTE ON o.order_id = p.n;",
            8,
            "keys of different types (str and int)",
        ),
        (
            "CREATE STREAM x AS SELECT order_id FROM orders o\n"
            "JOIN payments p WITHIN 1 MINUTE ON o.order_id = p.order_id;",
            7,
            "'order_id' is a column of both 'orders' and 'payments': qualify it",
        ),
        (
            "CREATE STREAM x AS SELECT o.order_id, p.nope AS y FROM orders o\n"
            "JOIN payments p WITHIN 1 MINUTE ON o.order_id = p.order_id;",
            7,
            "unknown column 'nope'",
        ),
    ],
)
def test_join_errors_name_the_line(text: str, line: int, reason: str) -> None:
    program = compile_sql(STREAMS + text, "j.sql")
    described = [e.describe() for e in program.errors]
    assert any(d.startswith(f"j.sql:{line}:") and reason in d for d in described), described


@pytest.mark.parametrize(
    ("kind", "sql_join"),
    [("JOIN", "JOIN"), ("LEFT JOIN", "LEFT JOIN"), ("FULL OUTER JOIN", "FULL OUTER JOIN")],
)
def test_replay_equals_duckdb_interval_join(tmp_path: Path, kind: str, sql_join: str) -> None:
    rng = random.Random(len(kind))
    base = 1_795_600_000_000
    orders = [
        {"order_id": f"o{rng.randrange(30)}", "amount": float(i), "ts": base + i * 700}
        for i in range(120)
    ]
    payments = [
        {
            "order_id": f"o{rng.randrange(30)}",
            "method": rng.choice(["card", None]),
            "paid": float(i),
            "at": base + i * 650 + rng.randrange(-3000, 3000),
        }
        for i in range(120)
    ]
    payments.sort(key=lambda r: int(r["at"] or 0))
    files = {}
    for name, lines in (("orders-in", orders), ("payments-in", payments)):
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_bytes(b"\n".join(orjson.dumps(r) for r in lines) + b"\n")
    (pipeline,) = compiled(STREAMS + JOIN.format(kind=kind)).pipelines
    asyncio.run(
        replay(
            pipeline.spec,
            {k: str(v) for k, v in files.items()},
            tmp_path / "out",
            batch_size=7,
            max_event_time_skew_ms=10**13,
        )
    )
    got = Counter(
        (r["order_id"], r["amount"], r["method"], r["paid"])
        for r in read_jsonl(tmp_path / "out" / "orders-paid.jsonl")
    )
    duck = duckdb.connect(config={"threads": 1})
    duck.execute("CREATE TABLE o (order_id TEXT, amount DOUBLE, ts BIGINT)")
    duck.execute('CREATE TABLE p (order_id TEXT, method TEXT, paid DOUBLE, "at" BIGINT)')
    duck.executemany("INSERT INTO o VALUES (?, ?, ?)", [tuple(r.values()) for r in orders])
    duck.executemany("INSERT INTO p VALUES (?, ?, ?, ?)", [tuple(r.values()) for r in payments])
    rows = duck.execute(
        f"SELECT o.order_id, o.amount, p.method, p.paid FROM o {sql_join} p "
        'ON o.order_id = p.order_id AND abs(o.ts - p."at") <= 10000'
    ).fetchall()
    # a payment joining no order (FULL OUTER) has no FROM-stream columns: the select list
    # reads o.order_id, null there as in DuckDB
    assert got == Counter(rows)


def test_explain_shows_the_join_and_the_running_aggregate(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from streams.cli import main

    sql = tmp_path / "j.sql"
    sql.write_text(
        STREAMS
        + JOIN.format(kind="LEFT JOIN")
        + "CREATE TABLE paid_per_order AS SELECT order_id, COUNT(*) AS n FROM orders_paid "
        "GROUP BY order_id EMIT CHANGES;\n"
    )
    result = CliRunner().invoke(main, ["explain", str(sql)])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "- join:\n    stream: payments-in\n" in text and "    type: left\n" in text
    assert "- aggregate:\n    key: order_id\n    emit: updates\n" in text
