"""`sluice check` on broken SQL: every error as FILE:LINE:COL: statement NAME: reason, at
the place to fix, with the same "did you mean" help as YAML."""

from __future__ import annotations

import pytest

from streams.sql.compiler import compile_sql

ORDERS = """\
CREATE STREAM orders (
  order_id VARCHAR NOT NULL,
  "user"   VARCHAR NOT NULL,
  amount   DOUBLE NOT NULL,
  note     VARCHAR,
  ts       DOUBLE NOT NULL
) WITH (KAFKA_TOPIC = 'orders-in', TIMESTAMP = 'ts');
"""
FIRST = ORDERS.count("\n") + 1  # the line the statement under test starts on


def errors(text: str) -> list[str]:
    return [e.describe() for e in compile_sql(text, "f.sql").errors]


def only_error(statement: str) -> str:
    found = errors(ORDERS + statement)
    assert len(found) == 1, found
    return found[0]


CASES = [
    # (statement after ORDERS, line offset, column, statement name, words of the reason)
    (
        "CREATE STREAM a AS SELECT order_id, amout FROM orders;",
        0,
        37,
        "a",
        ["unknown column 'amout'", "did you mean 'amount'?"],
    ),
    (
        "CREATE STREAM a AS SELECT order_id\nFROM order;",
        1,
        6,
        "a",
        ["unknown stream 'order'", "did you mean 'orders'?"],
    ),
    (
        'CREATE STREAM a AS\nSELECT "user",\n       SUM(amount) AS total\nFROM orders;',
        2,
        8,
        "a",
        ["aggregate SUM(amount)", "GROUP BY"],
    ),
    (
        "CREATE TABLE t AS SELECT COUNT(*) AS n\nFROM orders\nWINDOW TUMBLING (SIZE 1 MINUTE);",
        0,
        26,
        "t",
        ["aggregate COUNT(*) needs GROUP BY"],
    ),
    (
        'CREATE TABLE t AS\nSELECT "user", note, COUNT(*) AS n FROM orders\n'
        'WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY "user";',
        1,
        16,
        "t",
        ["column 'note'", "neither in GROUP BY nor inside an aggregate"],
    ),
    (
        "CREATE TABLE t AS SELECT COUNT(*) AS n FROM orders\n"
        "WINDOW TUMBLING (SIZE 1 MINUTE)\nHAVING COUNT(*) > 2;",
        2,
        1,
        "t",
        ["HAVING needs GROUP BY"],
    ),
    (
        "CREATE STREAM a AS SELECT * FROM orders\nHAVING amount > 2;",
        1,
        1,
        "a",
        ["HAVING needs GROUP BY"],
    ),
    (
        'CREATE TABLE t AS SELECT "user", COUNT(*) AS n FROM orders\n'
        'WINDOW TUMBLING (SIZE 1 MINUTS) GROUP BY "user";',
        1,
        25,
        "t",
        ["invalid duration", "unknown unit 'MINUTS'", "did you mean 'MINUTES'?"],
    ),
    (
        'CREATE TABLE t AS SELECT "user", COUNT(*) AS n FROM orders\n'
        'WINDOW TUMBLING (SIZE MINUTE) GROUP BY "user";',
        1,
        23,
        "t",
        ["invalid duration", "expected a number"],
    ),
    (
        'CREATE TABLE t AS SELECT "user", COUNT(*) AS n FROM orders\n'
        'WINDOW HOPPING (SIZE 1 MINUTE, ADVANCE BY 2 MINUTES) GROUP BY "user";',
        1,
        43,
        "t",
        ["ADVANCE BY 2 MINUTES is larger than SIZE 1 MINUTE"],
    ),
    (
        'CREATE TABLE t AS SELECT "user", COUNT(*) AS n FROM orders\n'
        'WINDOW HOPPING (SIZE 1 MINUTE) GROUP BY "user";',
        1,
        16,
        "t",
        ["needs ADVANCE BY"],
    ),
    (
        'CREATE TABLE t AS SELECT "user", COUNT(*) AS n FROM orders\n'
        'WINDOW TUMBLING (SIZE 0 SECONDS) GROUP BY "user";',
        1,
        23,
        "t",
        ["0 SECONDS: must be more than 0"],
    ),
    (
        'CREATE TABLE t AS SELECT "user", COUNT(*) AS n FROM orders\n'
        'WINDOW TUMBLNG (SIZE 1 MINUTE) GROUP BY "user";',
        1,
        8,
        "t",
        ["expected TUMBLING, HOPPING or SESSION", "did you mean 'TUMBLING'?"],
    ),
    (
        'CREATE TABLE t AS SELECT "user", COUNT(*) AS n FROM orders\n'
        'WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY "user"\nEMIT FINALLY;',
        2,
        6,
        "t",
        ["expected FINAL or CHANGES after EMIT", "did you mean 'FINAL'?"],
    ),
    (
        'CREATE TABLE t AS SELECT "user", COUNT(*) FROM orders\n'
        'WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY "user";',
        0,
        34,
        "t",
        ["COUNT(*) needs a name", "AS"],
    ),
    (
        "CREATE STREAM a AS SELECT order_id, amount * 2 FROM orders;",
        0,
        37,
        "a",
        ["amount * 2 needs a name: add AS alias"],
    ),
    (
        "CREATE STREAM a AS SELECT order_id, UPPR(note) AS n FROM orders;",
        0,
        37,
        "a",
        ["unknown function 'uppr'", "did you mean 'upper'?"],
    ),
    (
        "CREATE STREAM a AS SELECT * FROM orders WHERE amount >;",
        0,
        54,
        "a",
        ["syntax error"],
    ),
    (
        "CREATE STREAM a WITH (KAFKA_TOPICS = 'x') AS SELECT * FROM orders;",
        0,
        23,
        "a",
        ["unknown property KAFKA_TOPICS", "did you mean 'KAFKA_TOPIC'?"],
    ),
    (
        "CREATE STREAM a AS SELECT * FROM orders WHERE note = 'it''s;\n",
        0,
        54,
        "a",
        ["unterminated quoted text"],
    ),
    (
        'CREATE TABLE t AS SELECT "user", COUNT(*) AS n FROM orders GROUP BY "user" EMIT FINAL;',
        0,
        76,
        "t",
        ["EMIT FINAL needs a WINDOW"],
    ),
    (
        'CREATE TABLE t AS SELECT "user", PERCENTILE(amount, 1.5) AS p FROM orders\n'
        'WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY "user";',
        0,
        34,
        "t",
        ["percentile() fraction must be a number from 0 to 1"],
    ),
    (
        "CREATE STREAM a AS SELECT * FROM orders WHERE SUM(amount) > 3;",
        0,
        47,
        "a",
        ["not allowed in WHERE", "HAVING"],
    ),
    (
        'CREATE TABLE t AS SELECT "user", COUNT(*) AS n FROM orders\n'
        'WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY "user"\nHAVING total > 3;',
        2,
        8,
        "t",
        ["unknown column 'total' in HAVING"],
    ),
    (
        'CREATE TABLE t AS SELECT "user", COUNT(*) AS n FROM orders\n'
        "WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY usr;",
        1,
        42,
        "t",
        ["unknown column 'usr' in GROUP BY", "did you mean 'user'?"],
    ),
    (
        "CREATE STREAM a (x INTEGR) WITH (KAFKA_TOPIC = 'a');",
        0,
        20,
        "a",
        ["unknown type 'INTEGR'", "did you mean 'INTEGER'?"],
    ),
    (
        "CREATE STREAM a (x \"  \") WITH (KAFKA_TOPIC = 'a');",
        0,
        20,
        "a",
        ["column 'x': unknown type '\"  \"'; use one of VARCHAR"],
    ),
    (
        "CREATE STREAM a (x INT) WITH (TIMESTAMP = 'x');",
        0,
        15,
        "a",
        ["needs WITH (KAFKA_TOPIC"],
    ),
    (
        "CREATE STREAM a (x INT, ts DOUBLE) WITH (KAFKA_TOPIC = 'a', TIMESTAMP = 'tss');",
        0,
        73,
        "a",
        ["TIMESTAMP 'tss' is not a column", "did you mean 'ts'?"],
    ),
    (
        "CREATE STREAM a WITH (KAFKA_TOPIC = 'orders-in') AS SELECT * FROM orders;",
        0,
        37,
        "a",
        ["topic 'orders-in' is already the topic of 'orders'"],
    ),
    (
        "CREATE STREAM a AS SELECT * FROM b;\nCREATE STREAM b AS SELECT * FROM orders;",
        0,
        34,
        "a",
        ["unknown stream 'b'", "defined later"],
    ),
    (
        "CREATE TABLE users (id VARCHAR PRIMARY KEY, note VARCHAR) WITH (KAFKA_TOPIC = 'u');\n"
        "CREATE STREAM a AS SELECT o.order_id, u.note FROM orders o LEFT JOIN users u "
        "ON o.order_id = u.id;",
        1,
        39,
        "a",
        ["'note' is a column of both 'orders' and 'users'"],
    ),
    (
        "CREATE TABLE users (id VARCHAR PRIMARY KEY, tier VARCHAR) WITH (KAFKA_TOPIC = 'u');\n"
        "CREATE STREAM a AS SELECT * FROM orders o JOIN users u ON o.order_id = u.tier;",
        1,
        59,
        "a",
        ["ON compares the stream's columns with the key of 'users' (id)"],
    ),
    (
        "CREATE STREAM a AS SELECT * FROM orders o RIGHT JOIN orders p ON o.amount = p.amount;",
        0,
        54,
        "a",
        ["RIGHT JOIN is not supported"],
    ),
    (
        "CREATE STREAM b (x INT) WITH (KAFKA_TOPIC = 'b');\n"
        "CREATE STREAM a AS SELECT * FROM orders o JOIN b ON o.amount = b.x;",
        1,
        48,
        "a",
        ["JOIN b: a join of two streams needs WITHIN"],
    ),
    (
        "CREATE TABLE users (id VARCHAR, tier VARCHAR) WITH (KAFKA_TOPIC = 'u');",
        0,
        14,
        "users",
        ["lookup table 'users' needs a key"],
    ),
    (
        "CREATE TABLE users (id VARCHAR KEY) WITH (KAFKA_TOPIC = 'u');\n"
        "CREATE STREAM a AS SELECT * FROM users;",
        1,
        34,
        "a",
        ["'users' is a lookup table: JOIN it"],
    ),
    (
        "INSERT INTO x SELECT * FROM orders;",
        0,
        1,
        "1",
        ["expected CREATE STREAM or CREATE TABLE"],
    ),
]


