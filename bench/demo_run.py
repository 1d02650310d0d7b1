"""`make run` left running (issue 22, case 9): `sluice run --demo` with the shipped config
on the embedded broker, sampled every few seconds — /ready, the events each pipeline has
read, the payments the demo has produced, memory and CPU of sluice and of the broker.

    .venv/bin/python -m bench.demo_run --minutes 60 --every 30 \
        --out bench/results/demo-hour-20261206.log          # the demo as `make run` runs it
    .venv/bin/python -m bench.demo_run --minutes 2.5 --every 5 --rate 600 --step 0.04

`--step S` (`sluice run --demo-step`) sends the demo's record batches every S seconds
instead of every second: with S = 1/K a minute makes the record batches of K minutes of
`make run`, and the embedded broker's cost grows with the batches a partition holds
(streams/runtime/demo_traffic.py); `--rate` sets how many records they carry.
Each sample is one JSON line; the log starts with a line describing the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson
from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords

from bench.support import ROOT, cpu_seconds, load_average, machine, rss_bytes
from streams.runtime.broker import free_port
from streams.runtime.demo_traffic import DEMO_STEP_SECONDS, DEMO_TOPIC

DEMO_RATE = 200.0  # `sluice run --demo`'s default --rate
SLUICE = Path(sys.executable).with_name("sluice")


@dataclass
class Sample:
    t: float  # seconds since the demo began
    ready: bool
    failing: list[str]  # the /ready checks that are false
    events_in: dict[str, int]  # per pipeline
    produced: int | None  # records on `payments` (end offsets), the demo's output
    sluice_rss_mb: float | None
    broker_rss_mb: float | None
    broker_cpu_s: float | None
    sluice_cpu_s: float | None
    load: list[float] = field(default_factory=load_average)


class DemoRun:
    """`sluice run --demo` in a subprocess, on free ports, its log in `folder`."""

    def __init__(self, folder: Path, rate: float, step: float) -> None:
        self.folder = folder
        self.rate = rate
        self.step = step
        self.web_port = free_port()
        self.broker_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.began = 0.0

    def start(self) -> DemoRun:
        config = self.folder / "config"
        shutil.copytree(ROOT / "config", config)
        command = [str(SLUICE), "run", "--demo", "--config", str(config)]
        command += ["--rate", f"{self.rate:g}", "--demo-step", f"{self.step:g}"]
        command += ["--broker-port", str(self.broker_port)]
        with (self.folder / "sluice.log").open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - our own command
                command,
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "SLUICE_WEB__PORT": str(self.web_port)},
            )
        self.began = time.monotonic()
        return self

    @property
    def broker_pid(self) -> int | None:
        """The embedded broker's process: the one listening on our broker port."""
        pattern = f"tcp://127.0.0.1:{self.broker_port}\0".encode()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if pattern in (entry / "cmdline").read_bytes():
                        return int(entry.name)
        return None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def get(self, path: str, timeout: float = 5.0) -> Any:
        url = f"http://127.0.0.1:{self.web_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return orjson.loads(response.read())
        except urllib.error.HTTPError as error:  # /ready answers 503 when not ready
            return orjson.loads(error.read())

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"sluice run exited: {self.log_tail()}")
            with contextlib.suppress(OSError, orjson.JSONDecodeError):
                if self.get("/ready", timeout=1)["ready"]:
                    self.began = time.monotonic()
                    return
            time.sleep(0.2)
        raise RuntimeError(f"sluice run was not ready in {timeout:.0f}s: {self.log_tail()}")

    def produced(self) -> int | None:
        """Records on `payments`: the sum of its partitions' high watermarks, from a fetch
        (tansu 0.6.0 answers ListOffsets(latest) with the last batch's base offset + 1)."""
        return asyncio.run(high_watermarks(f"127.0.0.1:{self.broker_port}", DEMO_TOPIC))

    def sample(self) -> Sample:
        ready: dict[str, Any] = {}
        pipelines: dict[str, Any] = {}
        with contextlib.suppress(OSError, orjson.JSONDecodeError):
            ready = self.get("/ready")
            pipelines = self.get("/api/pipelines")
        pid = self.process.pid if self.process is not None else None
        broker = self.broker_pid
        sluice_rss, broker_rss = rss_bytes(pid), rss_bytes(broker)
        return Sample(
            t=round(time.monotonic() - self.began, 1),
            ready=bool(ready.get("ready")),
            failing=sorted(k for k, ok in ready.get("checks", {}).items() if not ok),
            events_in={p["pipeline"]: p["events_in"] for p in pipelines.get("pipelines", [])},
            produced=self.produced(),
            sluice_rss_mb=round(sluice_rss / 2**20, 1) if sluice_rss else None,
            broker_rss_mb=round(broker_rss / 2**20, 1) if broker_rss else None,
            broker_cpu_s=cpu_seconds(broker),
            sluice_cpu_s=cpu_seconds(pid),
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.folder / "sluice.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # Ctrl-C, as a person stops `make run`
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        return process.returncode


@contextlib.contextmanager
def demo_run(
    rate: float = DEMO_RATE, step: float = DEMO_STEP_SECONDS, folder: Path | None = None
) -> Iterator[DemoRun]:
    """The demo at `rate` records/s in batches every `step` seconds, ready; stopped
    (Ctrl-C) on the way out."""
    with contextlib.ExitStack() as stack:
        if folder is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="demo-run-")))
        run = DemoRun(folder, rate, step).start()
        try:
            run.wait_ready()
            yield run
        finally:
            run.stop()


