"""Each SQL form beside the YAML pipeline a user would write for it, over the demo
payments (`python -m streams.offline.demo_data`, malformed records included): the same records on
every topic, the same dead letters, the same metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streams.config.loader import load_pipelines
from streams.offline import Graph, replay
from streams.offline import run as run_graph
from streams.offline.demo_data import payments, users_table, write_lines
from tests.unit.sql.conftest import compiled

DECLARATION = """\
CREATE STREAM payments (
  payment_id VARCHAR NOT NULL,
  user_id    VARCHAR NOT NULL,
  merchant   VARCHAR NOT NULL,
  amount     DOUBLE NOT NULL,
  currency   VARCHAR NOT NULL,
  country    VARCHAR,
  card       STRUCT<number VARCHAR, scheme VARCHAR>,
  ts         TIMESTAMP NOT NULL
) WITH (KAFKA_TOPIC = 'payments', TIMESTAMP = 'ts', KEY = 'user_id');
"""

SOURCE = """\
source: {topic: payments, key: %s, timestamp: ts}
steps:
  - validate:
      schema: {payment_id: str, user_id: str, merchant: str, amount: float, currency: str,
               country: "str?", card: "dict?", ts: datetime}
"""

TWINS: dict[str, tuple[str, str]] = {
    "derived stream: WHERE and computed columns": (
        """
CREATE STREAM clean WITH (KAFKA_TOPIC = 'clean-out', DLQ_TOPIC = 'clean-dlq') AS
SELECT payment_id, user_id, amount,
       ROUND(CASE currency WHEN 'USD' THEN amount * 0.92 ELSE amount END, 2) AS eur,
       SUBSTR(card.number, 1, 6) AS card_bin, ts
FROM payments
WHERE amount > 0 AND currency IN ('EUR', 'USD');
""",
        """
pipeline: clean
%s
  - filter: "amount > 0 AND currency IN ('EUR', 'USD')"
  - map:
      payment_id: payment_id
      user_id: user_id
      amount: amount
      eur: "ROUND(CASE currency WHEN 'USD' THEN amount * 0.92 ELSE amount END, 2)"
      card_bin: "SUBSTR(card.number, 1, 6)"
      ts: ts
sink: {topic: clean-out}
dlq: {topic: clean-dlq}
"""
        % (SOURCE % "user_id"),
    ),
    "SELECT * with WHERE": (
        """
CREATE STREAM refunds AS SELECT * FROM payments WHERE amount < 0 OR country IS NULL;
""",
        """
pipeline: refunds
%s
  - filter: "amount < 0 OR country IS NULL"
sink: {topic: refunds}
dlq: {topic: refunds-dlq}
"""
        % (SOURCE % "user_id"),
    ),
    "tumbling table with HAVING": (
        """
CREATE TABLE per_currency WITH (KAFKA_TOPIC = 'per-currency') AS
SELECT currency, COUNT(*) AS n, SUM(amount) AS total, AVG(amount) AS mean,
       PERCENTILE(amount, 0.95) AS p95, COUNT(DISTINCT merchant) AS merchants
FROM payments
WHERE amount > 0
WINDOW TUMBLING (SIZE 30 SECONDS, GRACE PERIOD 5 SECONDS)
GROUP BY currency
HAVING COUNT(*) > 20;
""",
        """
pipeline: per_currency
%s
  - filter: "amount > 0"
  - window:
      type: tumbling
      size: 30s
      grace: 5s
      key: currency
      aggregates:
        n: count()
        total: sum(amount)
        mean: avg(amount)
        p95: percentile(amount, 0.95)
        merchants: count_distinct(merchant)
  - filter: "n > 20"
sink: {topic: per-currency}
dlq: {topic: per-currency-dlq}
"""
        % (SOURCE % "currency"),
    ),
    "hopping table, two keys": (
        """
CREATE TABLE hops AS
SELECT country, currency, MIN(amount) AS low, MAX(amount) AS high
FROM payments
WINDOW HOPPING (SIZE 1 MINUTE, ADVANCE BY 15 SECONDS)
GROUP BY country, currency;
""",
        """
pipeline: hops
%s
  - window:
      type: hopping
      size: 1m
      hop: 15s
      key: [country, currency]
      aggregates: {low: min(amount), high: max(amount)}
sink: {topic: hops}
dlq: {topic: hops-dlq}
"""
        % (SOURCE % "[country, currency]"),
    ),
    "session table emitting changes": (
        """
