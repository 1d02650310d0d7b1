"""DESIGN.md's streaming SQL, compiled and replayed, against answers computed here from
DESIGN.md's rules alone (validation, NULL handling, epoch-aligned windows, watermark and
grace, nearest-rank percentiles), without sluice's pipeline."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.unit.sql.conftest import compiled, replay_sql

DESIGN_SQL = """\
-- a source: a topic, its columns (the schema it is validated against), time and key
CREATE STREAM orders (
  order_id VARCHAR NOT NULL,
  "user"   VARCHAR NOT NULL,          -- quoted: a reserved word
  amount   DOUBLE NOT NULL,
  qty      INT NOT NULL,
  note     VARCHAR,                   -- nullable: may be missing
  ts       DOUBLE NOT NULL
) WITH (KAFKA_TOPIC = 'orders-in', TIMESTAMP = 'ts', KEY = 'user');

-- a derived stream: one pipeline (validate → filter → map → sink)
CREATE STREAM big_orders WITH (KAFKA_TOPIC = 'orders-big', DLQ_TOPIC = 'orders-dlq') AS
SELECT order_id, "user", amount * qty AS gross, UPPER(COALESCE(note, 'none')) AS note
FROM orders
WHERE amount * qty >= 500;

-- a windowed aggregation: one pipeline ending in a window step (and a filter for HAVING)
CREATE TABLE spend_per_minute WITH (KAFKA_TOPIC = 'spend-1m') AS
SELECT "user", COUNT(*) AS n, SUM(amount) AS total, PERCENTILE(amount, 0.9) AS p90,
       COUNT(DISTINCT order_id) AS orders
FROM orders
WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 30 SECONDS)
GROUP BY "user"
HAVING SUM(amount) > 100
EMIT FINAL;
"""

# every window kind and aggregate, in the same dialect: what a user's file looks like
WINDOWS_SQL = """\
create stream orders (
  order_id varchar not null,
  "user" varchar not null,
  amount double not null,
  qty int not null,
  note varchar,
  ts double not null
) with (kafka_topic = 'orders-in', timestamp = 'ts', key = 'user');

CREATE STREAM priced AS
SELECT order_id, "user", amount, qty, amount * qty AS gross,
       CASE WHEN note IS NULL THEN 'plain' ELSE LOWER(note) END AS kind, ts
FROM orders
WHERE qty > 1 AND amount < 350;

CREATE TABLE hopping_stats WITH (KAFKA_TOPIC = 'hopping-stats') AS
SELECT "user", COUNT(*) AS n, SUM(gross) AS total, AVG(amount) AS mean,
       MIN(amount) AS low, MAX(amount) AS high, PERCENTILE(amount, 0.5) AS median,
       COUNT(DISTINCT kind) AS kinds
FROM priced
WINDOW HOPPING (SIZE 2 MINUTES, ADVANCE BY 30 SECONDS, GRACE PERIOD 10 SECONDS)
GROUP BY "user";

CREATE TABLE sessions WITH (KAFKA_TOPIC = 'sessions') AS
SELECT "user", COUNT(*) AS n, SUM(amount) AS total, AVG(qty) AS mean_qty,
       MIN(ts) AS first_ts, MAX(ts) AS last_ts, PERCENTILE(amount, 0.9) AS p90,
       COUNT(DISTINCT order_id) AS orders
FROM orders
WINDOW SESSION (45 SECONDS, GRACE PERIOD 5 SECONDS)
GROUP BY "user"
EMIT FINAL;

CREATE TABLE busy_minutes AS
SELECT "user", COUNT(*) AS n, MAX(gross) AS biggest
FROM priced
WINDOW TUMBLING (SIZE 60 SECONDS)
GROUP BY "user"
HAVING COUNT(*) >= 3;
"""

USERS = ("ann", "bob", "cy", "dee")
START = 1_764_064_800.0  # 2025-11-25T10:00:00Z


def orders(count: int, seed: int) -> list[bytes]:
    """Order lines: mostly in time order with a little disorder, idle spells (so sessions
    end), text numbers (valid, lax), and broken records of every kind."""
    rng = random.Random(seed)
    lines: list[bytes] = []
    clock = START
    for i in range(count):
        clock += rng.expovariate(1.0)
        if i % 60 == 59:
            clock += 180  # idle: every session ends
        record: dict[str, Any] = {
            "order_id": f"o{i % (count // 2)}",  # repeats: COUNT(DISTINCT) differs from COUNT
            "user": rng.choice(USERS),
            "amount": round(rng.uniform(1, 400), 2),
            "qty": rng.randint(1, 5),
            "ts": round(clock - (rng.uniform(0, 4) if rng.random() < 0.1 else 0), 3),
        }
        roll = rng.random()
        if roll < 0.3:
            record["note"] = rng.choice(["Gift", "RUSH", "later"])
        elif roll < 0.4:
            record["note"] = None
        roll = rng.random()
        if roll < 0.03:
            record["amount"] = str(record["amount"])  # lax: text holding a number is valid
        elif roll < 0.05:
            record["qty"] = str(record["qty"])
        elif roll < 0.07:
            record["amount"] = "lots"
        elif roll < 0.08:
            del record["user"]
        elif roll < 0.09:
            record["qty"] = 2.5
        elif roll < 0.10:
            del record["ts"]
        elif roll < 0.11:
            record["ts"] = clock - 3600  # an hour late
        line = orjson.dumps(record)
        lines.append(line[:-3] if rng.random() < 0.01 else line)
    return lines


# --- the reference -----------------------------------------------------------------------


def parse(line: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """A line as the declared stream accepts it, or the dead-letter type it earns."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None, "invalid_json"
    if not isinstance(record.get("ts"), int | float):
        return None, "timestamp"
    amount, qty = record.get("amount"), record.get("qty")
    if isinstance(amount, str):
        try:
            amount = float(amount)
        except ValueError:
            return None, "schema"
    if isinstance(qty, str):
        qty = int(qty)
    if not isinstance(qty, int) or not isinstance(record.get("user"), str):
        return None, "schema"
    return {**record, "amount": float(amount), "qty": qty}, None


