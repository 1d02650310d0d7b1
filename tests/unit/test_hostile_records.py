"""Records that used to crash or poison a worker (issue 9): each is now an output, a drop
or a dead letter, and the state stays as it was before a record that failed."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from models.pipeline_spec import PipelineSpec
from streams.core import jsonl
from streams.core.event_time import event_time_ms, iso_ms
from streams.core.metrics import CountingMetrics
from streams.core.records import BatchResult, Event
from streams.core.watchdog import StuckRecord, Watchdog
from streams.steps.pipeline import Pipeline

NOW_MS = 1_795_774_800_000  # 2026-11-27T10:20:00Z: the tests' wall clock


def make(text: str, **options: Any) -> Pipeline:
    spec = PipelineSpec.model_validate(yaml.safe_load(text))
    options.setdefault("clock", lambda: NOW_MS / 1000)
    return Pipeline(spec, metrics=CountingMetrics(), **options)


def raw(*values: Any, timestamp_ms: int = NOW_MS) -> list[Event]:
    return [
        Event(
            None,
            raw=v if isinstance(v, bytes) else jsonl.dumps(v),
            offset=i,
            timestamp_ms=timestamp_ms,
        )
        for i, v in enumerate(values)
    ]


def letters(result: BatchResult) -> list[tuple[str, str]]:
    return [(d.step, d.error_type) for d in result.dead_letters]


def values(result: BatchResult, topic: str) -> list[Any]:
    return [event.value for event in result.outputs.get(topic, [])]


# --- case 1: event time out of range ----------------------------------------------------

WINDOWED = """
pipeline: w
source: {topic: in, timestamp: ts}
steps:
  - window: {type: tumbling, size: 1m, key: user, late: dlq, aggregates: {n: count()}}
  - alert: {name: busy, when: "n > 100", key: user}
sink: {topic: out}
"""


async def test_event_time_out_of_range_is_a_timestamp_dead_letter_not_a_crash() -> None:
    pipeline = make(WINDOWED)
    hostile = [
        {"user": "u", "ts": "9999-12-31T23:59:59Z"},  # was: ValueError year 10000
        {"user": "u", "ts": 1e300},
        {"user": "u", "ts": -1e15},
        {"user": "u", "ts": "9999-12-31T23:58:00Z"},  # was: the watermark moved to 9999
        {"user": "u", "ts": NOW_MS + 8 * 86_400_000},  # 8 days ahead: past the 7d default
        {"user": "u", "ts": "1969-12-31T23:59:59Z"},
        {"user": "u", "ts": 10**30},
    ]
    result = await pipeline.process(raw(*hostile))
    assert letters(result) == [("source", "timestamp")] * len(hostile)
    messages = [d.message for d in result.dead_letters]
    assert "9999-12-31T23:59:59.000Z, more than 7d ahead of the clock" in messages[0]
    assert "processing.max_event_time_skew" in messages[0]
    assert "before 1970-01-01" in messages[2] and "before 1970-01-01" in messages[5]
    # later records are on time, not `late`: the watermark never moved to 9999
    normal = [{"user": "u", "ts": NOW_MS - 1000}, {"user": "u", "ts": NOW_MS}]
    result = await pipeline.process(raw(*normal))
    assert not result.dead_letters
    final = await pipeline.flush(final=True)
    # two windows (NOW_MS starts a minute), one record each
    assert [v["n"] for v in values(result, "out") + values(final, "out")] == [1, 1]


async def test_the_skew_bound_is_a_constructor_argument_and_applies_to_broker_time() -> None:
    ahead = NOW_MS + 30 * 86_400_000
    lenient = make(WINDOWED, max_event_time_skew_ms=100 * 86_400_000)
    result = await lenient.process(raw({"user": "u", "ts": ahead}))
    assert not result.dead_letters
    no_field = make(WINDOWED.replace(", timestamp: ts", ""))
    result = await no_field.process(raw({"user": "u"}, timestamp_ms=ahead))
    assert letters(result) == [("source", "timestamp")]
    assert "the message timestamp" in result.dead_letters[0].message


@settings(max_examples=300, deadline=None)
@given(st.integers(-(10**20), 10**20))
def test_iso_ms_is_total(epoch_ms: int) -> None:
    text = iso_ms(epoch_ms)
    assert text.endswith("Z") and "T" in text
    if -62_135_596_800_000 <= epoch_ms <= 253_402_300_799_999:
        moment = datetime.fromisoformat(text)
        assert round(moment.timestamp() * 1000) == epoch_ms


def test_iso_ms_writes_expanded_years_beyond_9999() -> None:
    assert iso_ms(253_402_300_800_000) == "+10000-01-01T00:00:00.000Z"
    assert iso_ms(-62_135_596_800_001) == "+0000-12-31T23:59:59.999Z"
    assert iso_ms(-62_167_219_200_001).startswith("-0001-12-31")


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.integers(-(10**400), 10**400),
        st.floats(),
        st.text(max_size=40),
        st.datetimes().map(lambda d: d.isoformat()),
        st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    )
)
def test_event_time_ms_gives_an_int_or_a_timestamp_error(value: object) -> None:
    from streams.core.errors import RecordError

    try:
        assert isinstance(event_time_ms(value, "ts"), int)
    except RecordError as error:
        assert error.error_type == "timestamp"


# --- case 2: component state and outputs that are not JSON ------------------------------

HOSTILE = """
pipeline: c
source: {topic: in, key: user}
steps:
  - component: {class: "tests.fixtures.components:Hostile"}
