"""The SQL means what SQL means: random filter/select and windowed aggregate queries,
replayed by sluice and run by DuckDB over the same JSON Lines, give the same rows.

Windows in DuckDB are plain SQL: tumbling by floor arithmetic on the epoch milliseconds,
hopping by joining each row with the window starts that contain it, sessions by
`lag` over each key's times. The grace period is a day, so no record is late and the
streaming answer must be the batch answer. CI runs a modest number of queries; run
`pytest --hypothesis-profile=sql-thorough tests/unit/sql/test_duckdb.py` for many more.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.sql.conftest import read_jsonl, replay_sql

DECLARATION = """\
CREATE STREAM t (
  k VARCHAR NOT NULL, g INT NOT NULL, x DOUBLE, y INT, s VARCHAR, ts DOUBLE NOT NULL
) WITH (KAFKA_TOPIC = 't', TIMESTAMP = 'ts');
"""
COLUMNS = (
    "{'k': 'VARCHAR', 'g': 'INTEGER', 'x': 'DOUBLE', 'y': 'INTEGER', 's': 'VARCHAR', "
    "'ts': 'DOUBLE'}"
)
START = 1_700_000_000

# the profile's example count when one is chosen (sql-thorough), else a CI-sized one
EXAMPLES = settings().max_examples if settings.get_current_profile_name() != "default" else 60
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- random records ------------------------------------------------------------------------


@st.composite
def records(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(1, 60))
    clock = START + draw(st.integers(0, 100)) * 0.25
    rows = []
    for _ in range(count):
        clock += draw(st.sampled_from([0, 0.25, 1, 2.5, 4, 9, 30]))
        jitter = draw(st.sampled_from([0, 0, 0, -3.75, -20]))  # disorder, well within grace
        row: dict[str, Any] = {
            "k": draw(st.sampled_from(["a", "b", "c"])),
            "g": draw(st.integers(0, 2)),
            "x": draw(st.none() | st.integers(-40, 40).map(lambda n: n * 0.5 + 0.25)),
            "y": draw(st.none() | st.integers(-5, 20)),
            "s": draw(st.none() | st.sampled_from(["ab", "b", "Abc", "", "z%"])),
            "ts": clock + jitter,
        }
        for name in ("x", "y", "s"):
            if row[name] is None and draw(st.booleans()):
                del row[name]  # missing, not null: the same to SQL
        rows.append(row)
    return rows


# --- random expressions (fully parenthesized: the two parsers need not agree on precedence)

NUMBER_LITERALS = st.sampled_from(["0", "1", "2", "7", "0.5", "1.5", "2.25"])


def numbers() -> st.SearchStrategy[str]:
    leaves = st.sampled_from(["x", "y", "g", "LENGTH(s)"]) | NUMBER_LITERALS
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.tuples(inner, st.sampled_from(["+", "-", "*"]), inner).map(
                lambda t: f"({t[0]} {t[1]} {t[2]})"
            ),
            inner.map(lambda a: f"ABS({a})"),
            inner.map(lambda a: f"(-({a}))"),
            st.tuples(inner, NUMBER_LITERALS).map(lambda t: f"COALESCE({t[0]}, {t[1]})"),
            st.tuples(conditions_leaf(), inner, inner).map(
                lambda t: f"(CASE WHEN {t[0]} THEN {t[1]} ELSE {t[2]} END)"
            ),
        ),
        max_leaves=4,
    )


def texts() -> st.SearchStrategy[str]:
    leaves = st.sampled_from(["s", "k", "'q'"])
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            inner.map(lambda a: f"UPPER({a})"),
            inner.map(lambda a: f"LOWER({a})"),
            st.tuples(inner, inner).map(lambda t: f"({t[0]} || {t[1]})"),
            inner.map(lambda a: f"COALESCE({a}, 'none')"),
        ),
        max_leaves=3,
    )


def conditions_leaf() -> st.SearchStrategy[str]:
    comparison = st.sampled_from(["=", "<>", "<", "<=", ">", ">="])
    simple_number = st.sampled_from(["x", "y", "g"]) | NUMBER_LITERALS
    return st.one_of(
        st.tuples(simple_number, comparison, simple_number).map(lambda t: f"({' '.join(t)})"),
        st.sampled_from(["x", "y", "s"]).map(lambda c: f"({c} IS NULL)"),
        st.sampled_from(["x", "y", "s"]).map(lambda c: f"({c} IS NOT NULL)"),
        st.sampled_from(["(k = 'a')", "(s LIKE 'a%')", "(s LIKE '%b%')", "(y IN (1, 2, 3))"]),
        st.sampled_from(["(y BETWEEN 0 AND 5)", "(x BETWEEN -5 AND 5.5)"]),
    )


def conditions() -> st.SearchStrategy[str]:
    comparison = st.sampled_from(["=", "<>", "<", "<=", ">", ">="])
    leaf = conditions_leaf() | st.tuples(numbers(), comparison, numbers()).map(
        lambda t: f"({' '.join(t)})"
    )
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            inner.map(lambda c: f"(NOT {c})"),
            st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(
                lambda t: f"({' '.join(t)})"
            ),
        ),
        max_leaves=3,
    )


# --- comparing -----------------------------------------------------------------------------


def plain(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def same(a: Any, b: Any) -> bool:
    a, b = plain(a), plain(b)
    if a is None or b is None or isinstance(a, str | bool) or isinstance(b, str | bool):
        return a == b and type(a) is type(b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def same_rows(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> bool:
    return len(got) == len(want) and all(
        set(g) == set(w) and all(same(g[c], w[c]) for c in w)
        for g, w in zip(got, want, strict=True)
    )


def iso(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@pytest.fixture(scope="module")
def duck() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(config={"threads": 1})
    connection.execute("SET error_on_division_by_zero = false")
    yield connection
    connection.close()


def run_both(
    duck: duckdb.DuckDBPyConnection, sql: str, query: str, rows: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """sluice's rows on topic `out` and DuckDB's rows of `query` (reading `{src}`)."""
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        lines = [orjson.dumps(r) for r in rows]
        topics, _ = asyncio.run(replay_sql(DECLARATION + sql, lines, directory))
        assert "out-dlq" not in topics, topics["out-dlq"][:3]
        source = (
            f"read_json('{directory / 'input.jsonl'}', format = 'newline_delimited', "
            f"columns = {COLUMNS})"
        )
        result = duck.sql(query.format(src=source))
        names = [d[0] for d in result.description]
        expected = [dict(zip(names, map(plain, row), strict=True)) for row in result.fetchall()]
        got = read_jsonl(directory / "out" / "out.jsonl") if topics.get("out") else []
    return got, expected


# --- filter and select ---------------------------------------------------------------------


@SETTINGS
@given(
    rows=records(),
    where=st.none() | conditions(),
    items=st.lists(st.one_of(numbers(), texts(), conditions()), min_size=0, max_size=4),
    star=st.booleans(),
)
def test_filter_and_select_mean_what_sql_means(
    duck: duckdb.DuckDBPyConnection,
    rows: list[dict[str, Any]],
    where: str | None,
    items: list[str],
    star: bool,
) -> None:
    select = (
        "*" if star or not items else "k, " + ", ".join(f"{e} AS c{i}" for i, e in enumerate(items))
    )
    clause = f" WHERE {where}" if where else ""
    sql = f"CREATE STREAM out AS SELECT {select} FROM t{clause};"
    got, expected = run_both(duck, sql, f"SELECT {select} FROM {{src}}{clause}", rows)
    if select == "*":
        got = [{c: r.get(c) for c in ("k", "g", "x", "y", "s", "ts")} for r in got]
    assert same_rows(got, expected), (sql, got[:5], expected[:5])


# --- windowed aggregates -------------------------------------------------------------------

AGGREGATES = [
    ("COUNT(*)", "count(*)"),
    ("COUNT(x)", "count(x)"),
    ("COUNT(s)", "count(s)"),
    ("SUM(y)", "sum(y)"),
    ("SUM(x)", "sum(x)"),
    ("AVG(x)", "avg(x)"),
    ("AVG(y)", "avg(y)"),
    ("MIN(y)", "min(y)"),
    ("MAX(x)", "max(x)"),
    ("MIN(s)", "min(s)"),
    ("COUNT(DISTINCT s)", "count(DISTINCT s)"),
    ("COUNT(DISTINCT y)", "count(DISTINCT y)"),
    ("SUM((y * 2) + g)", "sum((y * 2) + g)"),
    ("MAX(ABS(x))", "max(abs(x))"),
]
PERCENTILES = [0.5, 0.9, 0.25, 1.0]


def percentile_sql(q: float) -> tuple[str, str]:
    # nearest rank over the non-null values, as DESIGN.md's exact percentile is
    rank = f"CAST(greatest(1, ceil(CAST({q} AS DOUBLE) * count(x))) AS BIGINT)"
    return (
        f"PERCENTILE(x, {q})",
        f"list_sort(list(x) FILTER (WHERE x IS NOT NULL))[{rank}]",
    )


@st.composite
def aggregate_query(draw: st.DrawFn) -> dict[str, Any]:
    chosen = draw(st.lists(st.sampled_from(AGGREGATES), min_size=1, max_size=4, unique=True))
    if draw(st.booleans()):
        chosen.append(percentile_sql(draw(st.sampled_from(PERCENTILES))))
    keys = draw(st.sampled_from([["k"], ["k", "g"], ["g"]]))
    window = draw(st.sampled_from(["tumbling", "hopping", "session"]))
    size = draw(st.sampled_from([10, 30, 60])) * 1000
    hop = size // draw(st.sampled_from([2, 3, 5]))
    having = draw(
        st.none()
        | st.sampled_from(
            [
                ("COUNT(*) > 1", "count(*) > 1"),
                ("SUM(y) >= 5", "sum(y) >= 5"),
                ("MAX(x) IS NOT NULL", "max(x) IS NOT NULL"),
                ("a0 > 2", None),  # a select alias
            ]
        )
    )
    return {
        "aggregates": chosen,
        "keys": keys,
        "window": window,
        "size": size,
        "hop": hop,
        "where": draw(st.none() | conditions()),
        "having": having,
    }


def window_clause(query: dict[str, Any]) -> str:
    size, hop = query["size"], query["hop"]
    if query["window"] == "tumbling":
        return f"WINDOW TUMBLING (SIZE {size} MILLISECONDS, GRACE PERIOD 1 DAY)"
    if query["window"] == "hopping":
        return (
            f"WINDOW HOPPING (SIZE {size} MILLISECONDS, ADVANCE BY {hop} MILLISECONDS, "
            "GRACE PERIOD 1 DAY)"
        )
    return f"WINDOW SESSION ({size} MILLISECONDS, GRACE PERIOD 1 DAY)"


def duckdb_windows(query: dict[str, Any]) -> tuple[str, str, str]:
    """FROM clause, window start and window end expressions, for DuckDB."""
    size, hop = query["size"], query["hop"]
    where = f"WHERE {query['where']}" if query["where"] else ""
    timed = f"(SELECT *, CAST(floor(ts * 1000) AS BIGINT) AS t_ms FROM {{src}} {where})"
    if query["window"] == "tumbling":
        return f"(SELECT *, t_ms - t_ms % {size} AS ws FROM {timed})", "ws", f"ws + {size}"
    if query["window"] == "hopping":
        spans = -(-size // hop) + 1
        return (
            f"(SELECT * FROM (SELECT r.*, r.t_ms - r.t_ms % {hop} - i * {hop} AS ws "
            f"FROM {timed} r CROSS JOIN range(0, {spans}) h(i)) "
            f"WHERE ws <= t_ms AND t_ms < ws + {size})",
            "ws",
            f"ws + {size}",
        )
    keys = ", ".join(query["keys"])
    marked = (
        f"(SELECT *, CASE WHEN t_ms - lag(t_ms) OVER (PARTITION BY {keys} ORDER BY t_ms) "
        f"< {size} THEN 0 ELSE 1 END AS new FROM {timed})"
    )
    numbered = (
        f"(SELECT *, sum(new) OVER (PARTITION BY {keys} ORDER BY t_ms, new DESC "
        f"ROWS UNBOUNDED PRECEDING) AS sid FROM {marked})"
    )
    return numbered, "min(t_ms)", f"max(t_ms) + {size}"


@SETTINGS
@given(rows=records(), query=aggregate_query())
def test_windowed_aggregates_mean_what_sql_means(
    duck: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]], query: dict[str, Any]
) -> None:
    keys = ", ".join(query["keys"])
    aggregates = query["aggregates"]
    select = ", ".join(f"{ours} AS a{i}" for i, (ours, _) in enumerate(aggregates))
    having = query["having"]
    if having is not None and having[1] is None and not aggregates[0][0].startswith("COUNT"):
        having = None  # `a0 > 2` needs a0 to be a number
    where = f" WHERE {query['where']}" if query["where"] else ""
    sql = (
        f"CREATE TABLE out AS SELECT {keys}, {select} FROM t{where}\n"
        f"{window_clause(query)} GROUP BY {keys}" + (f" HAVING {having[0]}" if having else "") + ";"
    )
    source, start, end = duckdb_windows(query)
    theirs = ", ".join(f"{d} AS a{i}" for i, (_, d) in enumerate(aggregates))
    group = keys + (", ws" if query["window"] != "session" else ", sid")
    condition = having[1] if having and having[1] else "a0 > 2" if having else None
    duck_query = (
        f"SELECT {keys}, {start} AS window_start_ms, {end} AS window_end_ms, {theirs} "
        f"FROM {source} GROUP BY {group}" + (f" HAVING {condition}" if condition else "")
    )
    got, expected = run_both(duck, sql, duck_query, rows)
    for row in expected:
        row["window_start"] = iso(row.pop("window_start_ms"))
        row["window_end"] = iso(row.pop("window_end_ms"))
    order = [*query["keys"], "window_start", "window_end"]

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(row[c] for c in order)

    assert same_rows(sorted(got, key=key), sorted(expected, key=key)), (
        sql,
        duck_query,
        sorted(got, key=key)[:4],
        sorted(expected, key=key)[:4],
    )