def valid_orders(lines: Iterable[bytes]) -> list[dict[str, Any]]:
    return [record for record, _ in map(parse, lines) if record is not None]


def millis(record: dict[str, Any]) -> int:
    return int(record["ts"] * 1000)


def nearest_rank(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else None


def iso(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def fixed_windows(
    records: list[dict[str, Any]], size: int, hop: int, grace: int
) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Records per (user, window start), in arrival order; a record whose window has
    closed (watermark >= end + grace) when it arrives is left out of that window."""
    windows: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    watermark = -math.inf
    for record in records:
        t = millis(record)
        watermark = max(watermark, t)
        start = t - t % hop
        while start > t - size:
            if start + size + grace > watermark:
                windows[(record["user"], start)].append(record)
            start -= hop
    return windows


def sessions(
    records: list[dict[str, Any]], gap: int, grace: int
) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Per user, records closer than `gap` share a session; a record arriving when even a
    session of its own would be closed is late. (The data's disorder is below the grace,
    so no record can bridge two sessions after the first closed.)"""
    watermark = -math.inf
    kept: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        t = millis(record)
        watermark = max(watermark, t)
        if t + gap + grace > watermark:
            kept[record["user"]].append(record)
    windows: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for user, items in kept.items():
        current: list[dict[str, Any]] = []
        last = -math.inf
        for record in sorted(items, key=millis):
            if millis(record) - last >= gap and current:
                windows[(user, millis(current[0]))] = current
                current = []
            current.append(record)
            last = millis(record)
        windows[(user, millis(current[0]))] = current
    return windows


def in_arrival_order(records: list[dict[str, Any]], order: list[dict[str, Any]]) -> list[Any]:
    position = {id(r): i for i, r in enumerate(order)}
    return sorted(records, key=lambda r: position[id(r)])


def rows(
    windows: dict[tuple[str, int], list[dict[str, Any]]],
    end_of: Callable[[int, list[dict[str, Any]]], int],
    aggregate: Callable[[list[dict[str, Any]]], dict[str, Any]],
) -> list[dict[str, Any]]:
    return [
        {
            "user": user,
            "window_start": iso(start),
            "window_end": iso(end_of(start, items)),
            **aggregate(items),
        }
        for (user, start), items in windows.items()
    ]


def ordered(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(values, key=lambda v: (v["window_start"], v["user"], v["window_end"]))


# --- the tests ---------------------------------------------------------------------------


def test_the_design_example_compiles_to_the_pipelines_design_describes() -> None:
    program = compiled(DESIGN_SQL)
    big, table = (p.document for p in program.pipelines)
    schema = {
        "order_id": "str",
        "user": "str",
        "amount": "float",
        "qty": "int",
        "note": "str?",
        "ts": "float",
    }
    assert big == {
        "pipeline": "big_orders",
        "source": {"topic": "orders-in", "key": "user", "timestamp": "ts"},
        "steps": [
            {"validate": {"schema": schema}},
            {"filter": "amount * qty >= 500"},
            {
                "map": {
                    "order_id": "order_id",
                    "user": '"user"',
                    "gross": "amount * qty",
                    "note": "UPPER(COALESCE(note, 'none'))",
                }
            },
        ],
        "sink": {"topic": "orders-big"},
        "dlq": {"topic": "orders-dlq"},
    }
    assert table == {
        "pipeline": "spend_per_minute",
        "source": {"topic": "orders-in", "key": "user", "timestamp": "ts"},
        "steps": [
            {"validate": {"schema": schema}},
            {
                "window": {
                    "type": "tumbling",
                    "size": "1m",
                    "grace": "30s",
                    "key": "user",
                    "emit": "final",
                    "aggregates": {
                        "n": "count()",
                        "total": "sum(amount)",
                        "p90": "percentile(amount, 0.9)",
                        "orders": "count_distinct(order_id)",
                    },
                }
            },
            {"filter": "total > 100"},
        ],
        "sink": {"topic": "spend-1m"},
        "dlq": {"topic": "spend-1m-dlq"},
    }


@pytest.mark.parametrize("batch_size", [1000, 7])
async def test_the_design_example_replays_to_the_reference(tmp_path: Path, batch_size: int) -> None:
    lines = orders(1500, seed=3)
    topics, _ = await replay_sql(DESIGN_SQL, lines, tmp_path, batch_size=batch_size)
    records = valid_orders(lines)

    expected_big = [
        {
            "order_id": r["order_id"],
            "user": r["user"],
            "gross": r["amount"] * r["qty"],
            "note": (r.get("note") or "none").upper(),
        }
        for r in records
        if r["amount"] * r["qty"] >= 500
    ]
    assert topics["orders-big"] == expected_big

    windows = fixed_windows(records, 60_000, 60_000, 30_000)
    expected_table = [
        row
        for row in rows(
            windows,
            lambda start, _: start + 60_000,
            lambda items: {
                "n": len(items),
                "total": sum(r["amount"] for r in items),
                "p90": nearest_rank([r["amount"] for r in items], 0.9),
                "orders": len({r["order_id"] for r in items}),
            },
        )
        if row["total"] > 100
    ]
    assert ordered(topics["spend-1m"]) == ordered(expected_table)

    kinds = [kind for _, kind in map(parse, lines) if kind is not None]
    letters = topics["orders-dlq"]
    assert sorted(d["error"]["type"] for d in letters) == sorted(kinds)
    assert {d["payload"].encode() for d in letters} == {
        line for line in lines if parse(line)[0] is None
    }
    assert topics["spend-1m-dlq"] == letters  # both read orders: the same records fail


async def test_every_window_kind_and_aggregate_replays_to_the_reference(tmp_path: Path) -> None:
    lines = orders(2400, seed=11)
    topics, _ = await replay_sql(WINDOWS_SQL, lines, tmp_path, batch_size=50)
    records = valid_orders(lines)
    priced = [
        {
            **r,
            "gross": r["amount"] * r["qty"],
            "kind": "plain" if r.get("note") is None else r["note"].lower(),
        }
        for r in records
        if r["qty"] > 1 and r["amount"] < 350
    ]
    expected_priced = [
        {k: r[k] for k in ("order_id", "user", "amount", "qty", "gross", "kind", "ts")}
        for r in priced
    ]
    assert topics["priced"] == expected_priced

    hopping = rows(
        fixed_windows(priced, 120_000, 30_000, 10_000),
        lambda start, _: start + 120_000,
        lambda items: {
            "n": len(items),
            "total": sum(r["gross"] for r in items),
            "mean": sum(r["amount"] for r in items) / len(items),
            "low": min(r["amount"] for r in items),
            "high": max(r["amount"] for r in items),
            "median": nearest_rank([r["amount"] for r in items], 0.5),
            "kinds": len({r["kind"] for r in items}),
        },
    )
    assert ordered(topics["hopping-stats"]) == ordered(hopping)

    session_rows = rows(
        sessions(records, 45_000, 5_000),
        lambda _, items: max(millis(r) for r in items) + 45_000,
        lambda items: {
            "n": len(items),
            "total": sum(r["amount"] for r in in_arrival_order(items, records)),
            "mean_qty": sum(r["qty"] for r in items) / len(items),
            "first_ts": min(r["ts"] for r in items),
            "last_ts": max(r["ts"] for r in items),
            "p90": nearest_rank([r["amount"] for r in items], 0.9),
            "orders": len({r["order_id"] for r in items}),
        },
    )
    got_sessions = ordered(topics["sessions"])
    want_sessions = ordered(session_rows)
    assert len(got_sessions) == len(want_sessions) > 40
    for got, want in zip(got_sessions, want_sessions, strict=True):
        # a session's sum adds merged partial sums, whose order may differ from arrival
        assert got == {**want, "total": pytest.approx(want["total"], rel=1e-12)}

    busy = [
        row
        for row in rows(
            fixed_windows(priced, 60_000, 60_000, 0),
            lambda start, _: start + 60_000,
            lambda items: {"n": len(items), "biggest": max(r["gross"] for r in items)},
        )
        if row["n"] >= 3
    ]
    assert ordered(topics["busy-minutes"]) == ordered(busy)
    assert busy


async def test_replay_results_do_not_depend_on_batch_size(tmp_path: Path) -> None:
    lines = orders(900, seed=5)
    first, _ = await replay_sql(WINDOWS_SQL, lines, tmp_path / "a", batch_size=1000)
    second, _ = await replay_sql(WINDOWS_SQL, lines, tmp_path / "b", batch_size=13)

    def canonical(topics: dict[str, list[Any]]) -> dict[str, list[bytes]]:
        return {
            topic: sorted(orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for v in values)
            for topic, values in topics.items()
        }

    assert canonical(first) == canonical(second)
