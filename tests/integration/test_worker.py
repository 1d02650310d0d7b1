"""Workers against the real broker: same results as replay, dead letters, restarts,
two workers in a group, crashes."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.config.loader import load_pipeline
from streams.offline import replay
from streams.offline.demo_data import payments, write_lines
from streams.runtime.broker import EmbeddedBroker
from tests.integration.conftest import (
    ROOT,
    Broker,
    consume_all,
    create_topics,
    produce_lines,
    unique,
)
from tests.waiting import eventually

pytestmark = pytest.mark.integration


def canonical(values: list[Any]) -> Counter[bytes]:
    return Counter(orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for v in values)


def demo_pipeline(tag: str) -> str:
    text = (ROOT / "config" / "pipelines" / "payments-clean.yaml").read_text()
    for topic in ("payments-clean", "payments-large", "payments-dlq"):
        text = text.replace(topic, f"{topic}-{tag}")
    return text.replace("topic: payments\n", f"topic: payments-{tag}\n")


async def test_worker_matches_replay_and_dead_letters_keep_bytes(
    broker: Broker, make_worker: Any, tmp_path: Path
) -> None:
    tag = unique("eq")
    text = demo_pipeline(tag)
    lines = list(payments(3000, seed=21, malformed_ratio=0.05))
    # the same input through replay: the reference
    (tmp_path / "p.yaml").write_text(text)
    source = tmp_path / "in.jsonl"
    write_lines(source, iter(lines))
    summary = await replay(load_pipeline(tmp_path / "p.yaml"), str(source), tmp_path / "replay")
    topics = [f"payments-clean-{tag}", f"payments-large-{tag}"]
    expected = {
        t: [orjson.loads(x) for x in (tmp_path / "replay" / f"{t}.jsonl").read_bytes().splitlines()]
        for t in topics
    }
    expected_dead = [
        orjson.loads(x)
        for x in (tmp_path / "replay" / f"payments-dlq-{tag}.jsonl").read_bytes().splitlines()
    ]
    assert summary.only.dead_letters == len(expected_dead) > 50

    await create_topics(broker, f"payments-{tag}")
    worker = make_worker({"clean": text})
    worker.wait_ready()
    await produce_lines(broker, f"payments-{tag}", lines)
    for topic in topics:
        got = await consume_all(broker, topic, len(expected[topic]))
        assert canonical([orjson.loads(m.value) for m in got]) == canonical(expected[topic])
    dead = await consume_all(broker, f"payments-dlq-{tag}", len(expected_dead))
    assert Counter(m.value for m in dead) == Counter(d["payload"].encode() for d in expected_dead)
    headers = [dict(m.headers) for m in dead]
    assert all(h["sluice.source.topic"] == f"payments-{tag}".encode() for h in headers)
    by_payload = {d["payload"].encode(): d["error"] for d in expected_dead}
    for message, header in zip(dead, headers, strict=True):
        error = by_payload[message.value]
        assert header["sluice.error.step"].decode() == error["step"]
        assert header["sluice.error.type"].decode() == error["type"]
        assert header["sluice.error.message"].decode() == error["message"]
        assert int(header["sluice.source.offset"]) >= 0
    assert worker.metric("sluice_events_in_total") == len(lines)
    assert worker.metric("sluice_dead_letters_total") == len(expected_dead)
    status, health = worker.get("/health")
    assert status == 200 and health == {"status": "ok"}
    assert worker.stop() == 0


STATEFUL = """
pipeline: counter-{tag}
source: {{topic: events-{tag}, key: user}}
steps:
  - component: {{class: "tests.fixtures.components:CountPerKey", config: {{limit: 1}}}}