@pytest.mark.parametrize(("statement", "line", "column", "name", "words"), CASES)
def test_an_error_names_file_line_column_statement_and_reason(
    statement: str, line: int, column: int, name: str, words: list[str]
) -> None:
    error = only_error(statement)
    if name == "1":  # no name yet: the statement's number
        name = "2"
    assert error.startswith(f"f.sql:{FIRST + line}:{column}: statement {name}: "), error
    for word in words:
        assert word in error, error


def test_a_missing_semicolon_is_reported_where_it_belongs() -> None:
    found = errors(
        ORDERS + "CREATE STREAM a AS SELECT * FROM orders\nCREATE STREAM b AS SELECT * FROM a;"
    )
    assert found == [
        f"f.sql:{FIRST}:40: statement a: missing ';' at the end of this statement "
        "(statements end with ;)"
    ]


def test_every_statement_is_checked_and_readers_of_a_broken_one_stay_quiet() -> None:
    found = errors(
        ORDERS
        + "CREATE STREAM a AS SELECT amout FROM orders;\n"
        + "CREATE STREAM b AS SELECT * FROM a;\n"
        + "CREATE STREAM c AS SELECT nte AS n FROM orders;\n"
    )
    assert [e.split(": ")[0:2] for e in found] == [
        [f"f.sql:{FIRST}:27", "statement a"],
        [f"f.sql:{FIRST + 2}:27", "statement c"],
    ]


