"""The Prometheus configuration and alert rules, checked and unit-tested by promtool
(Debian's prometheus package; `.ci/run` installs it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

FOLDER = Path(__file__).resolve().parents[2] / "config" / "prometheus"


def promtool(*args: str) -> str:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: apt-get install prometheus (.ci/run does)"
    done = subprocess.run(
        [binary, *args], cwd=FOLDER, capture_output=True, text=True, check=False, timeout=60
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("check", "config", "prometheus.yml"), "1 rule files found"),
        (("check", "rules", "alerts.yml"), "4 rules found"),
        (("test", "rules", "alerts.test.yml"), "SUCCESS"),
    ],
)
def test_promtool(args: tuple[str, ...], expected: str) -> None:
    assert expected in promtool(*args)
