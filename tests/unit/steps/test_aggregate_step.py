"""`aggregate` (running aggregates per key, no window) against brute force and DuckDB."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.pipeline_spec import PipelineSpec
from streams.core.records import BatchResult
from streams.core.state import MemoryStateBackend
from streams.steps.pipeline import Pipeline

BASE_S = 1_795_600_000


def _spec(aggregates: dict[str, str], emit: Any = "updates", key: Any = "user") -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "pipeline": "totals",
            "source": {"topic": "in", "timestamp": "ts"},
            "steps": [{"aggregate": {"key": key, "aggregates": aggregates, "emit": emit}}],
            "sink": {"topic": "out"},
        }
    )


def _run(
    pipeline: Pipeline, rows: list[dict[str, Any]], size: int, clock: list[float] | None = None
) -> list[BatchResult]:
    async def go() -> list[BatchResult]:
        results = []
        for i in range(0, len(rows), size):
            if clock is not None:
                clock[0] += 1
            results.append(await pipeline.process_values(rows[i : i + size]))
        results.append(await pipeline.flush(final=True))
        return results

    return asyncio.run(go())


rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "user": st.sampled_from(["ann", "bob", "cy", "dee"]),
            "amount": st.one_of(st.none(), st.integers(-1000, 1000)),
            "merchant": st.sampled_from(["m1", "m2", "m3", "m4", "m5"]),
            "ts": st.integers(0, 3600),
        }
    ),
    max_size=120,
).map(lambda rows: [{**r, "ts": BASE_S + int(r["ts"] or 0), "i": i} for i, r in enumerate(rows)])

AGGREGATES = {
    "n": "count()",
    "paid": "count(amount)",
    "total": "sum(amount)",
    "mean": "avg(amount)",
    "low": "min(amount)",
    "high": "max(amount)",
    "first_amount": "first(amount)",
    "last_amount": "last(amount)",
    "earliest_amount": "earliest(amount)",
    "latest_amount": "latest(amount)",
    "merchants": "count_distinct(merchant)",
    "p50": "percentile(amount, 0.5)",
}


def _brute(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each key's aggregates after each prefix of the input, by their definitions."""
    totals: dict[str, dict[str, Any]] = {}
    seen: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        mine = seen.setdefault(row["user"], [])
        mine.append(row)
        values = [r["amount"] for r in mine if r["amount"] is not None]
        timed = [(r["ts"], r["amount"]) for r in mine if r["amount"] is not None]
        totals[row["user"]] = {
            "user": row["user"],
            "n": len(mine),
            "paid": len(values),
            "total": sum(values) if values else None,
            "mean": sum(values) / len(values) if values else None,
            "low": min(values) if values else None,
            "high": max(values) if values else None,
            "first_amount": values[0] if values else None,
            "last_amount": values[-1] if values else None,
            # ties in event time: the first to arrive is the earliest, the last the latest
            "earliest_amount": min(timed, key=lambda p: p[0])[1] if timed else None,
            "latest_amount": max(reversed(timed), key=lambda p: p[0])[1] if timed else None,
            "merchants": len({r["merchant"] for r in mine}),
        }
    return totals


def _close(got: dict[str, Any], want: dict[str, Any], values: list[int]) -> None:
    p50 = got.pop("p50")
    assert got == pytest.approx(want)
    if values:  # DDSketch: within 1% of a value whose rank is the median's
        ordered = sorted(values)
        low = ordered[max(0, math.floor(0.5 * (len(ordered) - 1)))]
        high = ordered[min(len(ordered) - 1, math.ceil(0.5 * (len(ordered) - 1)))]
        slack = 0.01 * max(abs(low), abs(high)) + 1e-9
        assert low - slack <= p50 <= high + slack
    else:
        assert p50 is None


@settings(max_examples=80, deadline=None)
@given(rows=rows_strategy, size=st.integers(1, 30))
def test_updates_follow_every_record_against_brute_force(
    rows: list[dict[str, Any]], size: int
) -> None:
    pipeline = Pipeline(_spec(AGGREGATES))
    results = _run(pipeline, rows, size)
    outputs = [e for r in results for e in r.outputs.get("out", [])]
    assert len(outputs) == len(rows)  # one update per record, in order
    for index, event in enumerate(outputs):
        prefix = rows[: index + 1]
        user = rows[index]["user"]
        assert event.key == user
        want = _brute(prefix)[user]
        values = [r["amount"] for r in prefix if r["user"] == user and r["amount"] is not None]
        _close(dict(event.value), want, values)


