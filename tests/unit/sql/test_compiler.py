"""What each SQL form compiles to, and the choices where DESIGN.md is silent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from models.pipeline_spec import PipelineSpec
from streams.sql.compiler import compile_sql
from tests.unit.sql.conftest import compiled, replay_sql

PAY = """\
CREATE STREAM pay (
  id VARCHAR NOT NULL,
  User_Id VARCHAR NOT NULL KEY,
  amount DOUBLE NOT NULL,
  card STRUCT<number VARCHAR, scheme VARCHAR>,
  tags ARRAY<VARCHAR>,
  ts BIGINT NOT NULL
) WITH (KAFKA_TOPIC = 'pay', TIMESTAMP = 'ts', VALUE_FORMAT = 'JSON');
"""


def documents(text: str) -> dict[str, dict[str, Any]]:
    return {p.name: p.document for p in compiled(PAY + text).pipelines}


def steps(text: str, name: str) -> list[dict[str, Any]]:
    return list(documents(text)[name]["steps"])


def test_a_declared_stream_is_no_pipeline_and_its_columns_are_the_schema() -> None:
    program = compiled(PAY + "CREATE STREAM copy AS SELECT * FROM pay;")
    assert [p.name for p in program.pipelines] == ["copy"]
    (source,) = program.sources
    assert (source.topic, source.key, source.timestamp) == ("pay", ("User_Id",), "ts")
    assert program.pipelines[0].document["steps"] == [
        {
            "validate": {
                "schema": {
                    "id": "str",
                    "User_Id": "str",
                    "amount": "float",
                    "card": "dict?",
                    "tags": "list?",
                    "ts": "int",
                }
            }
        }
    ]


def test_select_star_keeps_the_record_and_emit_changes_is_accepted_on_streams() -> None:
    document = documents("CREATE STREAM a AS SELECT * FROM pay WHERE amount > 0 EMIT CHANGES;")["a"]
    assert [next(iter(s)) for s in document["steps"]] == ["validate", "filter"]
    assert document["sink"] == {"topic": "a"} and document["dlq"] == {"topic": "a-dlq"}


def test_default_topics_follow_the_name() -> None:
    document = documents("CREATE STREAM big_pay_ments AS SELECT * FROM pay;")["big_pay_ments"]
    assert document["sink"] == {"topic": "big-pay-ments"}
    assert document["dlq"] == {"topic": "big-pay-ments-dlq"}


def test_names_resolve_like_ksqldb_unquoted_ignore_case_qualifiers_drop() -> None:
    found = steps(
        "CREATE STREAM a AS SELECT P.ID, user_id AS u, p.card.number AS num, TS "
        "FROM pay p WHERE pay.AMOUNT > 1;",
        "a",
    )
    assert found[1:] == [
        {"filter": "amount > 1"},
        {"map": {"id": "id", "u": "User_Id", "num": "card.number", "ts": "ts"}},
    ]


def test_quoted_identifiers_match_exactly() -> None:
    program = compile_sql(PAY + 'CREATE STREAM a AS SELECT "user_id" AS u FROM pay;', "f.sql")
    assert "unknown column 'user_id'" in program.errors[0].reason


def test_keywords_are_case_insensitive() -> None:
    lower = PAY.lower().replace("user_id", "User_Id") + (
        "create table t as select user_id, count(*) as n from pay "
        "window hopping (size 1 minute, advance by 20 seconds, grace period 1 second) "
        "group by user_id emit changes;"
    )
    (pipeline,) = compiled(lower).pipelines
    window = pipeline.document["steps"][1]["window"]
    assert window == {
        "type": "hopping",
        "size": "1m",
        "hop": "20s",
        "grace": "1s",
        "key": "User_Id",
        "emit": "updates",
        "aggregates": {"n": "count()"},
    }


def test_partition_by_rekeys_the_stream() -> None:
    document = documents("CREATE STREAM a AS SELECT * FROM pay PARTITION BY id;")["a"]
    assert document["source"]["key"] == "id"


def test_a_table_is_keyed_by_group_by_so_a_worker_repartitions_by_it() -> None:
    document = documents(
        "CREATE TABLE t AS SELECT id, COUNT(*) AS n FROM pay "
        "WINDOW SESSION (30 SECONDS) GROUP BY id;"
    )["t"]
    assert document["source"] == {"topic": "pay", "key": "id", "timestamp": "ts"}
    assert document["steps"][1]["window"]["gap"] == "30s"


def test_expressions_over_aggregates_and_having_only_aggregates_become_a_map() -> None:
    found = steps(
        "CREATE TABLE t AS SELECT user_id AS who, WINDOWSTART AS ws, COUNT(*) AS n,\n"
        "  SUM(amount) / COUNT(*) AS mean, ROUND(MAX(amount), 1) AS top\n"
        "FROM pay WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY user_id\n"
        "HAVING COUNT(*) > 1 AND MIN(amount) > 0 AND mean < 1000;",
        "t",
    )
    assert found[1]["window"]["aggregates"] == {
        "n": "count()",
        "_agg1": "sum(amount)",
        "_agg2": "max(amount)",
        "_agg3": "min(amount)",
    }
    assert found[2:] == [
        {"filter": "n > 1 AND _agg3 > 0 AND _agg1 / n < 1000"},
        {
            "map": {
                "who": "User_Id",
                "window_start": "window_start",
                "window_end": "window_end",
                "ws": "window_start",
                "n": "n",
                "mean": "_agg1 / n",
                "top": "ROUND(_agg2, 1)",
            }
        },
    ]


def test_having_may_repeat_the_select_lists_aggregate_or_use_its_alias() -> None:
    base = (
        "CREATE TABLE t AS SELECT user_id, SUM(amount) AS total FROM pay "
        "WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY user_id HAVING {};"
    )
    repeated = steps(base.format("SUM(amount) > 5"), "t")
    aliased = steps(base.format("total > 5"), "t")
    assert repeated == aliased
    assert repeated[2:] == [{"filter": "total > 5"}]  # no map: the window's result is it


def test_a_derived_stream_reads_its_source_topic_and_inherits_event_time() -> None:
    found = documents(
        "CREATE STREAM a WITH (KAFKA_TOPIC = 'a-out') AS SELECT id, ts AS t FROM pay;\n"
        "CREATE STREAM b AS SELECT * FROM a;\n"
        "CREATE STREAM c AS SELECT id FROM b;\n"
        "CREATE STREAM d AS SELECT * FROM c;\n"
    )
    assert found["b"]["source"] == {"topic": "a-out", "timestamp": "t"}
    assert found["d"]["source"] == {"topic": "c"}  # c dropped the time column
    assert "validate" not in str(found["b"]["steps"])


def test_a_stream_declared_without_columns_takes_any_field() -> None:
    found = compiled(
        "CREATE STREAM raw WITH (KAFKA_TOPIC = 'raw');\n"
        "CREATE STREAM a AS SELECT anything, x.y AS z FROM raw WHERE other > 1;"
    ).pipelines[0]
    assert found.document["steps"] == [
        {"filter": "other > 1"},
        {"map": {"anything": "anything", "z": "x.y"}},
    ]


def test_reserved_words_stay_quoted_in_the_generated_expressions() -> None:
    found = compiled(
        'CREATE STREAM s ("select" VARCHAR, "key" INT, "order" INT) '
        "WITH (KAFKA_TOPIC = 's');\n"
        'CREATE STREAM a AS SELECT "select", "order" + 1 AS o FROM s WHERE "key" > 1;'
    ).pipelines[0]
    assert found.document["steps"][1:] == [
        {"filter": '"key" > 1'},
        {"map": {"select": '"select"', "o": '"order" + 1'}},
    ]
    PipelineSpec.model_validate(found.document)


async def test_the_map_after_a_window_replays_to_hand_computed_values(tmp_path: Path) -> None:
    text = PAY + (
        "CREATE TABLE t AS SELECT user_id AS who, COUNT(*) AS n, SUM(amount) / COUNT(*) AS mean,\n"
        "  MAX(amount) - MIN(amount) AS spread\n"
        "FROM pay WINDOW TUMBLING (SIZE 10 SECONDS) GROUP BY user_id HAVING COUNT(*) > 1;"
    )
    rows = [
        {"id": "a", "User_Id": "u1", "amount": 2.0, "ts": 1000},
        {"id": "b", "User_Id": "u1", "amount": 6.0, "ts": 1004},
        {"id": "c", "User_Id": "u2", "amount": 1.0, "ts": 1005},
        {"id": "d", "User_Id": "u1", "amount": 1.0, "ts": 1011},
    ]
    topics, _ = await replay_sql(text, [orjson.dumps(r) for r in rows], tmp_path)
    assert topics["t"] == [
        {
            "who": "u1",
            "window_start": "1970-01-01T00:16:40.000Z",
            "window_end": "1970-01-01T00:16:50.000Z",
            "n": 2,
            "mean": 4.0,
            "spread": 4.0,
        }
    ]


USERS = (
    "CREATE TABLE users (id VARCHAR PRIMARY KEY, tier VARCHAR, amount DOUBLE) "
    "WITH (KAFKA_TOPIC = 'users');\n"
)


def test_a_join_is_an_enrich_step_before_where() -> None:
    found = documents(
        USERS + "CREATE STREAM a AS SELECT p.id, u.tier, u.id AS uid FROM pay p "
        "JOIN users u USING (id) WHERE tier = 'gold';"
    )["a"]
    assert found["tables"] == {"users": {"topic": "users", "key": "id"}}
    assert found["steps"][1:] == [
        {"enrich": {"table": "users", "on": "id", "fields": ["tier"], "missing": "drop"}},
        {"filter": "tier = 'gold'"},
        {"map": {"id": "id", "tier": "tier", "uid": "id"}},  # the key equals the ON column
    ]


def test_a_windowed_join_partitions_by_the_on_column_when_grouping_by_the_tables() -> None:
    found = documents(
        USERS + "CREATE TABLE t AS SELECT u.tier, COUNT(*) AS n FROM pay p "
        "LEFT JOIN users u ON u.id = p.User_Id WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY u.tier;"
    )["t"]
    assert found["source"]["key"] == "User_Id"
    assert found["steps"][1]["enrich"] == {
        "table": "users",
        "on": "User_Id",
        "fields": ["tier"],
        "missing": "keep",
    }
    assert found["steps"][2]["window"]["key"] == "tier"


def test_a_table_result_always_carries_its_keys_as_the_yaml_window_does() -> None:
    found = steps(
        "CREATE TABLE t AS SELECT COUNT(*) AS n FROM pay "
        "WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY User_Id, id;",
        "t",
    )
    assert found[1]["window"]["key"] == ["User_Id", "id"]
    assert len(found) == 2  # no map: the window's result has the keys already
    renamed = steps(
        "CREATE TABLE t AS SELECT id AS pid, COUNT(*) AS n FROM pay "
        "WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY User_Id, id;",
        "t",
    )
    assert renamed[2] == {
        "map": {
            "pid": "id",
            "User_Id": "User_Id",
            "window_start": "window_start",
            "window_end": "window_end",
            "n": "n",
        }
    }
