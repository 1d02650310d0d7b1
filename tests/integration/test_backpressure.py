"""Backpressure (streams.runtime.backpressure): a worker behind on a backlog holds its
source partitions while its repartition topic is behind, and loses or repeats nothing."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from streams.offline.demo_data import payments
from tests.integration.conftest import Broker, consume_all, create_topics, produce_lines, unique

pytestmark = pytest.mark.integration

RECORDS = 30_000

PLAIN = """
pipeline: plain-{tag}
source: {{topic: src-{tag}}}
steps:
  - filter: "amount > 0"
sink: {{topic: plain-out-{tag}}}
"""

# a stateful step keyed by user: its records go through a repartition topic
KEYED = """
pipeline: keyed-{tag}
source: {{topic: src-{tag}, key: user_id}}
steps:
  - dedupe: {{key: payment_id, within: 1h}}
  - filter: "amount > 0"
sink: {{topic: keyed-out-{tag}}}
"""


async def test_a_backlog_holds_the_sources_while_the_repartition_topic_catches_up(
    broker: Broker, make_worker: Any
) -> None:
    tag = unique("bp")
    lines = list(payments(RECORDS, seed=23, malformed_ratio=0.0))
    expected = sum(1 for line in lines if orjson.loads(line)["amount"] > 0)
    await create_topics(broker, f"src-{tag}")
    # the backlog first: the worker starts behind by RECORDS, 150 batches of batch_max 200
    # (hold above 4,000 records on the repartition topic, release at 1,000)
    await produce_lines(broker, f"src-{tag}", lines)
    worker = make_worker({"plain": PLAIN.format(tag=tag), "keyed": KEYED.format(tag=tag)})
    worker.wait_ready()
    plain = await consume_all(broker, f"plain-out-{tag}", expected, timeout=120)
    keyed = await consume_all(broker, f"keyed-out-{tag}", expected, timeout=120)
    # nothing lost, nothing twice, through every hold and release
    assert sorted(m.value for m in plain) == sorted(m.value for m in keyed)
    assert len({orjson.loads(m.value)["payment_id"] for m in keyed}) == expected
    log = worker.output(None)
    assert "sources held until they catch up" in log, log[-3000:]
    assert worker.metric("sluice_events_in_total") == 2 * RECORDS  # each pipeline, once
    assert worker.stop() == 0