sink: {{topic: counted-{tag}}}
"""


def user_events(count: int, users: int, start: int = 0) -> list[bytes]:
    return [orjson.dumps({"user": f"u{i % users}", "i": i}) for i in range(start, start + count)]


async def test_restart_continues_from_committed_offsets_and_recovered_state(
    broker: Broker, make_worker: Any
) -> None:
    tag = unique("rs")
    text = STATEFUL.format(tag=tag)
    await create_topics(broker, f"events-{tag}")
    first = make_worker({"counter": text})
    first.wait_ready()
    await produce_lines(broker, f"events-{tag}", user_events(600, 7))
    assert len(await consume_all(broker, f"counted-{tag}", 600, settle=0.5)) >= 600
    assert first.stop() == 0  # SIGTERM: a clean stop
    await produce_lines(broker, f"events-{tag}", user_events(400, 7, start=600))
    second = make_worker({"counter": text})
    second.wait_ready()
    results = await consume_all(broker, f"counted-{tag}", 1000, timeout=90, settle=2)
    values = [orjson.loads(m.value) for m in results]
    ids = Counter(v["i"] for v in values)
    missing = sorted(set(range(1000)) - set(ids))
    assert not missing, (len(values), len(missing), missing[:20], second.output()[-3000:])
    duplicates = sum(n - 1 for n in ids.values())
    dup_ids = sorted(i for i, n in ids.items() if n > 1)
    assert duplicates <= 200, f"{duplicates} duplicates ({dup_ids[:10]}…): more than one batch"
    # state survived the restart: each user's count carried on from the first worker
    last_seen: dict[str, int] = {}
    for v in values:
        last_seen[v["user"]] = max(last_seen.get(v["user"], 0), v["seen"])
    per_user = Counter(f"u{i % 7}" for i in range(1000))
    for user, total in per_user.items():
        seq = [(v["i"], v["seen"]) for v in values if v["user"] == user and v["i"] >= 600]
        assert total <= last_seen[user] <= total + duplicates, (user, last_seen[user], total, seq)
    assert second.stop() == 0


async def test_two_workers_share_partitions_and_take_over(broker: Broker, make_worker: Any) -> None:
    tag = unique("gr")
    text = STATEFUL.format(tag=tag)
    await create_topics(broker, f"events-{tag}")
    one = make_worker({"counter": text}, app_id="shared")
    two = make_worker({"counter": text}, app_id="shared")
    one.wait_ready()
    two.wait_ready()
    await produce_lines(broker, f"events-{tag}", user_events(2000, 50))
    results = await consume_all(broker, f"counted-{tag}", 2000, timeout=90)
    assert {orjson.loads(m.value)["i"] for m in results} == set(range(2000))
    await eventually(
        lambda: one.metric("sluice_events_in_total") + two.metric("sluice_events_in_total") >= 2000,
        10,
        "the two workers count every record",
    )
    share_one = one.metric("sluice_events_in_total")
    share_two = two.metric("sluice_events_in_total")
    assert share_one > 0 and share_two > 0, (share_one, share_two)
    assert share_one + share_two >= 2000
    # kill one: the survivor takes its partitions over and processes new events
    one.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    await produce_lines(broker, f"events-{tag}", user_events(500, 50, start=2000))
    results = await consume_all(broker, f"counted-{tag}", 2500, timeout=90, settle=0.5)
    takeover = time.monotonic() - killed_at
    missing = sorted(set(range(2500)) - {orjson.loads(m.value)["i"] for m in results})
    assert not missing, (len(missing), missing[:10], two.output())
    assert takeover < 45, f"takeover took {takeover:.1f}s"
    print(f"takeover after SIGKILL: {takeover:.1f}s")
    assert two.stop() == 0


async def test_a_data_path_crash_makes_worker_not_ready_and_exit_nonzero(
    broker: Broker, make_worker: Any
) -> None:
    tag = unique("cr")
    text = f"""
pipeline: crash-{tag}
source: {{topic: in-{tag}}}
steps:
  - component: {{class: "tests.fixtures.components:CrashOnPoison"}}
