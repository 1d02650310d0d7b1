"""What the Faust host's integration tests compare with: `sluice replay` on the same input
(the oracle), the broker's topics read back, the workers' own counts; and waiting for a
condition with a bound."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from models.pipeline_spec import PipelineSpec
from streams.config.loader import load_pipelines
from streams.offline import replay
from streams.offline.demo_data import write_lines
from tests.integration.conftest import Broker, consume_all, create_topics, produce_lines
from tests.integration.faust_apps import FaustWorker

ASSIGNED = "Executing _on_partitions_assigned"  # Faust's line at every assignment
PAYMENT_ID = re.compile(rb"p\d{9}")


def canonical(values: list[Any]) -> Counter[bytes]:
    # sums add in arrival order, which the partitions change: compare them rounded
    def rounded(value: Any) -> Any:
        if isinstance(value, float):
            return round(value, 6)
        if isinstance(value, dict):
            return {k: rounded(v) for k, v in value.items()}
        return value

    return Counter(orjson.dumps(rounded(v), option=orjson.OPT_SORT_KEYS) for v in values)


def window_diff(got: list[Any], want: list[Any]) -> dict[str, Any]:
    """Window results that differ: per window key, the record counts sent and expected."""

    def by_window(values: list[Any]) -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {}
        for value in values:
            if isinstance(value, dict) and "window_start" in value:
                key = {k: v for k, v in value.items() if isinstance(v, str)}
                found.setdefault(str(sorted(key.items())), []).append(value.get("payments"))
        return found

    sent, expected = by_window(got), by_window(want)
    keys = sorted(
        k
        for k in {*sent, *expected}
        if sorted(map(str, sent.get(k, []))) != sorted(map(str, expected.get(k, [])))
    )
    return {"differ": len(keys), "first": {k: (sent.get(k), expected.get(k)) for k in keys[:8]}}


def user_key(line: bytes) -> bytes | None:
    try:
        return str(orjson.loads(line)["user_id"]).encode()
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


async def replayed_with_users_loaded(
    tmp_path: Path,
    broker: Broker,
    files: list[Path],
    payments: tuple[str, list[bytes]],
    users: tuple[str, list[bytes]],
) -> tuple[dict[str, PipelineSpec], Callable[[str], list[Any]]]:
    """The pipelines of `files` replayed over the payments with the users table (the
    oracle), and the broker's users topic filled: the specs by name and what replay wrote
    to each topic."""
    (source, lines), (users_topic, rows) = payments, users
    data = tmp_path / "in.jsonl"
    write_lines(data, iter(lines))
    write_lines(tmp_path / "users.jsonl", iter(rows))
    specs = {spec.pipeline: spec for path in files for spec in load_pipelines(path)}
    await replay(
        list(specs.values()),
        {source: str(data)},
        tmp_path / "replay",
        tables={"users": tmp_path / "users.jsonl"},
    )

    def expected(topic: str) -> list[Any]:
        path = tmp_path / "replay" / f"{topic}.jsonl"
        return [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []

    await create_topics(broker, source, users_topic)
    await produce_lines(
        broker, users_topic, rows, key=lambda row: orjson.loads(row)["user_id"].encode()
    )
    return specs, expected


async def until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} in {timeout}s")
        await asyncio.sleep(0.2)


async def outputs_equal_replay(
    broker: Broker, topics: dict[str, str], expected: Callable[[str], list[Any]]
) -> int:
    """Every output topic equals replay's exactly (a multiset: none missing, none twice),
    every dead-letter topic too, with its headers; returns the dead letters checked."""
    source, users = topics["payments"], topics["users"]
    outputs = [t for t in topics.values() if t not in (source, users) and "dlq" not in t]
    for topic in outputs:
        want = expected(topic)
        # windows close once the partitions are idle for the grace (10 s) by wall clock
        got = await consume_all(broker, topic, len(want), timeout=90)
        values = [orjson.loads(m.value) for m in got]
        assert canonical(values) == canonical(want), (topic, window_diff(values, want))
    letters_checked = 0
    for topic in (t for t in topics.values() if "dlq" in t):
        want = expected(topic)
        got = await consume_all(broker, topic, len(want), timeout=30)
        expected_letters = Counter(
            (d["payload"].encode(), d["error"]["step"], d["error"]["type"]) for d in want
        )
        found: Counter[tuple[bytes, str, str]] = Counter()
        for message in got:
            headers = dict(message.headers)
            found[
                (
                    message.value or b"",
                    headers["sluice.error.step"].decode(),
                    headers["sluice.error.type"].decode(),
                )
            ] += 1
            assert headers["sluice.source.topic"] == source.encode()
            assert int(headers["sluice.source.offset"]) >= 0
            assert headers["sluice.error.message"]
            assert headers["traceparent"].startswith(b"00-")
            letters_checked += 1
        assert found == expected_letters, (
            topic,
            {
                "missing": sorted(expected_letters - found)[:10],
                "extra": sorted(found - expected_letters)[:10],
            },
        )
    return letters_checked


def stop_counts(worker: FaustWorker) -> dict[str, int]:
    """Per pipeline, the events a worker processed, from its line at stop."""
    found = {}
    for line in worker.output(200_000).splitlines():
        match = STOPPED.search(line)
        if match:
            found[match.group(1)] = int(match.group(2))
    return found


STOPPED = re.compile(r"pipeline (\S+) stopped: (\d+) events in")


def window_counts(values: list[Any]) -> Counter[str]:
    """Per window (its string fields), the records counted."""
    found: Counter[str] = Counter()
    for value in values:
        key = str(sorted((k, v) for k, v in value.items() if isinstance(v, str)))
        found[key] += value["payments"]
    return found
