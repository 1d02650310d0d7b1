"""The shipped pipelines as agents of a Faust app (`streams.faust.attach`) in a real
`faust -A app worker`: results, routes, windows, alerts and dead letters (with their
headers) equal `sluice replay` on the same input, across a SIGTERM and a restart that
continues from the committed offsets with the tables recovered; a pipeline that raises
stops the worker non-zero with a line naming it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.config.loader import load_pipelines
from streams.offline import replay
from streams.offline.demo_data import payments, write_lines
from tests.integration.conftest import Broker, consume_all, create_topics, produce_lines, unique
from tests.integration.faust_apps import FaustWorker, shipped_pipelines

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _no_worker_left() -> Any:
    yield
    FaustWorker.kill_all()


def canonical(values: list[Any]) -> Counter[bytes]:
    # sums add in arrival order, which the partitions change: compare them rounded
    def rounded(value: Any) -> Any:
        if isinstance(value, float):
            return round(value, 6)
        if isinstance(value, dict):
            return {k: rounded(v) for k, v in value.items()}
        return value

    return Counter(orjson.dumps(rounded(v), option=orjson.OPT_SORT_KEYS) for v in values)


def user_key(line: bytes) -> bytes | None:
    try:
        return str(orjson.loads(line)["user_id"]).encode()
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


async def until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} in {timeout}s")
        await asyncio.sleep(0.2)


@pytest.mark.xfail(
    strict=False,
    reason="issue 24 stays open: across a SIGTERM restart the Faust host re-emits some "
    "windows (a partial result plus the full one) and dead letters, and enrich finds no "
    "row for some records (2026-12-06: 236 extra window results, 'tier unknown', in one "
    "run on each broker; exact in other runs)",
)
async def test_shipped_pipelines_in_a_faust_app_equal_replay_across_a_restart(
    broker: Broker, tmp_path: Path
) -> None:
    tag = unique("fa")
    files, topics = shipped_pipelines(tmp_path / "pipelines", tag)
    source, users = topics["payments"], topics["users"]
    # 55.5 s of event time in one minute (disorder within the grace: nothing is late however
    # the partitions interleave): the windows close 14.5 s after the last record, as the
    # idle partitions' event time advances with the clock, and equal replay's
    lines = list(payments(1500, seed=5, malformed_ratio=0.03, events_per_second=27))
    data = tmp_path / "in.jsonl"
    write_lines(data, iter(lines))
    specs = [spec for path in files for spec in load_pipelines(path)]
    await replay(specs, {source: str(data)}, tmp_path / "replay")

    def expected(topic: str) -> list[Any]:
        path = tmp_path / "replay" / f"{topic}.jsonl"
        return [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []

    await create_topics(broker, source, users)
    app_id = f"t{tag.replace('-', '')}"
    first = FaustWorker(tmp_path / "one", broker, app_id, files).start()
    first.wait_ready()
    await produce_lines(broker, source, lines[:700], key=user_key)

    def read(worker: FaustWorker) -> dict[str, int]:
        status, body = worker.get("/sluice/api/pipelines")
        assert status == 200
        return {p["pipeline"]: p["events_in"] for p in body["pipelines"]}

    direct = ("payments-clean", "payments_eur", "payments-risk")  # they read the source
    await until(lambda: all(read(first)[p] == 700 for p in direct), 180, "processing")
    assert first.stop() == 0, first.output()  # SIGTERM: a clean stop, offsets committed
    await produce_lines(broker, source, lines[700:], key=user_key)
    second = FaustWorker(tmp_path / "two", broker, app_id, files).start()
    second.wait_ready()

    outputs = [t for t in topics.values() if t not in (source, users) and "dlq" not in t]
    for topic in outputs:
        want = expected(topic)
        # windows close once the partitions are idle for the grace (10 s) by wall clock
        got = await consume_all(broker, topic, len(want), timeout=90)
        assert canonical([orjson.loads(m.value) for m in got]) == canonical(want), topic
    letters_checked = 0
    for topic in (t for t in topics.values() if "dlq" in t):
        want = expected(topic)
        got = await consume_all(broker, topic, len(want), timeout=30)
        expected_letters = Counter(
            (d["payload"].encode(), d["error"]["step"], d["error"]["type"]) for d in want
        )
        found: Counter[tuple[bytes, str, str]] = Counter()
        for message in got:
            headers = dict(message.headers)
            found[
                (
                    message.value or b"",
                    headers["sluice.error.step"].decode(),
                    headers["sluice.error.type"].decode(),
                )
            ] += 1
            assert headers["sluice.source.topic"] == source.encode()
            assert int(headers["sluice.source.offset"]) >= 0
            assert headers["sluice.error.message"]
            assert headers["traceparent"].startswith(b"00-")
            letters_checked += 1
        assert found == expected_letters, topic
    assert letters_checked > 40
    counts = read(second)
    assert set(counts) == {s.pipeline for s in specs}
    # the second worker went on from the offsets the first committed at its stop
    assert [counts[p] for p in direct] == [len(lines) - 700] * 3
    assert second.stop() == 0, second.output()


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