sink: {{topic: out-{tag}}}
"""
    await create_topics(broker, f"in-{tag}")
    worker = make_worker({"crash": text})
    worker.wait_ready()
    await produce_lines(broker, f"in-{tag}", [b'{"ok": 1}', b'{"poison": true}'])
    assert worker.process is not None
    try:
        code = worker.process.wait(60)
    except Exception:
        raise AssertionError(worker.output()) from None
    assert code == 70, worker.output()
    assert "poison pill" in worker.output()
    assert "crashed" in worker.output()


async def test_ready_turns_false_when_the_broker_goes_away(make_worker: Any) -> None:
    tag = unique("down")
    text = f"pipeline: down-{tag}\nsource: {{topic: in-{tag}}}\nsink: {{topic: out-{tag}}}\n"
    with EmbeddedBroker() as private:
        await create_topics(private, f"in-{tag}")
        worker = make_worker({"down": text}, broker_url=private.url)
        worker.wait_ready()
        status, body = worker.get("/ready")
        assert status == 200 and body["checks"]["broker_reachable"] is True
    # the broker is gone: within a few probe intervals the worker says so
    await eventually(lambda: worker.get("/ready")[0] == 503, 20, "/ready turns 503")
    status, body = worker.get("/ready")
    assert body["ready"] is False and body["checks"]["broker_reachable"] is False


async def test_a_stalled_worker_is_not_ready_and_says_why(broker: Broker, make_worker: Any) -> None:
    """No progress for processing.stall_timeout while records wait (here an async
    component awaiting for 10 s, under its timeout): /ready turns false naming it, one
    log line, and ready again once records flow (issue 17)."""
    tag = unique("stall")
    text = f"""
pipeline: stall-{tag}
source: {{topic: in-{tag}}}
steps:
  - component: {{class: "tests.fixtures.components:SleepyAsync", timeout: 60s}}
sink: {{topic: out-{tag}}}
"""
    await create_topics(broker, f"in-{tag}", partitions=1)
    worker = make_worker({"stall": text}, processing=", stall_timeout: 2s")
    worker.wait_ready()
    await produce_lines(broker, f"in-{tag}", [b'{"sleep": 10}', *([b'{"sleep": 0}'] * 5)])
    await eventually(lambda: worker.get("/ready")[0] == 503, 9, "/ready turns 503")
    _, body = worker.get("/ready")
    assert body["checks"]["making_progress"] is False, body
    assert worker.output().count("stalled: no record processed") == 1
    # the slow record finishes: everything flows and the worker is ready again
    assert len(await consume_all(broker, f"out-{tag}", 6, timeout=30)) == 6
    await eventually(lambda: worker.get("/ready")[0] == 200, 10, "ready again")
    assert worker.stop() == 0


async def test_a_result_too_large_to_send_is_an_oversize_dead_letter(
    broker: Broker, make_worker: Any
) -> None:
    """A map can build a record larger than the broker takes: that record becomes an
    `oversize` dead letter of its input (step `sink`), the others go on, the worker
    stays up — instead of a batch that fails every retry."""
    tag = unique("big")
    text = f"""
pipeline: big-{tag}
source: {{topic: in-{tag}}}
steps:
  - map: {{n: n, padding: "repeat('x', n)"}}
sink: {{topic: out-{tag}}}
dlq: {{topic: dlq-{tag}}}
"""
    await create_topics(broker, f"in-{tag}")
    worker = make_worker({"big": text})
    worker.wait_ready()
    await produce_lines(broker, f"in-{tag}", [b'{"n": 10}', b'{"n": 2000000}', b'{"n": 20}'])
    out = await consume_all(broker, f"out-{tag}", 2)
    assert sorted(orjson.loads(m.value)["n"] for m in out) == [10, 20]
    [letter] = await consume_all(broker, f"dlq-{tag}", 1)
    headers = dict(letter.headers)
    assert letter.value == b'{"n": 2000000}'
    assert headers["sluice.error.type"] == b"oversize"
    assert headers["sluice.error.step"] == b"sink"
    _, metrics = worker.get("/metrics")
    series = f'sluice_dead_letters_total{{pipeline="big-{tag}",step="sink",type="oversize"}}'
    assert f"{series} 1.0" in metrics
    assert worker.get("/ready")[0] == 200
    assert worker.stop() == 0