CREATE TABLE visits AS
SELECT merchant, COUNT(*) AS n, SUM(amount) AS total
FROM payments
WINDOW SESSION (2 SECONDS, GRACE PERIOD 1 SECOND)
GROUP BY merchant
EMIT CHANGES;
""",
        """
pipeline: visits
%s
  - window:
      type: session
      gap: 2s
      grace: 1s
      key: merchant
      emit: updates
      aggregates: {n: count(), total: sum(amount)}
sink: {topic: visits}
dlq: {topic: visits-dlq}
"""
        % (SOURCE % "merchant"),
    ),
    "table with expressions over aggregates": (
        """
CREATE TABLE spread AS
SELECT merchant AS shop, MAX(amount) - MIN(amount) AS spread, COUNT(*) AS n
FROM payments
WINDOW TUMBLING (SIZE 20 SECONDS)
GROUP BY merchant
HAVING SUM(amount) > 500;
""",
        """
pipeline: spread
%s
  - window:
      type: tumbling
      size: 20s
      key: merchant
      aggregates: {_agg1: max(amount), _agg2: min(amount), n: count(), _agg3: sum(amount)}
  - filter: "_agg3 > 500"
  - map:
      shop: merchant
      window_start: window_start
      window_end: window_end
      spread: _agg1 - _agg2
      n: n
sink: {topic: spread}
dlq: {topic: spread-dlq}
"""
        % (SOURCE % "merchant"),
    ),
}

CHAIN_SQL = """
CREATE STREAM eur WITH (KAFKA_TOPIC = 'eur') AS
SELECT user_id, merchant, amount, ts FROM payments WHERE currency = 'EUR';
CREATE TABLE eur_merchants WITH (KAFKA_TOPIC = 'eur-merchants') AS
SELECT merchant, COUNT(*) AS n, SUM(amount) AS total FROM eur
WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY merchant;
CREATE STREAM big_eur_merchants AS SELECT merchant, total FROM eur_merchants WHERE total > 2000;
"""
CHAIN_YAML = """
pipeline: eur
%s
  - filter: "currency = 'EUR'"
  - map: {user_id: user_id, merchant: merchant, amount: amount, ts: ts}
sink: {topic: eur}
dlq: {topic: eur-dlq}
---
pipeline: eur_merchants
source: {topic: eur, key: merchant, timestamp: ts}
steps:
  - window:
      type: tumbling
      size: 1m
      key: merchant
      aggregates: {n: count(), total: sum(amount)}
sink: {topic: eur-merchants}
dlq: {topic: eur-merchants-dlq}
---
pipeline: big_eur_merchants
source: {topic: eur-merchants}
steps:
  - filter: "total > 2000"
  - map: {merchant: merchant, total: total}
sink: {topic: big-eur-merchants}
dlq: {topic: big-eur-merchants-dlq}
""" % (SOURCE % "user_id")


JOIN_SQL = """
CREATE TABLE users (user_id VARCHAR PRIMARY KEY, tier VARCHAR, country VARCHAR)
  WITH (KAFKA_TOPIC = 'users');
CREATE STREAM tiered AS
SELECT p.payment_id, p.user_id, u.tier, p.amount
FROM payments p LEFT JOIN users u ON p.user_id = u.user_id
WHERE u.tier <> 'basic' OR u.tier IS NULL;
CREATE TABLE tier_minutes AS
SELECT u.tier, COUNT(*) AS n, SUM(p.amount) AS total
FROM payments p JOIN users u ON u.user_id = p.user_id
WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY u.tier;
"""
JOIN_YAML = (
    """
pipeline: tiered
%s
  - enrich: {table: users, on: user_id, fields: [tier], missing: keep}
  - filter: "tier <> 'basic' OR tier IS NULL"
  - map: {payment_id: payment_id, user_id: user_id, tier: tier, amount: amount}
tables: {users: {topic: users, key: user_id}}
sink: {topic: tiered}
dlq: {topic: tiered-dlq}
---
pipeline: tier_minutes
%s
  - enrich: {table: users, on: user_id, fields: [tier], missing: drop}
  - window:
      type: tumbling
      size: 1m
      key: tier
      aggregates: {n: count(), total: sum(amount)}
