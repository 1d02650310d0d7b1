"""A pipeline changed between restarts (issue 22, case 8): window state carries the
layout it was built from. Reordered aggregates read it by name and give replay's
results; an added aggregate is one clear line and exit 70, never a traceback."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.runtime.broker import EmbeddedBroker
from tests.integration.conftest import consume_all, create_topics, produce_lines, unique
from tests.integration.test_windows import expected_windows, user_key
from tests.waiting import eventually, wait_until

pytestmark = pytest.mark.integration

BASE_MS = 1_795_600_000_000
PIPELINE = """
pipeline: lay-{tag}
source: {{topic: in-{tag}, timestamp: ts}}
steps:
  - window:
      type: tumbling
      size: 10s
      grace: 5s
      key: user
      aggregates: {{{aggregates}}}
sink: {{topic: out-{tag}}}
"""
FIRST = "n: count(), big: max(v)"
REORDERED = "big: max(v), n: count()"
ADDED = "big: max(v), n: count(), total: sum(v)"


async def test_an_added_aggregate_stops_clearly_and_a_reorder_restores_right(
    tansu: EmbeddedBroker, make_worker: Any, tmp_path: Path
) -> None:
    """Records, SIGTERM with windows open; a restart with an aggregate added exits 70
    with one line; a restart with the aggregates reordered reads the state by name and,
    fed the rest, gives every window as replay does."""
    tag = unique("lay")
    data = [
        orjson.dumps({"user": f"u{i % 5}", "v": (i * 37) % 101, "ts": BASE_MS + i * 40})
        for i in range(600)
    ]
    expected = await expected_windows(PIPELINE.format(tag=tag, aggregates=FIRST), data, tmp_path)
    await create_topics(tansu, f"in-{tag}")

    def worker(aggregates: str) -> Any:
        text = PIPELINE.format(tag=tag, aggregates=aggregates)
        return make_worker({"lay": text}, app_id="lay", broker_url=tansu.url)

    async def feed_then_stop(started: Any, part: slice, total: int) -> None:
        started.wait_ready()
        await produce_lines(tansu, f"in-{tag}", data[part], key=user_key)
        await eventually(
            lambda: started.metric("sluice_events_in_total") >= total, 30, "records processed"
        )
        assert started.metric("sluice_windows_open") > 0  # state to restore
        assert started.stop(signal.SIGTERM) == 0

    await feed_then_stop(worker(FIRST), slice(0, 300), 300)

    added = worker(ADDED)
    wait_until(
        lambda: added.process.poll() is not None, 60, "the worker with an added aggregate exits"
    )
    assert added.process.returncode == 70
    log = added.output(None)
    assert "Traceback" not in log
    [line] = [orjson.loads(x) for x in log.splitlines() if '"CRITICAL"' in x]
    said = line["message"]
    assert f"pipeline 'lay-{tag}', step 'window'" in said
    assert "aggregate(s) added: total: sum(v)" in said
    assert "changelog topic" in said and "new name" in said

    last = worker(REORDERED)
    last.wait_ready()
    await produce_lines(tansu, f"in-{tag}", data[300:], key=user_key)
    got = [orjson.loads(m.value) for m in await consume_all(tansu, f"out-{tag}", len(expected), 45)]
    windows = {(r["user"], r["window_start"]): r for r in got}
    assert len(windows) == len(got)  # each window once
    assert windows == expected
    assert last.stop() == 0
