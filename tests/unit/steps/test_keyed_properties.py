"""dedupe, ratelimit and alert against brute-force models of their definitions."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from models.pipeline_spec import AlertSpec, DedupeSpec, EnrichSpec, RateLimitSpec
from streams.core.records import BatchResult, Event
from streams.core.state import DictStateStore
from streams.steps.contract import BatchContext
from streams.steps.keyed import AlertStep, DedupeStep, EnrichStep, RateLimitStep

BASE = 1_795_600_000_000


def _timeline(raw: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    now, out = BASE, []
    for key, advance, value in raw:
        now += advance
        out.append((key, now, value))
    return out


ordered_records = st.lists(
    st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 3_000), st.integers(0, 200)),
    min_size=1,
    max_size=150,
).map(_timeline)


def batches(
    step: Any, records: list[tuple[str, int, int]], size: int
) -> tuple[list[Event], BatchContext]:
    kept: list[Event] = []
    ctx = BatchContext(BatchResult(), 0)
    for i in range(0, len(records), size):
        events = [
            Event({"k": k, "v": v, "i": i + j}, key=k, timestamp_ms=t)
            for j, (k, t, v) in enumerate(records[i : i + size])
        ]
        kept += step.process(events, ctx)
    return kept, ctx


@settings(max_examples=150, deadline=None)
@given(records=ordered_records, size=st.integers(1, 40))
def test_dedupe_keeps_first_per_key_within(records: list[Any], size: int) -> None:
    within = 5_000
    step = DedupeStep("dedupe", DedupeSpec(key=("k",), within="5s"), DictStateStore())
    kept, ctx = batches(step, records, size)
    expected: list[int] = []
    last_kept: dict[str, int] = {}
    for index, (key, t, _) in enumerate(records):
        if key in last_kept and t - last_kept[key] < within:
            continue
        last_kept[key] = t
        expected.append(index)
    assert [e.value["i"] for e in kept] == expected
    assert ctx.drops.get(("dedupe", "duplicate"), 0) == len(records) - len(expected)
    # purged: only keys seen within `within` of the watermark remain
    watermark = max(t for _, t, _ in records)
    for key in step.store.keys():
        assert step.store.get(key) + within > watermark


@settings(max_examples=150, deadline=None)
@given(
    records=ordered_records,
    size=st.integers(1, 40),
    rate=st.integers(1, 5),
    burst=st.integers(1, 5),
)
def test_ratelimit_is_a_token_bucket_in_event_time(
    records: list[Any], size: int, rate: int, burst: int
) -> None:
    spec = RateLimitSpec(key=("k",), rate=rate, per="1s", burst=burst)
    step = RateLimitStep("ratelimit", spec, DictStateStore())
    kept, ctx = batches(step, records, size)
    expected: list[int] = []
    buckets: dict[Any, Any] = {}
    for index, (key, t, _) in enumerate(records):
        tokens, last = buckets.get(key, (float(burst), t))
        tokens = min(burst, tokens + (t - last) * rate / 1_000)
        if tokens >= 1:
            tokens -= 1
            expected.append(index)
        buckets[key] = (tokens, t)
    assert [e.value["i"] for e in kept] == expected
    assert ctx.drops.get(("ratelimit", "ratelimit"), 0) == len(records) - len(expected)


@settings(max_examples=150, deadline=None)
@given(records=ordered_records, size=st.integers(1, 40), hold=st.sampled_from([0, 2_000]))
def test_alert_fires_once_and_resolves_once(records: list[Any], size: int, hold: int) -> None:
    spec = AlertSpec.model_validate(
        {"name": "high", "when": "v > 100", "for": hold / 1000, "key": "k"}
    )
    step = AlertStep("high", spec, "alerts", DictStateStore())
    kept, ctx = batches(step, records, size)
    assert len(kept) == len(records)  # records pass on unchanged
    expected = []
    state: dict[str, dict[str, Any]] = {}
    for key, t, value in records:
        current = state.get(key)
        if value > 100:
            if current is None:
                current = state[key] = {"since": t, "firing": False}
            if not current["firing"] and t - current["since"] >= hold:
                current["firing"] = True
                expected.append((key, "firing"))
        elif current is not None:
            if current["firing"]:
                expected.append((key, "resolved"))
            del state[key]
    got = [(e.value["k"], e.value["status"]) for e in ctx.result.outputs.get("alerts", [])]
    assert got == expected
    assert ctx.gauges["alerts_firing:high"] == sum(1 for s in state.values() if s["firing"])


def test_enrich_missing_modes() -> None:
    table = DictStateStore()
    table.set("u1", {"user_id": "u1", "tier": "gold", "country": "DE"})
    for missing, kept_ids, dead in (("keep", [1, 2], 0), ("drop", [1], 0), ("dlq", [1], 1)):
        spec = EnrichSpec(table="users", on=("user_id",), fields=["tier"], missing=missing)
        step = EnrichStep("enrich", spec, table)
        ctx = BatchContext(BatchResult(), 0)
        events = [Event({"user_id": "u1", "id": 1}), Event({"user_id": "u9", "id": 2})]
        kept = step.process(events, ctx)
        assert [e.value["id"] for e in kept] == kept_ids
        assert kept[0].value["tier"] == "gold" and "country" not in kept[0].value
        assert len(ctx.result.dead_letters) == dead
