"""The worker runs as deploy/kubernetes/ runs it: root filesystem, working directory and
config read-only; only /tmp and the working directory's .sluice-data writable.

A private mount namespace (`unshare -m`, so root) stands in for the container: the root
filesystem is remounted read-only, /tmp gets a fresh tmpfs, the config directories (the
rendered ConfigMaps) and the working directory are read-only binds, .sluice-data a
writable one. The worker is driven through the CLI only; a write anywhere else fails it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.offline.demo_data import payments
from streams.runtime.broker import EmbeddedBroker, free_port
from tests.integration.conftest import ROOT, SLUICE, http_get, produce_lines
from tests.kustomize import KUBERNETES, render

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        sys.platform != "linux" or os.geteuid() != 0 or shutil.which("unshare") is None,
        reason="needs root and unshare (a mount namespace)",
    ),
]


@pytest.fixture
def broker(tansu: EmbeddedBroker) -> EmbeddedBroker:
    """The embedded broker only: what this module tests does not depend on the broker."""
    return tansu


SHM = Path("/dev/shm")  # a mount of its own: stays writable when / turns read-only


@pytest.fixture
def layout() -> Iterator[Path]:
    """/etc/sluice/{config,pipelines} from the base's ConfigMaps, an app directory, a data
    directory; under /dev/shm, outside the root filesystem the test makes read-only."""
    top = SHM / f"sluice-ro-{uuid.uuid4().hex[:8]}"
    for folder in ("etc/config", "etc/pipelines", "app/.sluice-data", "data", "new-data"):
        (top / folder).mkdir(parents=True)
    for resource in render(KUBERNETES / "base"):
        if resource["kind"] == "ConfigMap":
            folder = (
                "config"
                if resource["metadata"]["name"].startswith("sluice-config")
                else "pipelines"
            )
            for key, text in resource["data"].items():
                (top / "etc" / folder / key).write_text(text)
    try:
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def namespace_script(top: Path, data: str) -> str:
    # The checkout stays writable (coverage's data files go there): a mount of its own is
    # untouched by the read-only remount of /; on the root filesystem it is bound onto itself
    # first; under /tmp (as a CI may clone it) it would vanish under the fresh tmpfs, so it is
    # set aside and bound back as it was.
    keep, restore = f"mount --bind {ROOT} {ROOT}", ""
    if ROOT.is_relative_to("/tmp"):
        keep = f"mkdir -p {top}/checkout && mount --bind {ROOT} {top}/checkout"
        restore = f"mkdir -p {ROOT} && mount --bind {top}/checkout {ROOT}"
    return f"""
set -e
mount --make-rprivate /
{keep}
mount --bind {top}/app {top}/app && mount -o remount,bind,ro {top}/app
mount --bind {top}/etc {top}/etc && mount -o remount,bind,ro {top}/etc
mount --bind {top}/{data} {top}/app/.sluice-data
mount -o remount,bind,ro /
mount -t tmpfs -o size=256m tmpfs /tmp
{restore}
cd {top}/app
if touch /sluice-probe 2>/dev/null; then echo 'the root filesystem is writable'; exit 3; fi
exec {SLUICE} worker --config {top}/etc/config
"""


@pytest.mark.parametrize(
    ("store", "second_volume"),
    [
        ("memory://", "data"),
        # a restarted pod (its claim, its state) and a pod KEDA added (an empty claim; the
        # changelog holds the state)
        ("rocksdb://", "data"),
        ("rocksdb://", "new-data"),
    ],
)
def test_worker_needs_only_tmp_and_its_data_directory_writable(
    store: str, second_volume: str, broker: EmbeddedBroker, layout: Path, tmp_path: Path
) -> None:
    if store == "rocksdb://":
        pytest.importorskip("rocksdict", reason="the rocksdb extra is not installed")
    port = free_port()
    env = {
        **os.environ,
        "SLUICE_BROKERS": broker.url,
        "SLUICE_APP_ID": f"ro{uuid.uuid4().hex[:8]}",
        "SLUICE_STORE": store,
        "SLUICE_WEB__HOST": "127.0.0.1",
        "SLUICE_WEB__PORT": str(port),
        "PYTHONDONTWRITEBYTECODE": "1",  # as the image sets it
        "PYTHONPATH": str(ROOT),
    }
    lines = list(payments(500, seed=7))
    # twice: the second run recovers its tables, with the first run's data directory
    # (a restarted pod) or an empty one (a new pod)
    for run, data in ((1, "data"), (2, second_volume)):
        log = tmp_path / f"worker-{run}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["unshare", "-m", "bash", "-c", namespace_script(layout, data)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            wait_for(lambda: http_get(port, "/ready")[0] == 200, process, log)
            asyncio.run(produce_lines(broker, "payments", lines))
            wait_for(lambda: events_in(port) >= 2 * len(lines), process, log)
            os.killpg(process.pid, signal.SIGTERM)
            code = process.wait(40)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        text = log.read_text(errors="replace")
        assert code == 0, text[-3000:]
        assert "Read-only file system" not in text
    if store == "rocksdb://":
        assert any((layout / second_volume).rglob("CURRENT")), "rocksdb state in .sluice-data"


def events_in(port: int) -> float:
    _, text = http_get(port, "/metrics")
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in str(text).splitlines()
        if line.startswith("sluice_events_in_total{")
    )


def wait_for(condition: Any, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            if condition():
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(log.read_text(errors="replace")[-3000:])