@settings(max_examples=40, deadline=None)
@given(rows=rows_strategy, size=st.integers(1, 30))
def test_emit_every_sends_the_latest_totals_of_changed_keys(
    rows: list[dict[str, Any]], size: int
) -> None:
    clock = [float(BASE_S + 4000)]
    pipeline = Pipeline(
        _spec({"n": "count()", "total": "sum(amount)"}, emit={"every": "3s"}),
        clock=lambda: clock[0],
    )
    results = _run(pipeline, rows, size, clock)
    last: dict[str, dict[str, Any]] = {}
    sent = 0
    for result in results:
        keys = [e.key for e in result.outputs.get("out", [])]
        assert len(keys) == len(set(keys))  # a key once per emission
        sent += len(keys)
        for event in result.outputs.get("out", []):
            last[str(event.key)] = event.value
    brute = _brute(rows)
    assert last == {k: {"user": k, "n": v["n"], "total": v["total"]} for k, v in brute.items()}
    # fewer emissions than records whenever batches come faster than the interval
    assert sent <= len(rows)


def test_count_only_matches_the_component_it_replaces() -> None:
    """The per-key count of the side-by-side benchmark, keyed by the message key."""
    spec = _spec({"n": "count()"}, key=None)
    pipeline = Pipeline(spec)
    rows: list[dict[str, Any]] = [{"user": u, "ts": BASE_S} for u in "abacabad"]

    async def go() -> list[Any]:
        from streams.core.records import Event

        events = [Event(None, u, 0, None, f'{{"ts": {BASE_S}}}'.encode()) for u in "abacabad"]
        result = await pipeline.process(events)
        return [(e.key, e.value["n"]) for e in result.outputs["out"]]

    counts: dict[str, int] = {}
    expected = []
    for row in rows:
        counts[row["user"]] = counts.get(row["user"], 0) + 1
        expected.append((row["user"], counts[row["user"]]))
    assert asyncio.run(go()) == expected


def test_state_is_restored_from_the_store() -> None:
    """A second pipeline over the same store (a restart, a takeover) carries on the totals."""
    state = MemoryStateBackend()
    spec = _spec({"n": "count()", "total": "sum(amount)", "p": "percentile(amount, 0.9)"})
    rows = [{"user": "ann", "amount": a, "ts": BASE_S + a} for a in range(1, 11)]
    first = Pipeline(spec, state=state)
    _run(first, rows[:6], 4)
    first.persist()
    second = Pipeline(spec, state=state)
    results = _run(second, rows[6:], 4)
    last = [e for r in results for e in r.outputs.get("out", [])][-1].value
    assert (last["n"], last["total"]) == (10, 55)
    assert last["p"] == pytest.approx(9, rel=0.02)


def test_a_refused_value_is_a_dead_letter_and_changes_nothing() -> None:
    pipeline = Pipeline(_spec({"n": "count()", "total": "sum(amount)"}))
    rows: list[dict[str, Any]] = [
        {"user": "ann", "amount": 5, "ts": BASE_S},
        {"user": "ann", "amount": "five", "ts": BASE_S},
        {"amount": 1, "ts": BASE_S},
        {"user": "ann", "amount": 2, "ts": BASE_S},
    ]
    results = _run(pipeline, rows, 10)
    values = [e.value for r in results for e in r.outputs.get("out", [])]
    assert values == [{"user": "ann", "n": 1, "total": 5}, {"user": "ann", "n": 2, "total": 7}]
    letters = [(d.error_type, d.offset) for r in results for d in r.dead_letters]
    assert sorted(t for t, _ in letters) == ["expression", "key"]


@settings(max_examples=30, deadline=None)
@given(rows=rows_strategy)
def test_final_totals_equal_duckdb_group_by(rows: list[dict[str, Any]]) -> None:
    pipeline = Pipeline(
        _spec(
            {
                "n": "count()",
                "paid": "count(amount)",
                "total": "sum(amount)",
                "low": "min(amount)",
                "high": "max(amount)",
                "merchants": "count_distinct(merchant)",
            }
        )
    )
    results = _run(pipeline, rows, 7)
    last: dict[str, dict[str, Any]] = {}
    for result in results:
        for event in result.outputs.get("out", []):
            last[str(event.key)] = event.value
    connection = duckdb.connect(config={"threads": 1})
    connection.execute("CREATE TABLE s (i INT, usr TEXT, amount BIGINT, merchant TEXT)")
    if rows:
        connection.executemany(
            "INSERT INTO s VALUES (?, ?, ?, ?)",
            [(r["i"], r["user"], r["amount"], r["merchant"]) for r in rows],
        )
    duck = connection.execute(
        "SELECT usr, COUNT(*), COUNT(amount), SUM(amount), MIN(amount), MAX(amount), "
        "COUNT(DISTINCT merchant) FROM s GROUP BY usr"
    ).fetchall()
    expected = {
        usr: {
            "user": usr,
            "n": n,
            "paid": paid,
            "total": None if total is None else int(total),
            "low": low,
            "high": high,
            "merchants": merchants,
        }
        for usr, n, paid, total, low, high, merchants in duck
    }
    assert last == expected
