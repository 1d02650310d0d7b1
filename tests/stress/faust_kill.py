"""Kill rounds for pipelines in a Faust app (docs/faust.md): a windowed pipeline (dedupe,
then a 10-second tumbling count and sum per user, re-keyed by user) and a pass-through
filter, attached to one app; each round a worker is SIGKILLed at a random point of a
1,500-record input (`--records`), a second one finishes. Counts per round:

- pass-through: results lost (a kept input with no result) and sent twice;
- windows: lost or wrong (a window unlike replay's: `counted_twice` when it counted more
  records than replay, `lost_records` when fewer) and re-emitted identical results.

    python -m tests.stress.faust_kill [--rounds 10] [--broker apache-kafka]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson

from streams.config.loader import load_pipeline
from streams.offline import replay
from streams.runtime.broker import EmbeddedBroker
from tests.integration.conftest import consume_all, create_topics, produce_lines
from tests.integration.faust_apps import FaustWorker

BASE_S = 1_795_600_000
WINDOWED = """
pipeline: win
source: {{topic: in-{tag}, key: user, timestamp: ts}}
steps:
  - dedupe: {{key: id, within: 1m}}
  - window:
      type: tumbling
      size: 10s
      grace: 2s
      key: user
      aggregates: {{n: count(), total: sum(v)}}
sink: {{topic: win-{tag}}}
"""
PASS = """
pipeline: pass
source: {{topic: in-{tag}}}
steps:
  - filter: "v % 2 = 0"
sink: {{topic: pass-{tag}}}
"""


def lines(count: int) -> list[bytes]:
    return [
        orjson.dumps(
            {"id": i, "user": f"u{i % 12}", "v": (i * 7) % 101, "ts": BASE_S * 1000 + i * 20}
        )
        for i in range(count)
    ]


async def one_round(
    broker: Any, number: int, kill_at: int, folder: Path, records: int
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    files = []
    for name, text in (("win", WINDOWED), ("pass", PASS)):
        path = folder / f"{name}.yaml"
        path.write_text(text.format(tag=tag))
        files.append(path)
    data = lines(records)
    source = folder / "in.jsonl"
    source.write_bytes(b"".join(x + b"\n" for x in data))
    spec = load_pipeline(files[0])
    await replay(spec, str(source), folder / "replay")
    expected = {
        (r["user"], r["window_start"]): r
        for r in map(
            orjson.loads, (folder / "replay" / f"win-{tag}.jsonl").read_bytes().splitlines()
        )
    }
    kept = [x for x in data if orjson.loads(x)["v"] % 2 == 0]
    await create_topics(broker, f"in-{tag}")
    await produce_lines(
        broker, f"in-{tag}", data, key=lambda x: str(orjson.loads(x)["user"]).encode()
    )
    app_id = f"kill{tag}"
    first = FaustWorker(folder / "one", broker, app_id, files).start()
    first.wait_ready()
    deadline = time.monotonic() + 120
    while first.metric("sluice_events_in_total") < kill_at and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    first.stop(signal.SIGKILL)
    second = FaustWorker(folder / "two", broker, app_id, files).start()
    second.wait_ready()
    windows = await consume_all(broker, f"win-{tag}", len(expected), timeout=120, settle=3)
    passed = await consume_all(broker, f"pass-{tag}", len(kept), timeout=60, settle=2)
    second.stop()
    by_window: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for message in windows:
        record = orjson.loads(message.value)
        by_window[(record["user"], record["window_start"])].append(record)
    counted_twice = lost_records = reemitted = 0
    for window, want in expected.items():
        got = by_window.get(window, [])
        final = got[-1] if got else None
        if final is None:
            lost_records += want["n"]
            continue
        reemitted += sum(1 for r in got[:-1] if r == final)
        if final["n"] > want["n"]:
            counted_twice += final["n"] - want["n"]
        elif final["n"] < want["n"]:
            lost_records += want["n"] - final["n"]
    sent = Counter(m.value for m in passed)
    wanted = Counter(kept)
    return {
        "round": number,
        "killed_after": kill_at,
        "pass_lost": sum((wanted - sent).values()),
        "pass_twice": sum((sent - wanted).values()),
        "windows": len(expected),
        "window_records_counted_twice": counted_twice,
        "window_records_lost": lost_records,
        "windows_reemitted": reemitted,
        "windows_extra": len(set(by_window) - set(expected)),
    }


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    records = args.records
    broker: Any
    if args.broker == "apache-kafka":
        from tests.brokers.apache_kafka import ApacheKafka

        broker = ApacheKafka()
        broker.start()
    else:
        broker = EmbeddedBroker().start()
    results = []
    try:
        for number in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="faust-kill-") as folder:
                # both pipelines count events_in: twice the records in all
                outcome = await one_round(
                    broker,
                    number,
                    rng.randrange(records // 5, records * 9 // 5),
                    Path(folder),
                    records,
                )
            FaustWorker.kill_all()
            results.append(outcome)
            print(orjson.dumps(outcome).decode(), flush=True)
    finally:
        FaustWorker.kill_all()
        broker.stop()
    totals = {
        k: sum(r[k] for r in results) for k in results[0] if k not in ("round", "killed_after")
    }
    print(orjson.dumps({"rounds": len(results), "totals": totals}).decode())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--records", type=int, default=1500)
    parser.add_argument("--broker", default="tansu", choices=["tansu", "apache-kafka"])
    asyncio.run(main(parser.parse_args()))