def test_several_problems_of_one_statement_are_all_reported() -> None:
    found = errors(
        ORDERS + 'CREATE TABLE t AS SELECT "user", notte, COUNT(*) AS n, SUM(amont) AS s\n'
        'FROM orders WHERE amout > 1 WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY "user";'
    )
    assert len(found) == 3
    assert "'notte'" in found[0] and "'amont'" in found[1] and "'amout'" in found[2]


def test_an_empty_file_is_an_error() -> None:
    assert errors("-- nothing here\n") == ["f.sql:1:1: no statements: this file declares no stream"]


def test_where_cannot_use_a_select_alias_and_says_so() -> None:
    error = only_error(
        "CREATE STREAM a AS SELECT amount * 2 AS double FROM orders WHERE double > 3;"
    )
    assert "'double' is a select alias, which WHERE cannot use" in error


MORE = [
    # (statement after ORDERS, line offset, statement name, words of the reason)
    ("CREATE STREAM a (x INT, X INT) WITH (KAFKA_TOPIC = 'a');", 0, "a", ["declared twice"]),
    (
        "CREATE STREAM a (x INT) WITH (KAFKA_TOPIC = 'a', KAFKA_TOPIC = 'b');",
        0,
        "a",
        ["KAFKA_TOPIC is given twice"],
    ),
    (
        "CREATE STREAM a (x INT KEY, y INT) WITH (KAFKA_TOPIC = 'a', KEY = 'y');",
        0,
        "a",
        ["differs from the columns marked KEY"],
    ),
    (
        "CREATE STREAM a (x INT) WITH (KAFKA_TOPIC = 'a', VALUE_FORMAT = 'XML');",
        0,
        "a",
        ["VALUE_FORMAT 'XML'", "JSON, AVRO, PROTOBUF, JSON_SR"],
    ),
    ("CREATE STREAM a (x INT) WITH (KAFKA_TOPIC = 'a b');", 0, "a", ["not a topic name"]),
    ("CREATE STREAM a (x INT) WITH (KAFKA_TOPIC = 3);", 0, "a", ["takes quoted text"]),
    ("CREATE STREAM a (x INT) WITH (KAFKA_TOPIC 'a');", 0, "a", ["expected NAME = 'value'"]),
    ("CREATE STREAM a (x INT) WITH (KAFKA_TOPIC = a);", 0, "a", ["expected a quoted value"]),
    ("CREATE STREAM a (x) WITH (KAFKA_TOPIC = 'a');", 0, "a", ["needs a type"]),
    (
        "CREATE STREAM a (x INT DEFAULT 3) WITH (KAFKA_TOPIC = 'a');",
        0,
        "a",
        ["unexpected 'DEFAULT'"],
    ),
    ("CREATE STREAM a () WITH (KAFKA_TOPIC = 'a');", 0, "a", ["at least one column"]),
    ("CREATE STREAM a (x INT,) WITH (KAFKA_TOPIC = 'a');", 0, "a", ["another item after ','"]),
    (
        "CREATE STREAM a (x INT) WITH (KAFKA_TOPIC = 'a') AS SELECT * FROM orders;",
        0,
        "a",
        ["either declares columns or is AS SELECT"],
    ),
    ("CREATE STREAM a (x INT) WITH (KAFKA_TOPIC = 'a') EXTRA;", 0, "a", ["expected"]),
    ("CREATE STREAMS a AS SELECT * FROM orders;", 0, "2", ["did you mean 'STREAM'?"]),
    ("CREATE STREAM AS SELECT * FROM orders;", 0, "2", ["expected a name"]),
    ("CREATE STREAM 'a' AS SELECT * FROM orders;", 0, "2", ["names are words"]),
    ("CREATE STREAM a AS WITH x AS (SELECT 1) SELECT * FROM x;", 0, "a", ["expected SELECT"]),
    ("CREATE STREAM orders AS SELECT * FROM orders;", 0, "orders", ["already defined"]),
    ("CREATE STREAM a AS SELECT * FROM a;", 0, "a", ["cannot read itself"]),
    (
        "CREATE STREAM a AS SELECT * FROM orders WINDOW TUMBLING (SIZE 1 MINUTE);",
        0,
        "a",
        ["WINDOW makes a table"],
    ),
    (
        'CREATE STREAM a AS SELECT "user" FROM orders GROUP BY "user";',
        0,
        "a",
        ["GROUP BY makes a table"],
    ),
    ("CREATE STREAM a AS SELECT * FROM orders EMIT FINAL;", 0, "a", ["EMIT FINAL is for"]),
    (
        "CREATE STREAM a AS SELECT * FROM orders EMIT CHANGES LIMIT 3;",
        0,
        "a",
        ["ends the statement"],
    ),
    ("CREATE STREAM a AS SELECT * FROM orders ORDER BY amount;", 0, "a", ["ORDER BY"]),
    ("CREATE STREAM a AS SELECT * FROM orders LIMIT 3;", 0, "a", ["LIMIT"]),
    ("CREATE STREAM a AS SELECT DISTINCT amount FROM orders;", 0, "a", ["DISTINCT"]),
    ("CREATE STREAM a AS SELECT * FROM orders WHERE amount IN (SELECT 1);", 0, "a", ["subqueries"]),
    (
        "CREATE STREAM a AS SELECT ROW_NUMBER() OVER () AS r FROM orders;",
        0,
        "a",
        ["window functions"],
    ),
    ("CREATE STREAM a AS SELECT * FROM orders UNION SELECT * FROM orders;", 0, "a", ["UNION"]),
    ("CREATE STREAM a AS SELECT * FROM other.orders;", 0, "a", ["plain names"]),
    (
        "CREATE STREAM a AS SELECT amount AS x, note AS x FROM orders;",
        0,
        "a",
        ["two output columns"],
    ),
    ("CREATE STREAM a AS SELECT * FROM orders PARTITION BY nte;", 0, "a", ["PARTITION BY"]),
    ("CREATE STREAM a AS SELECT * FROM orders PARTITION BY note + 1;", 0, "a", ["takes columns"]),
    ("CREATE STREAM a WITH (TIMESTAMP = 'tss') AS SELECT * FROM orders;", 0, "a", ["not a column"]),
    ('CREATE STREAM "a b" AS SELECT * FROM orders;', 0, "a b", ["cannot name a pipeline"]),
    (
        "CREATE STREAM a AS SELECT note, * FROM orders PARTITION BY order_id;",
        0,
        "a",
        ["two output columns are named 'note'"],
    ),
    (
        "CREATE TABLE t AS SELECT * FROM orders WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY note;",
        0,
        "t",
        ["SELECT * has no meaning in a table"],
    ),
    (
        "CREATE TABLE t AS SELECT note, COUNT(*) AS note FROM orders "
        "WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY note;",
        0,
        "t",
        ["is a GROUP BY column"],
    ),
    (
        "CREATE TABLE t AS SELECT note, COUNT(*) AS window_start FROM orders "
        "WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY note;",
        0,
        "t",
        ["the window's"],
    ),
    (
        "CREATE TABLE t AS SELECT note, SUM(COUNT(*)) AS n FROM orders "
        "WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY note;",
        0,
        "t",
        ["cannot be nested"],
    ),
    (
        "CREATE TABLE t AS SELECT note, SUM(DISTINCT amount) AS n FROM orders "
        "WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY note;",
        0,
        "t",
        ["DISTINCT works in COUNT(DISTINCT x) only"],
    ),
    (
        "CREATE TABLE t AS SELECT note, MAX(amount, 3) AS n FROM orders "
        "WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY note;",
        0,
        "t",
        ["GREATEST"],
    ),
    (
        "CREATE TABLE t AS SELECT note, SUM(*) AS n FROM orders "
        "WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY note;",
        0,
        "t",
        ["only COUNT(*) counts rows"],
    ),
    (
        "CREATE TABLE t AS SELECT note, PERCENTILE(amount) AS n FROM orders "
        "WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY note;",
        0,
        "t",
        ["a value and a fraction"],
    ),
    (
        "CREATE TABLE t AS SELECT note FROM orders WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY note;",
        0,
        "t",
        ["at least one aggregate"],
    ),
    (
        "CREATE TABLE t AS SELECT note, COUNT(*) AS n FROM orders "
        "WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY UPPER(note);",
        0,
        "t",
        ["GROUP BY takes columns"],
    ),
    (
        "CREATE TABLE t AS SELECT note, COUNT(*) AS n FROM orders "
        "WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY note, note;",
        0,
        "t",
        ["twice"],
    ),
    (
        "CREATE TABLE t AS SELECT note, COUNT(*) AS n FROM orders "
        "WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY note PARTITION BY note;",
        0,
        "t",
        ["PARTITION BY is for streams"],
    ),
    (
        "CREATE TABLE t AS SELECT note FROM orders WINDOW TUMBLING (SIZE 1 MINUTE);",
        0,
        "t",
        ["needs aggregates and GROUP BY"],
    ),
    (
        "CREATE TABLE t AS SELECT note, COUNT(*) AS n FROM orders "
        "WINDOW SESSION (1 MINUTE, ADVANCE BY 1 SECOND) GROUP BY note;",
        0,
        "t",
        ["ADVANCE BY is for HOPPING"],
    ),
    (
        "CREATE TABLE t AS SELECT note, COUNT(*) AS n FROM orders "
        "WINDOW TUMBLING (SIZE 1 MINUTE, SIZE 2 MINUTES) GROUP BY note;",
        0,
        "t",
        ["given twice"],
    ),
    (
        "CREATE TABLE t AS SELECT note, COUNT(*) AS n FROM orders "
        "WINDOW TUMBLING (SIZE 1 MINUTE) WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY note;",
        0,
        "t",
        ["one WINDOW clause"],
    ),
    (
        "CREATE TABLE t AS SELECT note, COUNT(*) AS n FROM orders "
        "WINDOW TUMBLING (SIZE 1 MINUTE, HOP 3 SECONDS) GROUP BY note;",
        0,
        "t",
        ["unexpected 'HOP'"],
    ),
    (
        "CREATE TABLE t AS SELECT note, COUNT(*) AS n FROM orders "
        "WINDOW TUMBLING (SIZE 1 MINUTE SOON) GROUP BY note;",
        0,
        "t",
        ["unexpected 'SOON'"],
    ),
    (
        "CREATE TABLE t AS SELECT note, COUNT(*) AS n FROM orders "
        "WINDOW TUMBLING (SIZE 1) GROUP BY note;",
        0,
        "t",
        ["add a unit"],
    ),
    (
        "CREATE TABLE t AS SELECT note, COUNT(*) AS n FROM orders "
        "WINDOW TUMBLING (GRACE PERIOD) GROUP BY note;",
        0,
        "t",
        ["expected a duration"],
    ),
    (
        "CREATE TABLE t AS SELECT note, COUNT(*) AS n FROM orders "
        "WINDOW TUMBLING (GRACE PERIOD 1 SECOND) GROUP BY note;",
        0,
        "t",
        ["needs a SIZE"],
    ),
    (
        "CREATE TABLE t AS SELECT note, COUNT(*) AS n FROM orders "
        "WINDOW SESSION (GRACE PERIOD 1 SECOND) GROUP BY note;",
        0,
        "t",
        ["needs a gap"],
    ),
    (
        "CREATE TABLE u (x INT) WITH (KAFKA_TOPIC = 'u', TIMESTAMP = 'x');",
        0,
        "u",
        ["unknown property TIMESTAMP"],
    ),
]


@pytest.mark.parametrize(("statement", "line", "name", "words"), MORE)
def test_more_errors_name_the_line_and_the_statement(
    statement: str, line: int, name: str, words: list[str]
) -> None:
    found = errors(ORDERS + statement)
    assert found, statement
    assert found[0].startswith(f"f.sql:{FIRST + line}:"), found
    assert f": statement {name}: " in found[0], found
    for word in words:
        assert word in found[0], found


def test_retention_is_accepted_and_means_nothing_here() -> None:
    found = errors(
        ORDERS + "CREATE TABLE t AS SELECT note, COUNT(*) AS n FROM orders "
        "WINDOW TUMBLING (SIZE 1 MINUTE, RETENTION 7 DAYS) GROUP BY note;"
    )
    assert found == []
