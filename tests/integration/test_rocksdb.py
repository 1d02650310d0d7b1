"""`store: rocksdb://` (issue 10): a worker restarted with its local state reads only the
changelog written since that state (not the whole changelog), after a clean stop and
after SIGKILL, and its results equal replay's."""

from __future__ import annotations

import re
import signal
from collections import Counter
from typing import Any

import orjson
import pytest

from tests.integration.conftest import Broker, consume_all, create_topics, produce_lines, unique

pytestmark = pytest.mark.integration

pytest.importorskip("rocksdict", reason="the rocksdb extra (rocksdict) is not installed")

STATEFUL = """
pipeline: rocks-{tag}
source: {{topic: events-{tag}, key: user}}
steps:
  - component: {{class: "tests.fixtures.components:CountPerKey", config: {{limit: 1}}}}
sink: {{topic: counted-{tag}}}
"""
USERS = 3000


def user_events(start: int, count: int) -> list[bytes]:
    return [orjson.dumps({"user": f"u{i % USERS}", "i": i}) for i in range(start, start + count)]


def restored_counts(log: str) -> list[int]:
    """The changelog records each restore read, in order (from the worker's log)."""
    return [int(n) for n in re.findall(r"state restored: (\d+) changelog records", log)]


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
async def test_a_restart_reads_the_local_state_and_only_the_changelog_since(
    broker: Broker, make_worker: Any, how: str
) -> None:
    tag = unique("rocks")
    text = STATEFUL.format(tag=tag)
    await create_topics(broker, f"events-{tag}")
    worker = make_worker({"rocks": text}, extra="store: rocksdb://\n")
    worker.wait_ready(90)
    await produce_lines(broker, f"events-{tag}", user_events(0, 9000))
    first = await consume_all(broker, f"counted-{tag}", 9000, settle=1.5)
    assert len({orjson.loads(m.value)["i"] for m in first}) == 9000
    worker.stop(signal.SIGTERM if how == "sigterm" else signal.SIGKILL)

    await produce_lines(broker, f"events-{tag}", user_events(9000, 3000))
    worker.start()
    worker.wait_ready(90)
    results = await consume_all(broker, f"counted-{tag}", 12_000, timeout=90, settle=2)
    values = [orjson.loads(m.value) for m in results]
    assert {v["i"] for v in values} == set(range(12_000))
    # state carried over exactly: every user's count is right at its last record
    last: dict[str, int] = {}
    for value in values:
        last[value["user"]] = max(last.get(value["user"], 0), value["seen"])
    assert last == dict(Counter(f"u{i % USERS}" for i in range(12_000)))
    # the restart read far less than the changelog holds (one record per user per
    # checkpoint: at least USERS of them)
    counts = restored_counts(worker.output(limit=None))
    print(f"changelog records read by each restore: {counts}")
    assert len(counts) >= 2, counts
    assert counts[-1] < USERS // 3, counts
    assert worker.stop() == 0
