"""How long a worker takes to restore its state, memory:// (the whole changelog) against
rocksdb:// (its local copy, and the changelog since): `python -m tests.stress.restore_time
[--keys 1000000]` on a fresh Apache Kafka (or the embedded broker with --broker tansu).

A worker counts records per key (one key per record: `--keys` keys) with store
rocksdb://, is stopped, then started again twice with the same group — once with an
empty working directory and memory://, once with its RocksDB — and the restore each
logs ("state restored: N changelog records … in S s") is reported."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.runtime.broker import EmbeddedBroker, free_port

SLUICE = Path(sys.executable).parent / "sluice"
ROOT = Path(__file__).resolve().parents[2]
PIPELINE = """
pipeline: restore
source: {topic: restore-in, key: user}
steps:
  - component: {class: "tests.fixtures.components:CountPerKey", config: {limit: 1}}
sink: {topic: restore-out}
"""
RESTORED = re.compile(r"state restored: (\d+) changelog records .* in ([0-9.]+)s")
LOADED = re.compile(r"local state loaded: (\d+) keys .* in ([0-9.]+)s")


def start(folder: Path, url: str, store: str, app_id: str) -> tuple[subprocess.Popen[bytes], int]:
    (folder / "pipelines").mkdir(parents=True, exist_ok=True)
    port = free_port()
    (folder / "sluice.yaml").write_text(
        f"app_id: {app_id}\nbrokers: ['{url}']\nstore: '{store}'\nweb: {{port: {port}}}\n"
        "log: {level: INFO}\n"
    )
    (folder / "pipelines" / "p.yaml").write_text(PIPELINE)
    log = (folder / "worker.log").open("ab")
    process = subprocess.Popen(
        [str(SLUICE), "worker", "--config", str(folder)],
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return process, port


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
        return str(response.read().decode())


def wait(port: int, test: Any, timeout: float) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        try:
            if test(port):
                return time.monotonic() - began
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError


def events_in(port: int) -> float:
    text = get(port, "/metrics")
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("sluice_events_in_total{")
    )


def ready(port: int) -> bool:
    try:
        get(port, "/ready")
        return True
    except urllib.error.HTTPError:
        return False


async def fill(address: str, keys: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=address)
    await admin.start()
    await admin.create_topics([NewTopic("restore-in", 4, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=address, linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    pending = []
    for i in range(keys):
        user = f"user-{i}"
        pending.append(
            await producer.send("restore-in", orjson.dumps({"user": user}), key=user.encode())
        )
        if len(pending) >= 20_000:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    await producer.stop()


def restore_of(folder: Path) -> dict[str, Any]:
    """The last restore's figures from a worker's log."""
    text = (folder / "worker.log").read_text(errors="replace")
    records, seconds = RESTORED.findall(text)[-1]
    found: dict[str, Any] = {"changelog_records": int(records), "changelog_s": float(seconds)}
    loaded = LOADED.findall(text)
    if loaded:
        found["local_keys"], found["local_s"] = int(loaded[-1][0]), float(loaded[-1][1])
    return found


def run(url: str, keys: int) -> dict[str, Any]:
    asyncio.run(fill(url.removeprefix("kafka://"), keys))
    work = Path(tempfile.mkdtemp(prefix="sluice-restore-"))
    app_id = f"restore_{os.getpid()}"
    try:
        first, port = start(work / "rocks", url, "rocksdb://", app_id)
        wait(port, lambda p: events_in(p) >= keys, 1200)
        print(f"processed {keys:,} records", file=sys.stderr)
        first.terminate()
        first.wait(60)
        results = {}
        for name, folder, store in (
            ("memory://", work / "memory", "memory://"),
            ("rocksdb://", work / "rocks", "rocksdb://"),
        ):
            process, port = start(folder, url, store, app_id)
            took = wait(port, ready, 600)
            results[name] = {**restore_of(folder), "ready_s": round(took, 1)}
            print(f"{name}: {results[name]}", file=sys.stderr)
            process.terminate()
            process.wait(60)
        return {"keys": keys, **results}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--broker", choices=["apache-kafka", "tansu"], default="apache-kafka")
    args = parser.parse_args()
    if args.broker == "tansu":
        with EmbeddedBroker() as broker:
            print(orjson.dumps(run(broker.url, args.keys)).decode())
        return
    from tests.brokers.apache_kafka import ApacheKafka

    with ApacheKafka() as kafka:
        print(orjson.dumps(run(kafka.url, args.keys)).decode())


if __name__ == "__main__":
    main()
