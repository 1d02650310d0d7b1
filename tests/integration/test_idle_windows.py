"""Windows that must close without more input (issue 22): a worker restarted over open
windows on a topic that then stays quiet, and a feed whose event time runs far ahead of
the clock. Results equal `sluice replay` or brute force per partition."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.runtime.broker import EmbeddedBroker
from tests.integration.conftest import consume_all, create_topics, produce_lines, unique
from tests.integration.test_windows import expected_windows, user_key
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
