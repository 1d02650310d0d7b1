"""Lookup tables on a real broker (issue 22): records wait until the tables are read to
their end offsets, and a row that is JSON but not an object is a dead letter of the
table, not a crash."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.runtime.broker import EmbeddedBroker
from tests.integration.conftest import consume_all, create_topics, produce_lines, unique
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

ENRICHED = """
pipeline: enr-{tag}
source: {{topic: in-{tag}}}
tables:
  users: {{topic: users-{tag}, key: user_id}}
steps:
  - enrich: {{table: users, on: user_id, fields: [tier], missing: dlq}}
sink: {{topic: out-{tag}}}
dlq: {{topic: dlq-{tag}}}
"""
ROWS = 20_000
# the condition of issue 22, made certain: a table that takes longer to read than the
# worker takes to join its group (there: 200,000 rows). Put first on the worker's path,
# this slows every consumer without a group (the lookup tables') to 1,000 records per
# 0.3 s: about 6 s for the table, twice the group join on tansu.
SLOW_TABLES = """
import asyncio
from aiokafka import AIOKafkaConsumer

_getmany = AIOKafkaConsumer.getmany


async def getmany(self, *partitions, timeout_ms=0, max_records=None):
    if self._group_id is None:
        await asyncio.sleep(0.3)
        max_records = min(max_records or 1000, 1000)
    return await _getmany(self, *partitions, timeout_ms=timeout_ms, max_records=max_records)


AIOKafkaConsumer.getmany = getmany
"""
BAD_KEY = b"u-bad"
BAD_ROW = b"[1,2]"


async def test_records_wait_for_a_loaded_table_and_a_bad_row_is_a_dead_letter(
    tansu: EmbeddedBroker, make_worker: Any, tmp_path: Path
) -> None:
    """20,000 rows and 2,000 events already in their topics when the worker starts, the
    table slow to read: every event finds its row (before: processing began before the
    table was read, and a table counted as loaded after one empty poll: 1,079 of 2,000
    events were "no row" dead letters). The row `[1,2]` under a key events use is one
    dead letter (step `table`, type `invalid_json`, its bytes, the table's
    topic in the headers); its key's events find no row (before: AttributeError on
    every start)."""
    rng = random.Random(7)
    tag = unique("enr")
    await create_topics(tansu, f"users-{tag}", f"in-{tag}")
    rows = [orjson.dumps({"user_id": f"u{i}", "tier": i % 3}) for i in range(ROWS)]
    await produce_lines(tansu, f"users-{tag}", rows, key=lambda r: r[12 : r.index(b'"', 12)])
    await produce_lines(tansu, f"users-{tag}", [BAD_ROW], key=lambda _: BAD_KEY)
    users = [rng.randrange(ROWS) for _ in range(2_000)]
    events = [orjson.dumps({"n": i, "user_id": f"u{u}"}) for i, u in enumerate(users)]
    events += [orjson.dumps({"n": len(events) + i, "user_id": "u-bad"}) for i in range(5)]
    await produce_lines(tansu, f"in-{tag}", events)

    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "sitecustomize.py").write_text(SLOW_TABLES)
    worker = make_worker({"enr": ENRICHED.format(tag=tag)}, broker_url=tansu.url, start=False)
    worker.extra_path = str(slow)
    worker.start()
    worker.wait_ready(90)
    out = await consume_all(tansu, f"out-{tag}", 2_000, timeout=60)
    got = {orjson.loads(m.value)["n"]: orjson.loads(m.value)["tier"] for m in out}
    assert got == {i: u % 3 for i, u in enumerate(users)}

    dead = await consume_all(tansu, f"dlq-{tag}", 6, timeout=30)
    by_step: dict[bytes, list[Any]] = {}
    for message in dead:
        by_step.setdefault(dict(message.headers)["sluice.error.step"], []).append(message)
    [table_letter] = by_step[b"table"]
    headers = dict(table_letter.headers)
    assert table_letter.value == BAD_ROW
    assert table_letter.key == BAD_KEY
    assert headers["sluice.error.type"] == b"invalid_json"
    assert b"users" in headers["sluice.error.message"]
    assert headers["sluice.source.topic"] == f"users-{tag}".encode()
    assert headers["sluice.source.partition"].isdigit()
    assert headers["sluice.source.offset"].isdigit()
    assert sorted(orjson.loads(m.value)["n"] for m in by_step[b"enrich"]) == list(
        range(2_000, 2_005)
    )
    assert set(by_step) == {b"table", b"enrich"}
    series = f'sluice_dead_letters_total{{pipeline="enr-{tag}",step="table",type="invalid_json"}}'
    wait_until(
        lambda: f"{series} 1.0" in str(worker.get("/metrics")[1]), 10, "the dead letter counted"
    )
    assert worker.process is not None and worker.process.poll() is None
    assert worker.stop() == 0