sink: {topic: out}
"""


async def test_state_that_is_not_json_is_a_dead_letter_and_the_state_is_kept() -> None:
    pipeline = make(HOSTILE)
    result = await pipeline.process(
        raw(
            {"user": "a"},
            {"user": "a", "do": "set"},  # was: "Type is not JSON serializable: set" at commit
            {"user": "a", "do": "big"},
            {"user": "a", "do": "raise"},
            {"user": "a"},
        )
    )
    assert letters(result) == [("component", "component")] * 3
    messages = [d.message for d in result.dead_letters]
    assert messages[0] == "state is not JSON: set at key 'x'"
    assert messages[1] == "state is not JSON: integer beyond 64 bits at key 'nested.deep[0]'"
    assert messages[2] == "RuntimeError: after changing state"
    # each failed record's changes were rolled back: the count goes 1, then 2
    assert [v["n"] for v in values(result, "out")] == [1, 2]
    assert "side" not in result.outputs  # a failed record's ctx.emit is not sent
    store = pipeline.state.store("c.component")
    assert store.get("a") == {"n": 2}
    assert jsonl.state_problem(store.get("a")) is None


async def test_records_that_are_not_json_are_dead_letters_not_reprs() -> None:
    pipeline = make(HOSTILE)
    result = await pipeline.process(
        raw(
            {"user": "a", "do": "emit-object"},
            {"user": "a", "do": "return-object"},
            {"user": "a", "do": "emit"},
        )
    )
    assert letters(result) == [("component", "component")] * 2
    first, second = (d.message for d in result.dead_letters)
    assert first == "the record for ctx.emit('side', …) is not JSON: object at 'o' is not JSON"
    assert second == "the returned record is not JSON: object at 'o' is not JSON"
    assert values(result, "side") == [{"n": 1}]  # only the good record's emit, not {"ok": 1}
    assert values(result, "out") == [{"user": "a", "do": "emit", "n": 1}]


# --- case 3: components that never return -----------------------------------------------

SLEEPY = """
pipeline: s
source: {topic: in}
steps:
  - component: {class: "tests.fixtures.components:%s", timeout: %s}
