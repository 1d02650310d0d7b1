"""The shipped pipelines as agents of a Faust app (`streams.faust.attach`) in a real
`faust -A app worker`: results, routes, windows, alerts and dead letters (with their
headers) equal `sluice replay` on the same input, across a SIGTERM and a restart that
continues from the committed offsets with the tables recovered; a pipeline that raises
stops the worker non-zero with a line naming it. Rebalances between two workers:
test_faust_rebalances.py."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import orjson
import pytest

from streams.config.loader import load_pipelines
from streams.offline.demo_data import payments, users_table
from tests.integration.conftest import Broker, create_topics, produce_lines, unique
from tests.integration.faust_apps import (  # the fixture: autouse
    FaustWorker,
    no_faust_worker_left,  # noqa: F401
    shipped_pipelines,
)
from tests.integration.faust_oracle import (
    outputs_equal_replay,
    replayed_with_users_loaded,
    stop_counts,
    until,
    user_key,
)

pytestmark = pytest.mark.integration


FILLER_ROWS = 30_000  # table rows before the real ones: loading them takes a while


async def test_shipped_pipelines_in_a_faust_app_equal_replay_across_a_restart(
    broker: Broker, tmp_path: Path
) -> None:
    """SIGTERM while the input flows, then a restart while it still flows: the outputs
    equal replay exactly, and every pipeline processed each of its input records once
    across the two workers (the second went on from the first's committed offsets,
    with the tables recovered). The lookup table has 30,000 rows ahead of the 500 the
    payments use: the second worker starts with records waiting and must not enrich
    one before the table is read to its end."""
    tag = unique("fa")
    files, topics = shipped_pipelines(tmp_path / "pipelines", tag)
    source, users = topics["payments"], topics["users"]
    # 55.5 s of event time in one minute: no window closes by event time; all close once
    # the partitions are idle for the grace (10 s) by wall clock, at the end
    lines = list(payments(1500, seed=5, malformed_ratio=0.03, events_per_second=27))
    filler = [orjson.dumps({"user_id": f"filler-{i}", "tier": "gold"}) for i in range(FILLER_ROWS)]
    rows = filler + list(users_table())
    specs, expected = await replayed_with_users_loaded(
        tmp_path, broker, files, (source, lines), (users, rows)
    )
    app_id = f"t{tag.replace('-', '')}"
    first = FaustWorker(tmp_path / "one", broker, app_id, files).start()
    await asyncio.to_thread(first.wait_ready)
    await produce_lines(broker, source, lines[:600], key=user_key)

    def read(worker: FaustWorker) -> dict[str, int]:
        status, body = worker.get("/sluice/api/pipelines")
        assert status == 200
        return {p["pipeline"]: p["events_in"] for p in body["pipelines"]}

    # SIGTERM mid-stream: the pipelines reading the source stand at different offsets
    await until(
        lambda: (counts := read(first))["payments-clean"] >= 300 and counts["payments-risk"] >= 200,
        120,
        "processing",
    )
    first.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]

    async def steady() -> None:  # the rest arrives while the first stops and the second starts
        for start in range(600, len(lines), 100):
            await produce_lines(broker, source, lines[start : start + 100], key=user_key)
            await asyncio.sleep(0.5)

    feeding = asyncio.create_task(steady())
    assert await asyncio.to_thread(first.stop) == 0, first.output()  # a clean stop
    second = FaustWorker(tmp_path / "two", broker, app_id, files).start()
    await asyncio.to_thread(second.wait_ready)
    await feeding

    assert await outputs_equal_replay(broker, topics, expected) > 40
    assert second.stop() == 0, second.output()
    # each pipeline processed each of its input records once, across the two workers
    before, after = stop_counts(first), stop_counts(second)
    inputs = {name: len(lines) for name, spec in specs.items() if spec.source.topic == source}
    inputs["merchant_minutes"] = len(expected(topics["payments-eur"]))
    assert set(before) == set(after) == set(inputs), (before, after)
    assert 0 < before["payments-clean"] < len(lines)
    assert {p: before[p] + after[p] for p in inputs} == inputs, (before, after)


CRASHING = """
from streams.faust import host_of

async def broken(events):
    raise RuntimeError("a bug in the pipeline")

# a bug that escapes the pure pipeline (records' errors never do: they are dead letters)
host_of(app).agents[os.environ["TEST_BROKEN"]].pipeline.process = broken
"""


async def test_a_pipeline_that_raises_stops_the_worker_non_zero(
    tansu: Broker, tmp_path: Path
) -> None:
    tag = unique("fc")
    files, topics = shipped_pipelines(tmp_path / "pipelines", tag)
    await create_topics(tansu, topics["payments"], topics["users"])
    worker = FaustWorker(
        tmp_path / "w", tansu, f"t{tag.replace('-', '')}", files[:1], extra=CRASHING
    )
    broken = load_pipelines(files[0])[0].pipeline
    worker.env["TEST_BROKEN"] = broken
    worker.start()
    worker.wait_ready()
    await produce_lines(tansu, topics["payments"], list(payments(20, seed=1)), key=user_key)
    code = worker.wait_exit(60)
    assert code != 0
    crashes = [line for line in worker.output(20_000).splitlines() if "crashed" in line]
    assert any(f"pipeline {broken}" in line for line in crashes), worker.output()
    # nothing of the failed batch was committed: the group's offsets are still at the start
    assert await _committed(tansu, f"t{tag.replace('-', '')}", topics["payments"]) == 0


async def _committed(broker: Broker, group: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=broker.address, group_id=group)
    await consumer.start()
    try:
        total = 0
        for partition in range(4):
            offset = await consumer.committed(TopicPartition(topic, partition))
            total += offset or 0
        return total
    finally:
        await consumer.stop()