tables: {users: {topic: users, key: user_id}}
sink: {topic: tier-minutes}
dlq: {topic: tier-minutes-dlq}
"""  # noqa: UP031 - the YAML's braces would all need doubling for .format
    % (SOURCE % "user_id", SOURCE % "user_id")
)


@pytest.fixture(scope="module")
def demo_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "payments.jsonl"
    write_lines(path, payments(6000, seed=13, malformed_ratio=0.04))
    return path


def metrics(graph: Graph) -> dict[str, Any]:
    return {
        node.spec.pipeline: (
            node.metrics.events_in_total,
            dict(node.metrics.sent),
            dict(node.metrics.drops),
            dict(node.metrics.dead),
            node.metrics.late,
        )
        for node in graph.nodes
    }


async def run(specs: list[Any], topic: str, source: Path, out: Path) -> Graph:
    graph = Graph(specs)
    await run_graph(graph, {topic: str(source)}, out)
    return graph


def files(directory: Path) -> dict[str, bytes]:
    return {f.name: f.read_bytes() for f in sorted(directory.glob("*.jsonl"))}


@pytest.mark.parametrize("form", list(TWINS))
async def test_a_sql_form_equals_its_yaml_twin(form: str, demo_input: Path, tmp_path: Path) -> None:
    sql, yaml_text = TWINS[form]
    (pipeline,) = compiled(DECLARATION + sql).pipelines
    (tmp_path / "twin.yaml").write_text(yaml_text)
    (twin,) = load_pipelines(tmp_path / "twin.yaml")

    sql_graph = await run([pipeline.spec], "payments", demo_input, tmp_path / "sql")
    summary = await replay(twin, str(demo_input), tmp_path / "yaml")  # the classic replay
    yaml_graph = await run([twin], "payments", demo_input, tmp_path / "yaml-graph")

    produced = files(tmp_path / "sql")
    assert produced == files(tmp_path / "yaml") == files(tmp_path / "yaml-graph")
    assert len(produced) == 2 and all(produced.values())  # results and dead letters
    assert metrics(sql_graph) == metrics(yaml_graph)
    (node,) = sql_graph.nodes
    assert (summary.only.events_in, summary.only.outputs) == (
        node.metrics.events_in_total,
        node.metrics.sent,
    )
    assert (summary.only.dead_letters, summary.only.dropped) == (
        node.metrics.dead_letters_total,
        node.metrics.dropped_total,
    )


async def test_a_chain_of_statements_equals_its_yaml_twins(
    demo_input: Path, tmp_path: Path
) -> None:
    program = compiled(DECLARATION + CHAIN_SQL)
    (tmp_path / "twins.yaml").write_text(CHAIN_YAML)
    twins = load_pipelines(tmp_path / "twins.yaml")
    assert [p.document["source"] for p in program.pipelines] == [
        {
            "topic": t.source.topic,
            **({"key": t.source.key[0]} if t.source.key else {}),
            **({"timestamp": t.source.timestamp} if t.source.timestamp else {}),
        }
        for t in twins
    ]
    sql_graph = await run(program.specs(), "payments", demo_input, tmp_path / "sql")
    yaml_graph = await run(twins, "payments", demo_input, tmp_path / "yaml")
    produced = files(tmp_path / "sql")
    assert produced == files(tmp_path / "yaml")
    assert produced["big-eur-merchants.jsonl"]
    assert metrics(sql_graph) == metrics(yaml_graph)


async def test_a_join_with_a_lookup_table_equals_its_yaml_enrich_twins(
    demo_input: Path, tmp_path: Path
) -> None:
    users = tmp_path / "users.jsonl"
    write_lines(users, (line for i, line in enumerate(users_table()) if i % 7))  # some missing
    program = compiled(DECLARATION + JOIN_SQL)
    (tmp_path / "twins.yaml").write_text(JOIN_YAML)
    twins = load_pipelines(tmp_path / "twins.yaml")
    sql_graph = Graph(program.specs(), tables={"users": users})
    await run_graph(sql_graph, {"payments": str(demo_input)}, tmp_path / "sql")
    yaml_graph = Graph(twins, tables={"users": users})
    await run_graph(yaml_graph, {"payments": str(demo_input)}, tmp_path / "yaml")
    produced = files(tmp_path / "sql")
    assert produced == files(tmp_path / "yaml")
    assert b'"tier":null' in produced["tiered.jsonl"]  # LEFT JOIN keeps users without a row
    assert produced["tier-minutes.jsonl"].count(b"\n") >= 3
    assert metrics(sql_graph) == metrics(yaml_graph)
    dropped = metrics(sql_graph)["tier_minutes"][2]
    assert dropped[("enrich", "enrich_missing")] > 0  # JOIN drops them