sink: {topic: out}
"""


async def test_an_async_component_past_its_timeout_is_cancelled_and_a_timeout_letter() -> None:
    pipeline = make(SLEEPY % ("SleepyAsync", "200ms"))
    # the letters prove the hour-long sleep was cancelled; the guard only ends a regression
    result = await asyncio.wait_for(
        pipeline.process(
            raw({"sleep": 0}, {"sleep": 3600}, {"sleep": 0.05, "raise_timeout": True}, {"i": 1})
        ),
        timeout=600,
    )
    assert letters(result) == [("component", "timeout"), ("component", "component")]
    assert result.dead_letters[0].message == "process() did not finish within its timeout (200ms)"
    assert "TimeoutError: the service timed out" in result.dead_letters[1].message
    assert values(result, "out") == [{"sleep": 0}, {"i": 1}]


async def test_a_sync_component_past_its_timeout_is_reported_stuck_then_a_timeout_letter() -> None:
    stuck: list[StuckRecord] = []
    recovered: list[StuckRecord] = []
    with Watchdog(stuck.append, recovered.append, interval_s=0.05) as watchdog:
        pipeline = make(SLEEPY % ("Sleepy", "100ms"), watchdog=watchdog)
        result = await pipeline.process(raw({"sleep": 0}, {"sleep": 0.6}, {"sleep": 0}))
        time.sleep(0.2)
    assert letters(result) == [("component", "timeout")]
    assert "past its timeout (100ms)" in result.dead_letters[0].message
    assert values(result, "out") == [{"sleep": 0}, {"sleep": 0}]
    assert [(s.pipeline, s.step, s.partition, s.offset) for s in stuck] == [
        ("s", "component", 0, 1)
    ]
    assert recovered == stuck
    assert "offset 1 has run for" in stuck[0].describe()


def test_the_watchdog_reports_each_stuck_record_once_and_its_recovery() -> None:
    now = [100.0]
    stuck: list[StuckRecord] = []
    recovered: list[StuckRecord] = []
    watchdog = Watchdog(stuck.append, recovered.append, clock=lambda: now[0])
    slot = watchdog.slot("p", "step", timeout_s=5)
    slot.current = (100.0, 3, 42)  # what slot.begin(3, 42) writes at t=100
    assert watchdog.check() == [] and not stuck
    now[0] = 106.0
    [record] = watchdog.check()
    assert (record.partition, record.offset, record.running_s) == (3, 42, 6.0)
    now[0] = 200.0
    assert watchdog.check() == []  # reported once
    assert watchdog.stuck == [record]
    slot.end()
    watchdog.check()
    assert recovered == [record] and watchdog.stuck == []


def test_the_component_timeout_defaults_to_30s_and_must_be_positive() -> None:
    spec = PipelineSpec.model_validate(yaml.safe_load(SLEEPY % ("Sleepy", "30s")))
    assert spec.steps[0].component.timeout == 30_000  # type: ignore[union-attr]
    no_timeout = SLEEPY.replace(", timeout: %s", "") % "Sleepy"
    spec = PipelineSpec.model_validate(yaml.safe_load(no_timeout))
    assert spec.steps[0].component.timeout == 30_000  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="positive duration"):
        PipelineSpec.model_validate(yaml.safe_load(SLEEPY % ("Sleepy", "0s")))


# --- case 5: integers beyond 64 bits ------------------------------------------------------

BIG = 18_446_744_073_709_551_616  # 2**64: orjson decodes it as 1.8446744073709552e+19


async def test_big_integers_pass_through_untouched_fields_exactly() -> None:
    pipeline = make("""
pipeline: b
source: {topic: in}
steps:
  - filter: "x > 0"
  - map: {id: id, next: id + 1, neg: "-id", small: x, deep: deep, text: "CAST(id AS TEXT)"}
sink: {topic: out}
""")
    line = b'{"id": 18446744073709551616, "x": 1, "deep": {"a": [-9223372036854775809]}}'
    result = await pipeline.process(raw(line))
    [value] = values(result, "out")
    assert value["id"] == BIG and value["id"].__class__ is int
    assert value["next"] == BIG + 1 and value["neg"] == -BIG
    assert value["text"] == "18446744073709551616"
    assert value["deep"] == {"a": [-9_223_372_036_854_775_809]}
    encoded = jsonl.dumps(value)
    assert b'"id":18446744073709551616' in encoded
    assert b"-9223372036854775809" in encoded
    assert b"e+19" not in encoded


async def test_a_big_integer_a_schema_touches_is_exact_or_a_dead_letter() -> None:
    pipeline = make("""
pipeline: b
source: {topic: in}
steps:
  - validate: {schema: {id: int, amount: float}}
