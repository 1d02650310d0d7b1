"""sluice produce / consume / broker against the real broker."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from streams.offline.demo_data import payments, write_lines
from streams.runtime.broker import free_port
from tests.integration.conftest import SLUICE, Broker, create_topics, produce_lines, unique

pytestmark = pytest.mark.integration


def sluice(
    broker_url: str, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(SLUICE), *args],
        capture_output=True,
        input=stdin,
        timeout=90,
        check=False,
        env={**os.environ, "SLUICE_BROKERS": broker_url},
    )


async def test_produce_then_consume_round_trip(broker: Broker, tmp_path: Path) -> None:
    topic = unique("rt")
    await create_topics(broker, topic)
    source = tmp_path / "in.jsonl"
    write_lines(source, payments(300, malformed_ratio=0))
    produced = sluice(broker.url, "produce", topic, "--input", str(source), "--key", "user_id")
    assert produced.returncode == 0, produced.stderr
    assert b"sent 300 messages" in produced.stderr
    consumed = sluice(broker.url, "consume", topic, "--from-beginning", "--limit", "300")
    assert consumed.returncode == 0, consumed.stderr
    got = sorted(orjson.loads(line)["payment_id"] for line in consumed.stdout.splitlines())
    expected = sorted(orjson.loads(line)["payment_id"] for line in source.read_bytes().splitlines())
    assert got == expected
    envelope = sluice(
        broker.url, "consume", topic, "--from-beginning", "--limit", "5", "--envelope"
    )
    for line in envelope.stdout.splitlines():
        record = orjson.loads(line)
        assert set(record) == {"topic", "partition", "offset", "key", "headers", "value"}
        assert record["key"] == record["value"]["user_id"] and record["topic"] == topic


async def test_consume_prints_non_json_values_as_json_strings(broker: Broker) -> None:
    topic = unique("raw")
    await create_topics(broker, topic, partitions=1)
    await produce_lines(broker, topic, [b"plain text", b'{"a": 1}', b"\xff\xfe"])
    consumed = sluice(broker.url, "consume", topic, "--from-beginning", "--limit", "3")
    assert [orjson.loads(line) for line in consumed.stdout.splitlines()] == [
        "plain text",
        {"a": 1},
        "\\xff\\xfe",
    ]


def test_unreachable_broker_is_a_clear_error() -> None:
    port = free_port()
    result = sluice(f"kafka://127.0.0.1:{port}", "consume", "anything", "--limit", "1")
    assert result.returncode == 1
    message = result.stderr.decode()
    assert f"cannot reach Kafka at kafka://127.0.0.1:{port}" in message
    assert "Traceback" not in message


def test_broker_command_starts_and_stops_cleanly() -> None:
    port = free_port()
    process = subprocess.Popen([str(SLUICE), "broker", "--port", str(port)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        import socket

        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("broker did not listen")
        busy = subprocess.run(
            [str(SLUICE), "broker", "--port", str(port)],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert busy.returncode == 1 and b"already in use" in busy.stderr
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0
    left = subprocess.run(
        ["pgrep", "-f", f"tcp://127.0.0.1:{port}"],
        capture_output=True,
        check=False,
    )
    assert left.stdout == b"", "the tansu process outlived `sluice broker`"
