"""Pipelines named as prefixes of each other (`a` and `a.b`), both stateful, through a
SIGKILL between the changelog writes and the offset commit: each pipeline's windows equal
`sluice replay`'s (issue 22 case 3: pipeline `a` also took `a.b`'s store, whose changelog
records then carried the source offsets of `a`'s topic — always -1 — so the restore applied
records that were processed again: 40 of 200 windows over-counted)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.conftest import Broker, create_topics, produce_lines, unique
from tests.integration.test_windows import (
    BASE_S,
    check,
    expected_windows,
    lines,
    until_processed,
    user_key,
    windows_until,
)

pytestmark = pytest.mark.integration

PIPELINE = """
pipeline: {name}
source: {{topic: {source}, timestamp: ts}}  # produced keyed by user
steps:
  - window:
      type: tumbling
      size: 10s
      grace: 2s
      key: user
      aggregates: {{n: count(), total: sum(v)}}
sink: {{topic: {sink}}}
"""

CLOSING_MS = (BASE_S + 100) * 1000
CLOSING_WINDOW = "2026-11-25T09:48:20.000Z"  # the tumbling 10 s window of CLOSING_MS

# Loaded into the worker's process before sluice (sitecustomize on its PYTHONPATH): once the
# test creates ARMED, the process kills itself inside the next offset commit that commits
# `TOPIC` — after that checkpoint's changelog records were acknowledged, before its offsets
# reach the group. A named point, not timing luck.
KILL_IN_COMMIT = """
import os, pathlib, signal
from aiokafka import AIOKafkaConsumer

_commit = AIOKafkaConsumer.commit


async def commit(self, offsets=None):
    if offsets and any(tp.topic == {topic!r} for tp in offsets):
        if pathlib.Path({armed!r}).exists():
            os.kill(os.getpid(), signal.SIGKILL)
    return await _commit(self, offsets)


AIOKafkaConsumer.commit = commit
"""


async def test_pipelines_named_as_prefixes_keep_their_own_state_through_a_sigkill(
    broker: Broker, make_worker: Any, tmp_path: Path
) -> None:
    tag = unique("pre")
    # a last record per user a minute later closes every window before it by event time
    # (the windows it opens are left out: only replay's end of input closes those)
    data = lines(2000) + [
        orjson.dumps({"id": 10_000 + u, "user": f"u{u}", "v": 1, "ts": CLOSING_MS})
        for u in range(12)
    ]
    texts, expected = {}, {}
    for name in ("a", "a.b"):
        source, sink = f"in-{name}-{tag}", f"out-{name}-{tag}"
        texts[name] = PIPELINE.format(name=name, source=source, sink=sink)
        folder = tmp_path / f"replay-{name}"
        folder.mkdir()
        windows = await expected_windows(texts[name], data, folder)
        expected[name] = {w: r for w, r in windows.items() if w[1] != CLOSING_WINDOW}
        await create_topics(broker, source)
    hook = tmp_path / "kill-in-commit"
    hook.mkdir()
    armed = hook / "armed"
    (hook / "sitecustomize.py").write_text(
        KILL_IN_COMMIT.format(topic=f"in-a.b-{tag}", armed=str(armed))
    )
    # files load in name order, `a.b` before `a`: before the fix `a` then took `a.b.window`
    first = make_worker(texts, start=False)
    first.extra_path = str(hook)
    first.start()
    first.wait_ready()
    half = len(data) // 2
    for name in texts:  # a first checkpoint commits the first half
        await produce_lines(broker, f"in-{name}-{tag}", data[:half], key=user_key)
    await until_processed([first], 2 * half)
    armed.touch()
    for name in texts:  # the second half's changelog records are written, then the kill
        await produce_lines(broker, f"in-{name}-{tag}", data[half:], key=user_key)
    assert first.process is not None
    assert first.process.wait(60) == -signal.SIGKILL, first.output()
    second = make_worker(texts)
    second.wait_ready()
    for name in ("a", "a.b"):
        got = await windows_until(broker, f"out-{name}-{tag}", expected[name], timeout=60)
        got = [r for r in got if r["window_start"] != CLOSING_WINDOW]
        reemitted = check(got, expected[name])  # every window equal to replay's
        print(f"{name}: {len(expected[name])} windows, {reemitted} re-emitted identically")
    assert second.stop() == 0
