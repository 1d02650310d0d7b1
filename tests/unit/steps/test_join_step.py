"""`join` (two streams within an interval) against brute force and DuckDB, over generated
streams with out-of-order and late records, fed in batches as a worker would."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.pipeline_spec import PipelineSpec
from streams.core.state import MemoryStateBackend
from streams.steps.join import JoinStep
from streams.steps.pipeline import Pipeline

BASE = 1_795_600_000_000
WITHIN = 5_000
GRACE = 2_000


def _spec(kind: str = "inner", grace: int = GRACE, late: str = "drop") -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "pipeline": "joined",
            "source": {"topic": "orders", "timestamp": "ts"},
            "steps": [
                {
                    "join": {
                        "stream": "payments",
                        "key": "k",
                        "other_key": "pk",
                        "within": f"{WITHIN}ms",
                        "grace": f"{grace}ms",
                        "type": kind,
                        "late": late,
                        "fields": {"li": "i", "ri": "other.i", "k": "COALESCE(k, other.pk)"},
                    }
                }
            ],
            "sink": {"topic": "out"},
        }
    )


def _arrivals(raw: list[tuple[bool, str, int, int]]) -> list[dict[str, Any]]:
    """Records in arrival order: the clock advances; a record's event time lags it by its
    jitter (out of order; beyond the grace: late)."""
    clock, out = BASE, []
    for i, (left, key, advance, jitter) in enumerate(raw):
        clock += advance
        row: dict[str, Any] = {"i": i, "ts": clock - jitter}
        row["k" if left else "pk"] = key
        out.append({"left": left, "row": row})
    return out


streams_strategy = st.lists(
    st.tuples(
        st.booleans(),
        st.sampled_from(["a", "b", "c"]),
        # multiples of 500 ms: pairs exactly WITHIN apart, records exactly GRACE behind
        st.integers(0, 6).map(lambda n: n * 500),
        st.one_of(st.just(0), st.integers(0, 3), st.integers(0, 18)).map(lambda n: n * 500),
    ),
    max_size=80,
).map(_arrivals)


def _batches(arrivals: list[dict[str, Any]], sizes: list[int]) -> list[tuple[bool, list[Any]]]:
    """Runs of one side, cut into batches of the given sizes (cycled)."""
    batches: list[tuple[bool, list[Any]]] = []
    turn = 0
    for record in arrivals:
        size = sizes[turn % len(sizes)]
        if batches and batches[-1][0] == record["left"] and len(batches[-1][1]) < size:
            batches[-1][1].append(record["row"])
        else:
            batches.append((record["left"], [record["row"]]))
            turn += 1
    return batches


def _run(pipeline: Pipeline, batches: list[tuple[bool, list[Any]]]) -> tuple[list[Any], int]:
    async def go() -> tuple[list[Any], int]:
        out, late = [], 0
        for left, rows in batches:
            result = await pipeline.process_values(rows, None if left else "payments")
            out += [e.value for e in result.outputs.get("out", [])]
            late += len([d for d in result.dead_letters if d.error_type == "late"])
        result = await pipeline.flush(final=True)
        out += [e.value for e in result.outputs.get("out", [])]
        return out, late

    return asyncio.run(go())


def _brute(arrivals: list[dict[str, Any]], kind: str, grace: int) -> tuple[Counter[Any], int]:
    """Every pair of records of equal key at most WITHIN apart, neither late (more than
    `grace` behind the largest event time that arrived before it); unmatched ones for
    left/outer."""
    kept = []
    watermark = None
    for record in arrivals:
        t = record["row"]["ts"]
        if watermark is not None and t < watermark - grace:
            continue
        watermark = t if watermark is None else max(watermark, t)
        kept.append(record)
    left = [r["row"] for r in kept if r["left"]]
    right = [r["row"] for r in kept if not r["left"]]
    expected: Counter[Any] = Counter()
    matched: set[int] = set()
    for lrow in left:
        for rrow in right:
            if lrow["k"] == rrow["pk"] and abs(lrow["ts"] - rrow["ts"]) <= WITHIN:
                expected[(lrow["i"], rrow["i"], lrow["k"])] += 1
                matched |= {lrow["i"], rrow["i"]}
    if kind in ("left", "outer"):
        expected.update((r["i"], None, r["k"]) for r in left if r["i"] not in matched)
    if kind == "outer":
        expected.update((None, r["i"], r["pk"]) for r in right if r["i"] not in matched)
    return expected, len(arrivals) - len(kept)


@settings(max_examples=150, deadline=None)
@given(
    arrivals=streams_strategy,
    kind=st.sampled_from(["inner", "left", "outer"]),
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=4),
)
def test_every_pair_within_the_interval_once_against_brute_force(
    arrivals: list[dict[str, Any]], kind: str, sizes: list[int]
) -> None:
    pipeline = Pipeline(_spec(kind, late="dlq"))
    out, late = _run(pipeline, _batches(arrivals, sizes))
    expected, expected_late = _brute(arrivals, kind, GRACE)
    assert Counter((o["li"], o["ri"], o["k"]) for o in out) == expected
    assert late == expected_late


@settings(max_examples=60, deadline=None)
@given(arrivals=streams_strategy, kind=st.sampled_from(["inner", "left", "outer"]))
def test_state_holds_only_within_plus_grace_of_event_time(
    arrivals: list[dict[str, Any]], kind: str
) -> None:
    state = MemoryStateBackend()
    pipeline = Pipeline(_spec(kind), state=state)
    step = pipeline.steps[0]
    assert isinstance(step, JoinStep)

    async def go() -> None:
        for left, rows in _batches(arrivals, [3]):
            await pipeline.process_values(rows, None if left else "payments")
            watermark = max(step.watermarks.values())
            store = state.store("joined.join")
            times = [
                kept[0]
                for key in store.keys()
                if not key.startswith("\x00")
                for kept in (*store.get(key)["l"], *store.get(key)["r"])
            ]
            assert all(t >= watermark - WITHIN - GRACE for t in times)
            assert step.buffered == len(times)

    asyncio.run(go())


@settings(max_examples=60, deadline=None)
@given(arrivals=streams_strategy, kind=st.sampled_from(["inner", "left", "outer"]))
def test_interval_join_equals_duckdb(arrivals: list[dict[str, Any]], kind: str) -> None:
    """With a grace wider than the input no record is late: the SQL interval join."""
    pipeline = Pipeline(_spec(kind, grace=10**9))
    out, _ = _run(pipeline, _batches(arrivals, [5]))
    connection = duckdb.connect(config={"threads": 1})
    connection.execute("CREATE TABLE o (i INT, k TEXT, ts BIGINT)")
    connection.execute("CREATE TABLE p (i INT, pk TEXT, ts BIGINT)")
    for record in arrivals:
        row = record["row"]
        table, key = ("o", row["k"]) if record["left"] else ("p", row["pk"])
        connection.execute(f"INSERT INTO {table} VALUES (?, ?, ?)", [row["i"], key, row["ts"]])
    sql_join = {"inner": "JOIN", "left": "LEFT JOIN", "outer": "FULL OUTER JOIN"}[kind]
    rows = connection.execute(
        f"SELECT o.i, p.i, COALESCE(o.k, p.pk) FROM o {sql_join} p "
        f"ON o.k = p.pk AND abs(o.ts - p.ts) <= {WITHIN}"
    ).fetchall()
    assert Counter((o["li"], o["ri"], o["k"]) for o in out) == Counter(rows)


def test_a_restart_carries_on_from_the_store() -> None:
    """A second pipeline over the same store (a takeover) joins with what the first kept."""
    state = MemoryStateBackend()
    first = Pipeline(_spec("left"), state=state)
    asyncio.run(first.process_values([{"i": 1, "k": "a", "ts": BASE}]))
    second = Pipeline(_spec("left"), state=state)
    out, _ = _run(second, [(False, [{"i": 2, "pk": "a", "ts": BASE + 4_000}])])
    assert [(o["li"], o["ri"]) for o in out] == [(1, 2)]


def test_records_without_the_key_are_dead_letters() -> None:
    pipeline = Pipeline(_spec())
    result = asyncio.run(pipeline.process_values([{"i": 1, "ts": BASE}]))
    assert [(d.step, d.error_type) for d in result.dead_letters] == [("join", "key")]


def test_a_join_needs_within() -> None:
    with pytest.raises(ValueError, match="needs 'within'"):
        PipelineSpec.model_validate(
            {
                "pipeline": "p",
                "source": {"topic": "a"},
                "steps": [{"join": {"stream": "b", "key": "k"}}],
                "sink": {"topic": "out"},
            }
        )


def test_the_source_key_must_be_the_join_key() -> None:
    with pytest.raises(ValueError, match=r"differs from source\.key"):
        PipelineSpec.model_validate(
            {
                "pipeline": "p",
                "source": {"topic": "a", "key": "user"},
                "steps": [{"join": {"stream": "b", "key": "k", "within": "1m"}}],
                "sink": {"topic": "out"},
            }
        )