sink: {topic: out}
""")
    result = await pipeline.process(
        raw(
            {"id": BIG, "amount": 1},
            {"id": "18446744073709551617", "amount": 2.5},
            {"id": 1, "amount": BIG + 1},  # a float would silently lose digits
        )
    )
    assert [v["id"] for v in values(result, "out")] == [BIG, BIG + 1]
    assert letters(result) == [("validate", "schema")]
    assert "would lose digits" in result.dead_letters[0].message


async def test_window_state_never_holds_an_integer_beyond_64_bits() -> None:
    pipeline = make("""
pipeline: b
source: {topic: in}
steps:
  - window:
      type: tumbling
      size: 1m
      key: user
      aggregates: {n: count(), total: sum(x), top: max(x), p: "percentile(x, 0.5)"}
sink: {topic: out}
""")
    result = await pipeline.process(
        raw(
            {"user": "a", "x": 2**63},
            {"user": "a", "x": 2**63},  # the sum would pass 2**64: a dead letter
            {"user": "a", "x": BIG},  # max() would hold it
            {"user": BIG, "x": 1},  # the key would be held in the state
            {"user": "a", "x": 1},
        )
    )
    assert letters(result) == [("window", "expression")] * 2 + [("window", "key")]
    assert all("beyond 64" in d.message for d in result.dead_letters)
    pipeline.persist()
    final = await pipeline.flush(final=True)
    [window] = values(final, "out")
    # the failed records changed nothing: not the count, nor the percentile's values
    assert (window["n"], window["total"], window["top"]) == (2, 2**63 + 1, 2**63)
    store = pipeline.state.store("b.window")
    for key in store.keys():
        orjson.dumps(store.get(key))  # what a worker's changelog does: no error


def test_loads_is_exact_and_refuses_what_orjson_refuses() -> None:
    assert jsonl.loads(b'{"a": 18446744073709551616}') == {"a": BIG}
    assert jsonl.loads(b"[-9223372036854775809]") == [-(2**63) - 1]
    assert jsonl.loads(b'{"ns": 1795774800000000000}') == {"ns": 1795774800000000000}
    for bad in (
        b"[11111111111111111111, NaN]",
        b"[11111111111111111111, 1e400]",
        b'["\\ud800", 11111111111111111111]',
        b'["\xff", 11111111111111111111]',
        b"[" * 5000 + b"11111111111111111111" + b"]" * 5000,
        b"1" * 5000,
    ):
        with pytest.raises(ValueError):
            jsonl.loads(bad)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-(2**80), 2**80),
            st.floats(allow_nan=False, allow_infinity=False),
            st.text(),
        ),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=5), children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_dumps_and_loads_round_trip_exactly(value: Any) -> None:
    assert jsonl.loads(jsonl.dumps(value)) == value


def test_dumps_never_raises_for_what_loads_accepts() -> None:
    deep = orjson.loads(b"[" * 1000 + b"]" * 1000)  # orjson reads 1,024 levels, writes 254
    assert jsonl.dumps(deep) == b"[" * 1000 + b"]" * 1000
    assert jsonl.dumps({"s": jsonl.loads(b'"\\ud83d\\ude00"')}) == '{"s":"😀"}'.encode()
    assert jsonl.dumps([float("nan"), {1: 2}]) == b'[null,{"1":2}]'


async def test_values_nested_1000_deep_are_records_like_any_other() -> None:
    # orjson reads 1,024 levels; str() of such a key raised RecursionError in the decoder
    pipeline = make("""
pipeline: d
source: {topic: in, key: user}
steps:
  - dedupe: {key: user, within: 1m}
  - filter: "user = x"
  - window: {type: tumbling, size: 1m, key: user, aggregates: {n: count(), d: count_distinct(x)}}
sink: {topic: out}
""")
    deep = b"[" * 1000 + b"]" * 1000
    result = await pipeline.process(raw(b'{"user": ' + deep + b', "x": ' + deep + b"}"))
    assert letters(result) == [("filter", "expression")]  # comparing them recursed: a letter
    final = await pipeline.flush(final=True)
    assert final.count() == 0
    assert jsonl.dumps(orjson.loads(deep)) == deep
