"""A Faust app of a test's own, written the way docs/faust.md shows (`faust.App`, then
`attach`), run as `faust -A app worker` in a subprocess; and the shipped pipelines with
their topics renamed for one test (the session's brokers are shared)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.config.loader import load_pipelines, pipeline_files
from streams.runtime.broker import free_port
from streams.sql.explain import explain
from tests.integration.conftest import ROOT, Broker, http_get

_TOPIC = re.compile(r"\b(topic|to|else): ([A-Za-z0-9._-]+)")
_PIPELINE = re.compile(r"^pipeline: ([^\s#]+)", re.MULTILINE)
FAUST = Path(sys.executable).parent / "faust"

APP = """\
import os

import faust

from models.settings import Settings
from streams.faust import attach

app = faust.App(
    os.environ["TEST_APP_ID"],
    broker=os.environ["TEST_BROKER"],
    web_port=int(os.environ["TEST_WEB_PORT"]),
    web_bind="127.0.0.1",
    web_host="127.0.0.1",
    broker_session_timeout=10,  # tansu admits a member in about half of it
    broker_heartbeat_interval=1,
    topic_partitions=4,
    # Faust commits what is acked every 2.8 s; a test names a worker that never commits
    broker_commit_interval=float(os.environ.get("TEST_COMMIT_INTERVAL_S", "2.8")),
)
agents = attach(
    app,
    *os.environ["TEST_PIPELINES"].split(os.pathsep),
    settings=Settings(processing={{"batch_max": 200, "batch_within_ms": 20}}),
)
{extra}
"""


def shipped_pipelines(folder: Path, tag: str) -> tuple[list[Path], dict[str, str]]:
    """config/pipelines/* as single-pipeline YAML files in `folder`, every topic `T`
    renamed `T-<tag>`; returns the files and the renaming. Pipelines with a `join` are left
    out: `attach` refuses them (test_a_join_is_refused_with_one_clear_error)."""
    folder.mkdir(parents=True, exist_ok=True)
    texts: list[str] = []
    for path in pipeline_files(ROOT / "config" / "pipelines"):
        if path.suffix == ".sql":
            texts += [text for _, text in explain(path)]
        else:
            texts.append(path.read_text())
    renamed: dict[str, str] = {}

    def rename(match: re.Match[str]) -> str:
        name = match.group(2)
        return f"{match.group(1)}: {renamed.setdefault(name, f'{name}-{tag}')}"

    files = []
    for original in texts:
        before = dict(renamed)
        text = _TOPIC.sub(rename, original)
        path = folder / f"{_PIPELINE.search(text).group(1)}.yaml"  # type: ignore[union-attr]
        path.write_text(text)
        if any(spec.join is not None for spec in load_pipelines(path)):  # valid as written
            path.unlink()
            renamed.clear()
            renamed.update(before)  # none of its own topics: nothing is expected of them
            continue
        files.append(path)
    return files, renamed


class FaustWorker:
    """`faust -A app worker` on a test's app module, with its own web port (killed at
    the end of the test, whatever happened: `running_workers`)."""

    started: list[FaustWorker] = []

    def __init__(
        self, folder: Path, broker: Broker, app_id: str, pipelines: list[Path], extra: str = ""
    ) -> None:
        self.folder = folder
        self.port = free_port()
        self.log_path = folder / "worker.log"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "app.py").write_text(APP.format(extra=extra))
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)]),
            "TEST_APP_ID": app_id,
            "TEST_BROKER": broker.url,
            "TEST_WEB_PORT": str(self.port),
            "TEST_PIPELINES": os.pathsep.join(str(p) for p in pipelines),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> FaustWorker:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(FAUST), "-A", "app", "worker", "-l", "info"],
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        FaustWorker.started.append(self)
        return self

    @classmethod
    def adopt(cls, process: subprocess.Popen[bytes], port: int, log_path: Path) -> FaustWorker:
        """A worker the test started itself (its own app module and command)."""
        worker = cls.__new__(cls)
        worker.folder, worker.port, worker.log_path = log_path.parent, port, log_path
        worker.env, worker.process = {}, process
        cls.started.append(worker)
        return worker

    @classmethod
    def kill_all(cls) -> None:
        for worker in cls.started:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait(10)
        cls.started.clear()

    def get(self, path: str) -> tuple[int, Any]:
        return http_get(self.port, path)

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited {self.process.returncode}:\n{self.output()}")
            try:
                if self.get("/sluice/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"worker not ready in {timeout}s:\n{self.output()}")

    def metric(self, name: str) -> float:
        _, text = self.get("/sluice/metrics")
        total = 0.0
        for line in str(text).splitlines():
            if line.startswith((name + "{", name + " ")):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(f"no exit {timeout}s after {sig}:\n{self.output()}") from None

    def wait_exit(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def output(self, limit: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-limit:]


@pytest.fixture(autouse=True)
def no_faust_worker_left() -> Iterator[None]:
    """Every `faust worker` a test started is killed at its end, whatever happened (a test
    module imports this fixture to use it)."""
    yield
    FaustWorker.kill_all()
