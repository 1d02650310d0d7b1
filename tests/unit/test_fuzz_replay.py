"""Fuzz: arbitrary bytes and arbitrary JSON through a component + window + alert pipeline
in replay. Every input line is output (counted by the window's count()), dropped or
dead-lettered; the counts add up; no exception escapes; every dead letter keeps its line.

CI runs a modest number of examples; for a long run:

    FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/unit/test_fuzz_replay.py
"""

from __future__ import annotations

import asyncio
import base64
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from models.envelopes import ReplayDeadLetter
from models.pipeline_spec import PipelineSpec
from streams.core import jsonl
from streams.offline import replay

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
DOCUMENTED_TYPES = {
    "invalid_json",
    "oversize",
    "timestamp",
    "schema",
    "expression",
    "key",
    "component",
    "timeout",
    "late",
    "ratelimit",
}

SPEC = PipelineSpec.model_validate(
    yaml.safe_load("""
pipeline: fuzz
source: {topic: in, key: user, timestamp: ts}
steps:
  - component: {class: "tests.fixtures.components:Hostile", timeout: 5s}
  - window:
      type: tumbling
      size: 1m
      grace: 5s
      key: user
      late: dlq
      aggregates:
        count: count()
        total: sum(x)
        top: max(x)
        median: "percentile(x, 0.5)"
        distinct: count_distinct(x)
  - alert: {name: busy, when: "count > 2", key: user}
sink: {topic: out}
dlq: {topic: dlq}
""")
)

NOW_MS = int(time.time() * 1000)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=8),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=10,
)
event_times = st.one_of(
    st.integers(-120_000, 120_000).map(lambda delta: NOW_MS + delta),
    st.integers(-120, 120).map(lambda delta: NOW_MS // 1000 + delta),
    st.just("9999-12-31T23:59:59Z"),
    st.sampled_from([1e300, -1e15, 10**30, float("nan"), "yesterday", None]),
    json_values,
)
records = st.fixed_dictionaries(
    {},
    optional={
        "user": st.one_of(st.sampled_from(["a", "b", "c"]), st.integers(-3, 3), json_values),
        "ts": event_times,
        "x": st.one_of(st.integers(-10, 10), st.floats(-10, 10), json_values),
        "do": st.sampled_from(
            ["set", "big", "emit-object", "return-object", "raise", "emit", "nothing"]
        ),
    },
)
# a key 1,000 levels deep: str() of it raised RecursionError out of the decoder
DEEP_KEY = (
    b'{"ts": 1, "user": ' + b"[" * 1000 + b"]" * 1000 + b', "x": ' + b"[" * 900 + b"]" * 900 + b"}"
)
lines = st.one_of(
    records.map(jsonl.dumps),
    json_values.map(jsonl.dumps),
    st.binary(max_size=40),
    st.sampled_from(
        [
            b"",
            b"   ",
            b"\xff\xfe",
            b'{"user": "a", "ts": 1e400}',
            b"[" * 300,
            DEEP_KEY,
            b'{"user": "a", "x": ' + b"[" * 1000 + b"]" * 1000 + b', "ts": 1}',
        ]
    ),
)


def _input_lines(data: bytes) -> list[bytes]:
    """What replay reads as messages: lines without their end, blank ones skipped."""
    found = []
    for line in data.split(b"\n"):  # a file iterates by \n only, not \r or \x0b
        raw = line.rstrip(b"\r\n")
        if raw and not raw.isspace():
            found.append(raw)
    return found


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(lines, max_size=30))
@example([DEEP_KEY, b'{"user": "a", "ts": 1, "x": 18446744073709551616}', b"\xff"])
def test_every_input_is_output_dropped_or_dead_lettered(batch: list[bytes]) -> None:
    data = b"\n".join(batch) + b"\n"
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "in.jsonl"
        source.write_bytes(data)
        out = Path(folder) / "out"
        summary = asyncio.run(replay(SPEC, str(source), out, batch_size=7))
        results = _read(out / "out.jsonl")
        letters = [
            ReplayDeadLetter.model_validate_json(line) for line in _raw_lines(out / "dlq.jsonl")
        ]
    messages = _input_lines(data)
    assert summary.only.events_in == len(messages)
    assert summary.only.dead_letters == len(letters)
    windowed = sum(result["count"] for result in results)
    assert windowed + summary.only.dead_letters + summary.only.dropped == summary.only.events_in
    assert summary.only.outputs.get("out", 0) == len(results)
    remaining = list(messages)
    for letter in letters:
        assert letter.error.type in DOCUMENTED_TYPES, letter.error
        payload = (
            base64.b64decode(letter.payload)
            if letter.payload_encoding == "base64"
            else letter.payload.encode()
        )
        assert payload in remaining  # the original bytes, unchanged
        remaining.remove(payload)


def _raw_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines() if path.exists() else []


def _read(path: Path) -> list[Any]:
    return [orjson.loads(line) for line in _raw_lines(path)]
