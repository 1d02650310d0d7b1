"""`sluice run --demo`, as `make run` starts it: broker, worker, endpoints, traffic."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import orjson
import pytest

from streams.runtime.broker import free_port
from tests.integration.conftest import ROOT, SLUICE

pytestmark = pytest.mark.integration
SINK_COUNTER = r'sluice_events_out_total\{pipeline="payments-clean",topic="payments-clean"\} [1-9]'


def test_run_demo_brings_everything_up_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    config = tmp_path / "config"
    shutil.copytree(ROOT / "config", config)
    port = free_port()
    process = subprocess.Popen(
        [str(SLUICE), "run", "--demo", "--rate", "300", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env={**os.environ, "SLUICE_WEB__PORT": str(port), "PYTHONPATH": str(ROOT)},
    )
    banner = b""
    try:
        deadline = time.monotonic() + 90
        metrics = ""
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
                    metrics = r.read().decode()
                if re.search(SINK_COUNTER, metrics):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError(f"no results in 90s:\n{metrics[-2000:]}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
            assert orjson.loads(r.read())["ready"] is True
        process.send_signal(signal.SIGINT)
        code = process.wait(30)
        banner = process.stderr.read() if process.stderr else b""
    finally:
        if process.poll() is None:
            process.kill()
    assert code == 0, banner.decode(errors="replace")[-6000:]
    text = banner.decode()
    assert "watch results:" in text and "sluice consume payments-clean" in text
    url = re.search(r"on kafka://127\.0\.0\.1:(\d+) \(embedded broker\)", text)
    assert url, text[:2000]
    left = subprocess.run(
        ["pgrep", "-f", f"tcp://127.0.0.1:{url.group(1)}"],
        capture_output=True,
        check=False,
    )
    assert left.stdout == b"", "the embedded broker outlived `sluice run`"
