"""A zombie round (issue 22 cases 1 and 2): two workers of one group run the takeover
pipeline while events stream in; one stops itself (SIGSTOP, streams.runtime.faults) at a
named point inside a checkpoint, stays stopped beyond the session timeout while the other
takes its partitions and goes on, and is then resumed (SIGCONT) — a GC pause or a frozen
VM, made deterministic. The final results must equal replay's: at-least-once, re-sent
results identical; exactly-once, each result once under read_committed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.runtime.faults import ENV
from tests.stress.takeover import (
    PARTITIONS,
    SLUICE,
    Plan,
    Report,
    _collect,
    _ready,
    _Worker,
    closers,
    compare,
    events,
    expected_results,
)
from tests.waiting import stopped


async def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting until {what}")
        await asyncio.sleep(0.1)


def _produce(
    broker_url: str, topic: str, source: Path, rate: int | None
) -> subprocess.Popen[bytes]:
    command = [str(SLUICE), "produce", topic, "--input", str(source), "--key", "user"]
    if rate:
        command += ["--rate", str(rate)]
    return subprocess.Popen(
        command,
        env={**os.environ, "SLUICE_BROKERS": broker_url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def zombie_round(
    broker_url: str,
    *,
    point: str,
    nth: int = 8,
    exactly_once: bool = False,
    seed: int = 11,
    count: int = 12_000,
    resume_at_takeover: bool = False,
) -> Report:
    """One round (see the module docstring); never raises (errors are reported).
    `nth`: the zombie stops the nth time it reaches `point` — the first one or two are
    the checkpoints of the rebalance that lets the survivor in, the rest come every
    0.25 s while the events (`count` at 2,500/s) stream in. `resume_at_takeover`: resumed
    as soon as the survivor holds every partition (with exactly_once: before the broker's
    transaction timeout aborts the zombie's open transaction), else after the last event."""
    plan = Plan(
        seed=seed,
        keyed=False,
        events=count,
        victim=0,
        kill_after_s=0.0,
        mid_rebalance=False,
        exactly_once=exactly_once,
    )
    report = Report(plan)
    began = time.monotonic()
    address = broker_url.removeprefix("kafka://")
    tag = uuid.uuid4().hex[:8]
    text = plan.text.format(tag=tag, key="")
    guarantee = "exactly_once" if exactly_once else "at_least_once"
    workdir = Path(tempfile.mkdtemp(prefix="sluice-zombie-"))
    workers: list[_Worker] = []
    try:
        data = events(seed, count)
        expected = await expected_results(text, [*data, *closers(count)], workdir)
        admin = AIOKafkaAdminClient(bootstrap_servers=address)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(f"events-{tag}", PARTITIONS, 1)])
        finally:
            await admin.close()
        app_id = f"zombie_{tag}"
        fault = {ENV: f"{point}:stop:{nth}"}
        zombie = _Worker(workdir, broker_url, app_id, text, "zombie", guarantee, env=fault)
        await _ready(zombie)
        survivor = _Worker(workdir, broker_url, app_id, text, "survivor", guarantee)
        workers = [zombie, survivor]
        await _ready(survivor)
        await _ready(zombie)
        source = workdir / "events.jsonl"
        source.write_bytes(b"".join(line + b"\n" for line in data))
        producer = _produce(broker_url, f"events-{tag}", source, 2500)
        await _until(lambda: stopped(zombie.process.pid), 60, "the zombie stopped itself")
        log = workdir / "survivor.log"
        seen = len(log.read_bytes())
        everything = f"assigned {PARTITIONS} partition"
        await _until(
            lambda: everything in log.read_bytes()[seen:].decode(errors="replace"),
            60,
            "the survivor took every partition",
        )
        if resume_at_takeover:
            os.kill(zombie.process.pid, signal.SIGCONT)
        code = await asyncio.to_thread(producer.wait, 120)
        if code != 0:
            raise RuntimeError(f"sluice produce exited {code}")
        os.kill(zombie.process.pid, signal.SIGCONT)
        await _ready(zombie)  # back in the group, its partitions restored
        closing = workdir / "closers.jsonl"
        closing.write_bytes(b"".join(line + b"\n" for line in closers(count)))
        if await asyncio.to_thread(_produce(broker_url, f"events-{tag}", closing, None).wait, 60):
            raise RuntimeError("sluice produce (closers) failed")
        got = await _collect(
            address, f"windows-{tag}", expected, timeout=90, committed=exactly_once
        )
        compare(report, got, expected)
        report.fenced = b"fenced (" in (workdir / "zombie.log").read_bytes()
        if exactly_once and report.resent:
            report.error = f"{report.resent} results seen twice with exactly_once"
    except Exception as exc:
        report.error = f"{type(exc).__name__}: {exc}"
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                os.kill(worker.process.pid, signal.SIGCONT)
            worker.stop()
        report.seconds = time.monotonic() - began
    if not report.exact:
        report.logs = str(workdir)
    return report
