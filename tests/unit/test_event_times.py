"""The decoder's cached path for ISO-8601 event times gives what event_time_ms gives."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import orjson
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from models.pipeline_spec import PipelineSpec
from streams.core.errors import RecordError
from streams.core.event_time import event_time_ms
from streams.core.records import Event
from streams.steps.pipeline import Pipeline

SPEC = PipelineSpec.model_validate(
    yaml.safe_load("pipeline: t\nsource: {topic: a, timestamp: ts}\nsteps: []\nsink: {topic: b}\n")
)
BASE = datetime(2026, 11, 20, tzinfo=UTC)
iso = st.integers(0, 3 * 10**8).map(
    lambda ms: (BASE + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds")
)
stamps = st.one_of(
    iso.map(lambda text: text.replace("+00:00", "Z")),
    iso,
    st.tuples(iso, st.integers(0, 23), st.text(max_size=3)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + len(t[2]) :]
    ),
    st.sampled_from(
        ["2026-11-25T10:00:00", "2026-11-25 10:00:00.005Z", "2026-11-25T10:00:00.0_5Z", 17.5]
    ),
)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(stamps, min_size=1, max_size=30))
def test_cached_iso_times_equal_event_time_ms(values: list[object]) -> None:
    pipeline = Pipeline(SPEC)
    for _ in range(2):  # the second time from the cache
        messages = [Event(None, raw=orjson.dumps({"ts": v})) for v in values]
        result = asyncio.run(pipeline.process(messages))
        times = [e.timestamp_ms for e in result.outputs.get("b", [])]
        latest = int(pipeline.clock() * 1000) + pipeline.max_event_time_skew_ms
        expected = []
        for value in values:
            with contextlib.suppress(RecordError):
                expected.append(event_time_ms(value, "ts"))
        # before 1970 or too far ahead: a `timestamp` dead letter either way
        assert times == [t for t in expected if 0 <= t <= latest], values
