"""Every line a worker writes is one JSON object in the product spec's shape.

Drives `sluice run --demo` only through the command line and reads only its output, so it
holds whatever the runtime underneath becomes: the shipped pipelines (dead letters from the
demo's malformed payments, the risk pipeline's alert) plus one with a component that logs
with `ctx.log`, fires an alert within seconds and makes library code (aiokafka, asyncio,
the warnings module, a dying thread) write what it writes when things go wrong.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SLUICE = Path(sys.executable).parent / "sluice"
SHAPE = ["timestamp", "level", "component", "trace_id", "message", "metadata"]
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
NOISY_PIPELINE = """
pipeline: log-shape
source: {topic: payments, key: user_id}
steps:
  - component: {class: "tests.fixtures.components:LibraryNoise"}
  - alert: {name: large_payment, when: "amount > 1000", key: user_id, to: log-shape-alerts}
sink: {topic: log-shape-out}
dlq: {topic: log-shape-dlq}
"""

# what the run must have logged before it is stopped: (what, test of one entry)
WANTED: dict[str, Any] = {
    "a dead letter": lambda e: (
        e["message"].startswith("dead letter") and e["metadata"].get("error_type")
    ),
    "an alert": lambda e: e["metadata"].get("alert") == "large_payment",
    "a ctx.log line": lambda e: e["component"].startswith("sluice.component.") and e["trace_id"],
    # aiokafka's own ERROR line: missing from 2 of 3 CI runs on 2026-12-06 because two
    # clients starting at once left the aiokafka logger silenced for good (runtime/kafka.py
    # _quiet_bootstrap, fixed); never logged at all by then on the merged engine
    "aiokafka": lambda e: e["component"].startswith("aiokafka") and e["level"] == "ERROR",
    "the warnings module": lambda e: e["component"] == "py.warnings",
    "asyncio": lambda e: e["component"] == "asyncio" and "exception" in e["metadata"],
    "a dying thread": lambda e: "a thread dies" in e["message"],
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def entries(path: Path) -> list[dict[str, Any]]:
    """Every line, parsed; a line that is not a JSON object fails the test here."""
    found = []
    text = path.read_text(errors="replace")
    for number, line in enumerate(text.splitlines(), 1):
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise AssertionError(f"{path.name}:{number} is not JSON: {line[:300]!r}") from None
        assert isinstance(entry, dict), f"{path.name}:{number}: {line[:300]!r}"
        found.append(entry)
    return found


def missing(found: list[dict[str, Any]]) -> list[str]:
    return [
        what
        for what, test in WANTED.items()
        if not any(list(e) == SHAPE and isinstance(e["metadata"], dict) and test(e) for e in found)
    ]


def test_every_line_of_a_demo_run_has_the_spec_shape(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    (config / "pipelines" / "log-shape.yaml").write_text(NOISY_PIPELINE)
    stdout, stderr = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [str(SLUICE), "run", "--demo", "--rate", "200", "--config", str(config)],
            stdout=out,
            stderr=err,
            cwd=tmp_path,
            env={**os.environ, "SLUICE_WEB__PORT": str(free_port()), "PYTHONPATH": str(ROOT)},
        )
        try:
            deadline = time.monotonic() + 120
            while missing(entries(stderr)) and time.monotonic() < deadline:
                assert process.poll() is None, stderr.read_text(errors="replace")[-3000:]
                time.sleep(0.5)
            process.send_signal(signal.SIGINT)
            code = process.wait(40)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)

    lines = entries(stdout) + entries(stderr)
    assert code == 0, stderr.read_text(errors="replace")[-3000:]
    assert not missing(lines), f"never logged: {missing(lines)}"
    for entry in lines:
        assert list(entry) == SHAPE, entry
        assert TIMESTAMP.match(entry["timestamp"]), entry
        assert entry["level"] in LEVELS, entry
        assert isinstance(entry["component"], str) and entry["component"], entry
        assert entry["trace_id"] is None or re.fullmatch(r"[0-9a-f]{32}", entry["trace_id"]), entry
        assert isinstance(entry["message"], str), entry
        assert isinstance(entry["metadata"], dict), entry
    components = {e["component"] for e in lines}
    assert {"sluice.cli", "sluice.pipeline", "py.warnings", "asyncio"} <= components, components
    dead = [e for e in lines if "error_type" in e["metadata"]]
    assert dead and all(
        e["trace_id"] and {"pipeline", "step", "error_type"} <= set(e["metadata"]) for e in dead
    )
