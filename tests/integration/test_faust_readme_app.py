"""The README's "Inside a Faust app" example, as a newcomer writes it: the app block copied
from the README (the broker and the pipeline path changed, nothing else: Faust's own
defaults, `topic_partitions` 8 among them), a pipeline of its own attached, run with
`faust -A app worker`, compared with `sluice replay` on the same input.

Two shapes a newcomer meets: a worker started before its input topic exists, with a
pipeline re-keying by `source.key`; and an input topic made beforehand with more
partitions (8) than sluice's `processing.partitions` (4), with a pipeline keeping its
state per input partition (no `source.key`)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import orjson
import pytest

from streams.config.loader import load_pipeline
from streams.offline import replay
from streams.runtime.broker import free_port
from tests.integration.conftest import (
    ROOT,
    Broker,
    consume_all,
    create_topics,
    produce_lines,
    unique,
)
from tests.integration.faust_apps import (  # the fixture: autouse
    FAUST,
    FaustWorker,
    no_faust_worker_left,  # noqa: F401
)
from tests.integration.faust_oracle import canonical, window_diff

pytestmark = pytest.mark.integration

BASE_MS = 1_795_000_000_000
PIPELINE = """
pipeline: readings-{tag}
source: {{topic: readings-{tag},{key} timestamp: ts}}
steps:
  - filter: "temp > -50"
  - window:
      type: tumbling
      size: 10s
      key: [sensor]
      aggregates: {{n: count(), hottest: max(temp), total: sum(temp)}}
sink: {{topic: readings-10s-{tag}}}
dlq: {{topic: readings-dlq-{tag}}}
"""


def readme_app(broker_url: str, pipeline: Path) -> str:
    """The Python block of the README's "Inside a Faust app", pointed at `broker_url` and
    attaching `pipeline` instead of the shipped one."""
    section = (ROOT / "README.md").read_text().split("## Inside a Faust app", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    shipped_broker, shipped_pipeline = (
        "kafka://localhost:9092",
        "config/pipelines/payments-clean.yaml",
    )
    assert shipped_broker in code and shipped_pipeline in code, code
    return code.replace(shipped_broker, broker_url).replace(shipped_pipeline, str(pipeline))


def start_readme_app(broker: Broker, pipeline: Path, tmp_path: Path) -> FaustWorker:
    """The README's app attaching `pipeline`, run by the README's command (with a free
    web port) in `tmp_path/app`."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "shop.py").write_text(readme_app(broker.url, pipeline))
    port = free_port()
    log_path = tmp_path / "worker.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [str(FAUST), "-A", "shop", "worker", "-l", "info", "--web-port", str(port)],
            cwd=app_dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(app_dir), str(ROOT)])},
        )
    return FaustWorker.adopt(process, port, log_path)


def readings(count: int) -> list[bytes]:
    """Sensor readings, 20 per second of event time, every 25th not JSON (a dead letter)."""
    lines = []
    for i in range(count):
        if i % 25 == 24:
            lines.append(b"not json " + str(i).encode())
            continue
        reading = {"sensor": f"s{i % 7}", "temp": (i * 37) % 90 - 60, "ts": BASE_MS + i * 50}
        lines.append(orjson.dumps(reading))
    return lines


def sensor_key(line: bytes) -> bytes | None:
    try:
        return str(orjson.loads(line)["sensor"]).encode()
    except orjson.JSONDecodeError:
        return None


@pytest.mark.parametrize(
    ("shape", "source_key"),
    [("topic-made-by-the-worker", " key: sensor,"), ("topic-of-8-partitions-made-before", "")],
)
async def test_the_readme_app_with_a_pipeline_of_its_own_equals_replay(
    broker: Broker, tmp_path: Path, shape: str, source_key: str
) -> None:
    tag = unique("rd")
    pipeline = tmp_path / "readings.yaml"
    pipeline.write_text(PIPELINE.format(tag=tag, key=source_key))
    source, sink, dlq = f"readings-{tag}", f"readings-10s-{tag}", f"readings-dlq-{tag}"
    lines = readings(1200)
    (tmp_path / "in.jsonl").write_bytes(b"".join(x + b"\n" for x in lines))
    await replay(load_pipeline(pipeline), str(tmp_path / "in.jsonl"), tmp_path / "replay")
    want = [
        orjson.loads(x) for x in (tmp_path / "replay" / f"{sink}.jsonl").read_bytes().splitlines()
    ]
    letters = (tmp_path / "replay" / f"{dlq}.jsonl").read_bytes().splitlines()
    assert want and len(letters) == 48

    if shape == "topic-of-8-partitions-made-before":
        await create_topics(broker, source, partitions=8)
    worker = start_readme_app(broker, pipeline, tmp_path)
    try:
        await asyncio.to_thread(worker.wait_ready)
        await produce_lines(broker, source, lines, key=sensor_key)
        # the last windows close once the partitions are idle for the grace by wall clock
        got = await consume_all(broker, sink, len(want), timeout=90)
        values = [orjson.loads(m.value) for m in got]
        assert canonical(values) == canonical(want), window_diff(values, want)
        dead = await consume_all(broker, dlq, len(letters), timeout=30)
        assert sorted(m.value for m in dead) == sorted(
            orjson.loads(x)["payload"].encode() for x in letters
        )
        assert all(dict(m.headers)["sluice.error.step"] for m in dead)
    finally:
        code = worker.stop(signal.SIGTERM)
    assert code == 0, worker.output()


async def test_state_made_with_other_partitions_than_its_input_stops_the_worker_clearly(
    tansu: Broker, tmp_path: Path
) -> None:
    """The state's changelog made with 4 partitions, the input now with 8 (partitions
    added): the worker stops non-zero with one line naming the pipeline, the topics and
    what to do, as `sluice worker` does (NotCoPartitioned), rather than crash at a write."""
    tag = unique("rd")
    pipeline = tmp_path / "readings.yaml"
    pipeline.write_text(PIPELINE.format(tag=tag, key=""))
    source, changelog = f"readings-{tag}", f"shop-readings-{tag}.window-changelog"
    await create_topics(tansu, source, partitions=8)
    await create_topics(tansu, changelog, partitions=4)
    worker = start_readme_app(tansu, pipeline, tmp_path)
    code = await asyncio.to_thread(worker.wait_exit, 60)
    lines = [x for x in worker.output(100_000).splitlines() if "NotCoPartitioned" in x]
    assert code != 0 and lines, worker.output()
    assert f"pipeline readings-{tag} crashed" in lines[0], lines
    assert f"{changelog} has 4" in lines[0] and "has 8 partitions" in lines[0], lines