def samples(run: DemoRun, seconds: float, every: float) -> Iterator[Sample]:
    """A sample every `every` seconds for `seconds` (the first after `every`)."""
    while True:
        due = run.began + every * (1 + int((time.monotonic() - run.began) / every))
        if due - run.began > seconds:
            return
        time.sleep(max(0.0, due - time.monotonic()))
        yield run.sample()


async def high_watermarks(address: str, topic: str) -> int | None:
    """The sum of `topic`'s partitions' high watermarks, from one fetch of a byte at 0."""
    client = AIOKafkaClient(bootstrap_servers=address, request_timeout_ms=10_000)
    try:
        await client.bootstrap()
        await client.force_metadata_update()
        partitions = sorted(client.cluster.partitions_for_topic(topic) or [])
        node = next(iter(client.cluster.brokers())).nodeId
        # max_wait 0 gets tansu 0.6.0 to answer with no partitions at all
        request = FetchRequest(10, 1, 1, 0, [(topic, [(p, 0, 1) for p in partitions])])
        response = await client.send(node, request)
        # (partition, error_code, high_watermark, ...) in every fetch version aiokafka sends
        return sum(int(part[2]) for _, parts in response.topics for part in parts)
    except (KafkaError, OSError, StopIteration):
        return None  # a sample without it says so
    finally:
        await client.close()


async def batches_per_partition(address: str, topics: list[str]) -> dict[str, list[int]]:
    """Record batches in each partition of `topics`, read from offset 0 to the high
    watermark: what each of the broker's fetches lists. RuntimeError if a partition
    cannot be read to its end."""
    client = AIOKafkaClient(bootstrap_servers=address, request_timeout_ms=60_000)
    found: dict[str, list[int]] = {}
    try:
        await client.bootstrap()
        await client.force_metadata_update()
        node = next(iter(client.cluster.brokers())).nodeId
        for topic in topics:
            counts = []
            for partition in sorted(client.cluster.partitions_for_topic(topic) or []):
                batches, offset, end, empty = 0, 0, 1, 0
                while offset < end:
                    wanted = [(topic, [(partition, offset, 8 << 20)])]
                    response = await client.send(node, FetchRequest(10, 1, 8 << 20, 0, wanted))
                    part = response.topics[0][1][0] if response.topics else None
                    if part is not None:
                        end = int(part[2])
                    if part is None or (offset < end and not part[-1]):
                        empty += 1  # a busy broker may answer empty: ask again
                        if empty > 20:
                            raise RuntimeError(f"{topic}[{partition}] not read past {offset}")
                        await asyncio.sleep(0.2)
                        continue
                    records = MemoryRecords(part[-1]) if part[-1] else None
                    while records is not None and (batch := records.next_batch()) is not None:
                        batches += 1
                        offset = batch.next_offset
                counts.append(batches)
            found[topic] = counts
    finally:
        await client.close()
    return found


def write(out: TextIO, line: dict[str, Any]) -> None:
    out.write(orjson.dumps(line).decode() + "\n")
    out.flush()


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM too stops the demo the way Ctrl-C does


def main() -> None:
    signal.signal(signal.SIGTERM, _interrupted)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--rate", type=float, default=DEMO_RATE, help="demo records/s")
    parser.add_argument("--step", type=float, default=DEMO_STEP_SECONDS, help="seconds a batch")
    parser.add_argument("--out", type=Path, help="the log (default: stdout)")
    parser.add_argument("--folder", type=Path, help="where sluice runs and logs (default: temp)")
    args = parser.parse_args()
    out = args.out.open("a") if args.out else sys.stdout
    if args.folder:
        args.folder.mkdir(parents=True, exist_ok=True)
    with demo_run(args.rate, args.step, args.folder) as run:
        write(
            out,
            {
                "run": "sluice run --demo (shipped config, embedded broker)",
                "rate": run.rate,
                "demo_step": run.step,
                "minutes": args.minutes,
                "every": args.every,
                "sluice_pid": run.process.pid if run.process else None,
                "broker_pid": run.broker_pid,
                "folder": str(run.folder),
                "machine": machine(),
            },
        )
        for sample in samples(run, args.minutes * 60, args.every):
            write(out, asdict(sample))
            if not run.alive():
                write(out, {"exited": run.process.poll() if run.process else None})
                break
    write(out, {"stopped": True, "exit_code": run.process.poll() if run.process else None})


if __name__ == "__main__":
    main()
