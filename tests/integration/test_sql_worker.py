"""A worker runs a .sql file's pipelines like YAML ones: a derived stream reads the
declared stream's topic, a windowed table reads the derived stream's topic, and the
results on the broker are the ones `sluice replay FILE.sql` writes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.offline import replay
from streams.offline.demo_data import payments, write_lines
from streams.sql.compiler import load_sql_program
from tests.integration.conftest import Broker, consume_all, create_topics, produce_lines, unique

pytestmark = pytest.mark.integration

SQL = """\
CREATE STREAM pay (
  payment_id VARCHAR NOT NULL,
  user_id    VARCHAR NOT NULL,
  merchant   VARCHAR NOT NULL,
  amount     DOUBLE NOT NULL,
  currency   VARCHAR NOT NULL,
  ts         TIMESTAMP NOT NULL
) WITH (KAFKA_TOPIC = 'pay-{tag}', TIMESTAMP = 'ts', KEY = 'user_id');

CREATE STREAM eur WITH (KAFKA_TOPIC = 'eur-{tag}', DLQ_TOPIC = 'dlq-{tag}') AS
SELECT payment_id, user_id, merchant, amount, ts FROM pay WHERE currency = 'EUR';

CREATE TABLE per_merchant WITH (KAFKA_TOPIC = 'merchants-{tag}', DLQ_TOPIC = 'dlq-{tag}') AS
SELECT merchant, COUNT(*) AS n, SUM(amount) AS total
FROM eur
WINDOW TUMBLING (SIZE 2 SECONDS, GRACE PERIOD 10 SECONDS)
GROUP BY merchant;
"""


def canonical(values: list[Any]) -> Counter[bytes]:
    # sums add in arrival order, which partitions change: compare them rounded
    rounded = [
        {k: round(v, 6) if isinstance(v, float) else v for k, v in x.items()} for x in values
    ]
    return Counter(orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for v in rounded)


async def test_a_worker_runs_sql_pipelines_and_matches_replay(
    broker: Broker, make_worker: Any, tmp_path: Path
) -> None:
    tag = unique("sql")
    text = SQL.format(tag=tag)
    # 3 s of event time, disorder up to 5 s: within the grace, so nothing is late however
    # the partitions interleave, and the worker's windows are the replay's
    lines = list(payments(1500, seed=5, malformed_ratio=0.03, events_per_second=500))
    source = tmp_path / "in.jsonl"
    write_lines(source, iter(lines))
    (tmp_path / "p.sql").write_text(text)
    program = load_sql_program(tmp_path / "p.sql")
    await replay(program.specs(), {f"pay-{tag}": str(source)}, tmp_path / "replay")

    def expected(topic: str) -> list[Any]:
        path = tmp_path / "replay" / f"{topic}.jsonl"
        return [orjson.loads(x) for x in path.read_bytes().splitlines()]

    await create_topics(broker, f"pay-{tag}")  # the worker declares the topics it reads
    worker = make_worker({}, start=False)
    (worker.config / "pipelines" / "payments.sql").write_text(text)
    worker.start()
    worker.wait_ready()
    await produce_lines(broker, f"pay-{tag}", lines)
    eur = expected(f"eur-{tag}")
    got = await consume_all(broker, f"eur-{tag}", len(eur))
    assert canonical([orjson.loads(m.value) for m in got]) == canonical(eur)
    dead = expected(f"dlq-{tag}")
    letters = await consume_all(broker, f"dlq-{tag}", len(dead))
    assert Counter(m.value for m in letters) == Counter(d["payload"].encode() for d in dead)
    # the last windows close by wall clock once the partitions are idle for the grace
    merchants = expected(f"merchants-{tag}")
    results = await consume_all(broker, f"merchants-{tag}", len(merchants), timeout=90)
    assert canonical([orjson.loads(m.value) for m in results]) == canonical(merchants)
    assert worker.metric("sluice_events_in_total") == len(lines) + len(eur)
    assert worker.stop() == 0
