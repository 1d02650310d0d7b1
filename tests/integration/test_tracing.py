"""Trace context and logs on a real worker: a record's W3C trace id goes from its input
to the sink, the alert and the dead-letter topic, and the worker's JSON log lines about
it carry that trace id and the pipeline (in `metadata`)."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from streams.core.tracing import trace_id_of
from tests.integration.conftest import Broker, consume_all, create_topics, unique

pytestmark = pytest.mark.integration

PIPELINE = """
pipeline: trace-{tag}
source: {{topic: in-{tag}, key: user}}
steps:
  - validate: {{schema: {{user: str, n: int}}}}
  - component: {{class: "tests.fixtures.components:LogEach"}}
  - alert: {{name: big, when: "n > 100", key: user, to: alerts-{tag}}}
sink: {{topic: out-{tag}}}
dlq: {{topic: dlq-{tag}}}
"""

TRACE_A = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACE_B = "0af7651916cd43dd8448eb211c80319c"


def traceparent(trace_id: str) -> bytes:
    return f"00-{trace_id}-00f067aa0ba902b7-01".encode()


async def produce(broker: Broker, topic: str, records: list[tuple[bytes, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.address)
    await producer.start()
    try:
        for value, headers in records:
            await producer.send_and_wait(topic, value, key=b"u1", headers=headers)
    finally:
        await producer.stop()


def header(message: Any, name: str) -> bytes:
    found: bytes = dict(message.headers)[name]
    return found


def log_lines(text: str) -> list[dict[str, Any]]:
    found = []
    for line in text.splitlines():
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # not a log line
        if isinstance(entry, dict):
            found.append(entry)
    return found


async def test_trace_id_flows_from_input_to_every_output_and_into_logs(
    broker: Broker, make_worker: Any
) -> None:
    tag = unique("tr")
    await create_topics(broker, f"in-{tag}")
    worker = make_worker({"trace": PIPELINE.format(tag=tag)})
    worker.wait_ready()
    await produce(
        broker,
        f"in-{tag}",
        [
            (b'{"user": "u1", "n": 500}', [("traceparent", traceparent(TRACE_A))]),
            (b'{"user": "u1", "n": "many"}', [("traceparent", traceparent(TRACE_B))]),
            (b'{"user": "u1", "n": 1}', []),
        ],
    )
    out = await consume_all(broker, f"out-{tag}", 2, settle=0.5)
    alerts = await consume_all(broker, f"alerts-{tag}", 2, settle=0.5)
    dead = await consume_all(broker, f"dlq-{tag}", 1, settle=0.2)
    assert len(out) == 2 and len(dead) == 1 and len(alerts) == 2  # firing, then resolved

    by_n = {orjson.loads(m.value)["n"]: m for m in out}
    traced = header(by_n[500], "traceparent")
    assert trace_id_of(traced) == TRACE_A
    assert traced != traceparent(TRACE_A), "sluice continues the trace with a span of its own"
    fresh = trace_id_of(header(by_n[1], "traceparent"))
    assert fresh is not None and fresh not in (TRACE_A, TRACE_B)

    statuses = {orjson.loads(m.value)["status"]: m for m in alerts}
    assert trace_id_of(header(statuses["firing"], "traceparent")) == TRACE_A
    assert trace_id_of(header(statuses["resolved"], "traceparent")) == fresh
    assert trace_id_of(header(dead[0], "traceparent")) == TRACE_B
    assert dead[0].value == b'{"user": "u1", "n": "many"}'

    pipeline = f"trace-{tag}"
    deadline = time.monotonic() + 10
    while True:
        entries = log_lines(worker.log_path.read_text(errors="replace"))
        about = {(e["message"].split(":")[0], e["trace_id"]) for e in entries if e["trace_id"]}
        if ("alert big firing", TRACE_A) in about or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    shape = ["timestamp", "level", "component", "trace_id", "message", "metadata"]
    assert all(list(e) == shape for e in entries)
    component = [e for e in entries if e["message"] == "component saw u1"]
    assert {e["trace_id"] for e in component} == {TRACE_A, fresh}
    assert {e["metadata"]["pipeline"] for e in component} == {pipeline}
    assert {e["metadata"]["step"] for e in component} == {"component"}
    [letter] = [e for e in entries if e["message"].startswith("dead letter")]
    assert letter["trace_id"] == TRACE_B and letter["metadata"]["pipeline"] == pipeline
    assert letter["level"] == "WARNING" and letter["metadata"]["step"] == "validate"
    assert ("alert big firing", TRACE_A) in about
    status, body = worker.get("/api/pipelines")
    assert status == 200
    assert body["pipelines"][0]["recent_dead_letters"][0]["trace_id"] == TRACE_B
    assert worker.stop() == 0
