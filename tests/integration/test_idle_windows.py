"""Windows that must close without more input (issue 22): a worker restarted over open
windows on a topic that then stays quiet, and a feed whose event time runs far ahead of
the clock. Results equal `sluice replay` or brute force per partition."""

from __future__ import annotations

import random
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.core.event_time import event_time_ms
from streams.runtime.broker import EmbeddedBroker
from tests.integration.conftest import consume_all, create_topics, produce_lines, unique
from tests.integration.test_windows import expected_windows, user_key
from tests.unit.steps.test_window_worker_path import brute_force
from tests.waiting import eventually

pytestmark = pytest.mark.integration

BASE_MS = 1_795_600_000_000  # event time days before the clock

QUIET = """
pipeline: quiet-{tag}
source: {{topic: in-{tag}, timestamp: ts}}
steps:
  - window:
      type: tumbling
      size: 10s
      grace: 10s
      key: user
      aggregates: {{n: count(), total: sum(v)}}
sink: {{topic: out-{tag}}}
"""


def _windows(messages: list[Any]) -> list[tuple[tuple[str, str], dict[str, Any]]]:
    values = [orjson.loads(m.value) for m in messages]
    return [((v["user"], v["window_start"]), v) for v in values]


async def test_restored_windows_close_when_the_topic_stays_quiet(
    tansu: EmbeddedBroker, make_worker: Any, tmp_path: Path
) -> None:
    """Records, SIGTERM while windows are open, a restart, no more records: the windows
    come out (by wall clock, after grace) equal to replay's. Before the fix a restored
    partition never counted as idle and its windows stayed open for good."""
    tag = unique("quiet")
    text = QUIET.format(tag=tag)
    data = [
        orjson.dumps({"user": f"u{i % 12}", "v": i % 17, "ts": BASE_MS + i * 50})
        for i in range(600)
    ]
    expected = await expected_windows(text, data, tmp_path)
    await create_topics(tansu, f"in-{tag}")
    first = make_worker({"quiet": text}, app_id="quiet", broker_url=tansu.url)
    first.wait_ready()
    await produce_lines(tansu, f"in-{tag}", data, key=user_key)
    await eventually(
        lambda: first.metric("sluice_events_in_total") >= len(data), 30, "all records processed"
    )
    # grace is 10 s: nothing has closed the last windows yet
    assert first.metric("sluice_windows_open") > 0
    assert first.stop(signal.SIGTERM) == 0
    before = {window for window, _ in _windows(await consume_all(tansu, f"out-{tag}", 0, 3))}
    assert before < set(expected)

    second = make_worker({"quiet": text}, app_id="quiet", broker_url=tansu.url)
    second.wait_ready()
    got = _windows(await consume_all(tansu, f"out-{tag}", len(expected), timeout=45))
    assert sorted(window for window, _ in got) == sorted(expected)
    assert dict(got) == expected
    assert second.metric("sluice_windows_open") == 0
    assert second.stop() == 0


HOPPING = """
pipeline: hop-{tag}
source: {{topic: in-{tag}, timestamp: ts}}
steps:
  - window:
      type: hopping
      size: 5m
      hop: 1m
      grace: 3s
      key: user
      aggregates: {{n: count(), total: sum(v), big: max(v)}}
sink: {{topic: out-{tag}}}
"""


async def test_hopping_windows_of_a_fast_feed_all_come_out(
    tansu: EmbeddedBroker, make_worker: Any
) -> None:
    """Issue 22's probe, scaled: 6,000 events of 60 users over 40 minutes of event time
    with up to 20 s disorder, keyed into 4 partitions, one worker, no fault. Every window
    comes out soon after the feed stops, equal to brute force over each partition's
    records in offset order (the contract's per-partition watermark). Before the fix the
    last windows of every user waited up to `size + grace` (5 minutes) of idleness."""
    rng = random.Random(22)
    tag = unique("hop")
    data = []
    for i in range(6_000):
        t = BASE_MS + i * 400 - rng.randint(0, 20_000)
        data.append(
            orjson.dumps({"user": f"u{rng.randrange(60)}", "v": rng.randint(1, 500), "ts": t})
        )
    await create_topics(tansu, f"in-{tag}")
    worker = make_worker({"hop": HOPPING.format(tag=tag)}, app_id="hop", broker_url=tansu.url)
    worker.wait_ready()
    await produce_lines(tansu, f"in-{tag}", data, key=user_key)
    fed = await consume_all(tansu, f"in-{tag}", len(data), timeout=30, settle=0)
    records = []
    for message in sorted(fed, key=lambda m: (m.partition, m.offset)):
        value = orjson.loads(message.value)
        records.append((value["user"], message.partition, value["ts"], value["v"]))
    expected = brute_force(records, 300_000, 60_000, 3_000)
    got = _windows(await consume_all(tansu, f"out-{tag}", len(expected), timeout=40))
    assert sorted(window for window, _ in got) == sorted(expected)
    assert {window: (v["n"], v["total"], v["big"]) for window, v in got} == expected
    for _, value in got:
        start = event_time_ms(value["window_start"], "window_start")
        assert event_time_ms(value["window_end"], "window_end") == start + 300_000
    assert worker.stop() == 0
