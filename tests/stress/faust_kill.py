"""Kill rounds for the shipped pipelines in a Faust app (docs/faust.md, "Guarantees"):
`payments-clean` (stateless, routed) and `payments-risk` (re-keyed by user, dedupe,
enrich from the users table, rate limit, 1-minute windows) attached to one app under
steady input; each round a `faust worker` is SIGKILLed after a random number of records
and a second one finishes while the input still flows. Counted per round against
`sluice replay` on the same input:

- payments-clean results (both routes): lost (expected, never sent) and sent twice;
- payments-risk windows: records missing from a window, and counted twice, comparing
  each window's last result with replay's (`payments` is the record count).

    python -m tests.stress.faust_kill [--rounds 10] [--broker apache-kafka]

`--point after_state` kills at a named point instead: `payments-risk`'s Nth checkpoint
(N random, 3..20) after its outputs and state are acknowledged and before its `__offsets`
write (`faust.checkpoint.after_state`), the one place a batch is applied twice.
`--without-dedupe` drops `payments-risk`'s dedupe step (from the pipeline and from
replay's): its restored dedupe state would otherwise drop the re-applied records, and
the windows show what a windowed pipeline without one gets.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from streams.config.loader import load_pipelines
from streams.offline import replay
from streams.offline.demo_data import payments, users_table, write_lines
from streams.runtime.broker import EmbeddedBroker
from tests.integration.conftest import consume_all, create_topics, produce_lines
from tests.integration.faust_apps import FaustWorker, shipped_pipelines

RECORDS = 1500
CHUNK = 100
PIPELINES = ("payments-clean", "payments-risk")


def user_key(line: bytes) -> bytes | None:
    try:
        return str(orjson.loads(line)["user_id"]).encode()
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


KILL_POINT = "faust.checkpoint.after_state"  # streams.runtime.faults
ROLLED_BACK = re.compile(r"pipeline \S+: (\d+) state keys rolled back")


async def one_round(
    broker: Any, number: int, kill_at: int, folder: Path, args: argparse.Namespace
) -> dict[str, Any]:
    tag = f"k{number}{random.randrange(16**6):06x}"
    all_files, topics = shipped_pipelines(folder / "pipelines", tag)
    files = [f for f in all_files if f.stem in PIPELINES]
    if args.without_dedupe:
        for path in files:
            text = path.read_text()
            path.write_text("\n".join(x for x in text.splitlines() if "- dedupe:" not in x))
    source, users = topics["payments"], topics["users"]
    lines = list(payments(RECORDS, seed=number, malformed_ratio=0.03, events_per_second=27))
    rows = list(users_table())
    write_lines(folder / "in.jsonl", iter(lines))
    write_lines(folder / "users.jsonl", iter(rows))
    specs = [spec for path in files for spec in load_pipelines(path)]
    await replay(
        specs,
        {source: str(folder / "in.jsonl")},
        folder / "replay",
        tables={"users": folder / "users.jsonl"},
    )

    def expected(topic: str) -> list[bytes]:
        path = folder / "replay" / f"{topic}.jsonl"
        return path.read_bytes().splitlines() if path.exists() else []

    await create_topics(broker, source, users)
    await produce_lines(broker, users, rows, key=lambda r: orjson.loads(r)["user_id"].encode())
    app_id = f"kill{tag}"
    first = FaustWorker(folder / "one", broker, app_id, files)
    if args.point == "after_state":  # kill_at: the checkpoint
        first.env["TESTS_FAULT"] = f"{KILL_POINT}@payments-risk:kill:{kill_at}"
    first.start()
    await asyncio.to_thread(first.wait_ready)

    async def steady() -> None:
        for start in range(0, len(lines), CHUNK):
            await produce_lines(broker, source, lines[start : start + CHUNK], key=user_key)
            await asyncio.sleep(0.3)

    feeding = asyncio.create_task(steady())
    if args.point == "after_state":
        code = await asyncio.to_thread(first.wait_exit, 120)
        assert code == -signal.SIGKILL, first.output()
        killed_after = kill_at
    else:
        deadline = time.monotonic() + 120
        while first.metric("sluice_events_in_total") < kill_at and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        killed_after = int(first.metric("sluice_events_in_total"))
        first.stop(signal.SIGKILL)
    second = FaustWorker(folder / "two", broker, app_id, files).start()
    await asyncio.to_thread(second.wait_ready)
    await feeding

    clean = expected(topics["payments-clean"]) + expected(topics["payments-large"])
    got_clean = []
    for topic in (topics["payments-clean"], topics["payments-large"]):
        want = len(expected(topic))
        got_clean += [m.value for m in await consume_all(broker, topic, want, timeout=60)]
    windows = {
        (w["user_id"], w["tier"], w["window_start"]): w["payments"]
        for w in map(orjson.loads, expected(topics["payments-risk-out"]))
    }
    sent = await consume_all(broker, topics["payments-risk-out"], len(windows), timeout=90)
    second.stop()
    # keys the second worker's restore rolled back (a checkpoint without its `__offsets`)
    rolled_back = sum(map(int, ROLLED_BACK.findall(second.output(10**8))))
    last: dict[Any, int] = {}
    results: Counter[Any] = Counter()
    for message in sent:
        w = orjson.loads(message.value)
        key = (w["user_id"], w["tier"], w["window_start"])
        last[key] = w["payments"]
        results[key] += 1
    missing = twice = 0
    for key, want in windows.items():
        got = last.get(key, 0)
        missing += max(0, want - got)
        twice += max(0, got - want)
    for key in set(last) - set(windows):
        twice += last[key]
    wanted, arrived = Counter(map(canonical, clean)), Counter(map(canonical, got_clean))
    return {
        "round": number,
        "killed_after": killed_after,
        "clean_results": len(clean),
        "clean_lost": sum((wanted - arrived).values()),
        "clean_twice": sum((arrived - wanted).values()),
        "windows": len(windows),
        "window_records": sum(windows.values()),
        "window_records_missing": missing,
        "window_records_twice": twice,
        "window_results_resent": sum(n - 1 for n in results.values() if n > 1),
        "state_keys_rolled_back": rolled_back,
    }


def canonical(value: bytes) -> bytes:
    return orjson.dumps(orjson.loads(value), option=orjson.OPT_SORT_KEYS)


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
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
                # both pipelines count events_in: up to twice the records in all
                kill_at = rng.randrange(RECORDS // 5, RECORDS * 8 // 5)
                if args.point == "after_state":
                    kill_at = rng.randrange(3, 21)
                outcome = await one_round(broker, number, kill_at, Path(folder), args)
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
    parser.add_argument("--broker", default="tansu", choices=["tansu", "apache-kafka"])
    parser.add_argument("--point", default="random", choices=["random", "after_state"])
    parser.add_argument("--without-dedupe", action="store_true")
    asyncio.run(main(parser.parse_args()))
