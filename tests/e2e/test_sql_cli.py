"""SQL pipeline files through the command line: check, explain, replay."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from streams.cli import main
from streams.offline.demo_data import payments, write_lines
from tests.e2e.test_cli import ROOT, sluice

pytestmark = pytest.mark.e2e
DEMO_SQL = ROOT / "config" / "pipelines" / "payments-sql.sql"

TWO_SOURCES = """\
CREATE STREAM clicks (page VARCHAR NOT NULL, ts DOUBLE NOT NULL)
  WITH (KAFKA_TOPIC = 'clicks', TIMESTAMP = 'ts');
CREATE STREAM views (page VARCHAR NOT NULL, seconds INT) WITH (KAFKA_TOPIC = 'views');
CREATE STREAM home_clicks AS SELECT page FROM clicks WHERE page = 'home';
CREATE STREAM long_views AS SELECT page, seconds FROM views WHERE seconds > 10;
"""


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_check_reports_sql_errors_as_file_line_column_statement(tmp_path: Path) -> None:
    broken = tmp_path / "broken.sql"
    broken.write_text(
        "CREATE STREAM s (a INT NOT NULL, ts DOUBLE) WITH (KAFKA_TOPIC = 's');\n"
        "CREATE STREAM d AS\n"
        "  SELECT a, b AS c\n"
        "  FROM s;\n"
        "CREATE TABLE t AS SELECT a, COUNT(*) AS n FROM s\n"
        "  WINDOW TUMBLING (SIZE 10 SECONDZ) GROUP BY a;\n"
    )
    result = sluice("check", str(broken))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{broken}:3:13: statement d: unknown column 'b' in the select list; 's' has a, ts",
        f"{broken}:6:28: statement t: invalid duration: unknown unit 'SECONDZ' (did you mean "
        "'SECOND'?); use MILLISECONDS, SECONDS, MINUTES, HOURS or DAYS",
    ]
    assert "2 error(s)" in result.stderr


def test_a_folder_check_includes_sql_files(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "a.sql").write_text(TWO_SOURCES)
    (folder / "b.sql").write_text("CREATE STREAM x AS SELECT * FROM nowhere;\n")
    code, out, _ = run("check", str(folder))
    assert code == 1
    assert out.startswith(f"{folder / 'b.sql'}:1:34: statement x: unknown stream 'nowhere'")
    (folder / "b.sql").unlink()
    code, out, _ = run("check", str(folder))
    assert code == 0 and "home_clicks, long_views" in out


def test_the_repo_config_runs_the_sql_demo_beside_the_yaml_pipelines() -> None:
    code, out, _ = run("check", str(ROOT / "config"))
    assert code == 0, out
    assert "payments-clean, payments-risk, payments-settled, payments_eur, merchant_minutes" in out


def test_explain_prints_yaml_that_check_accepts_and_that_replays_the_same(
    tmp_path: Path,
) -> None:
    source = tmp_path / "payments.jsonl"
    write_lines(source, payments(3000, seed=2, malformed_ratio=0.05))
    code, explained, _ = run("explain", str(DEMO_SQL), "--output", str(tmp_path / "each"))
    assert code == 0
    assert explained.count("\n---\n") == 1 and "pipeline: merchant_minutes" in explained
    (tmp_path / "explained.yaml").write_text(explained)

    assert run("check", str(tmp_path / "explained.yaml"))[0] == 0
    code, out, _ = run("check", str(tmp_path / "each"))
    assert code == 0 and "merchant_minutes, payments_eur" in out

    code, listed, summary = run(
        "replay", str(DEMO_SQL), "--input", str(source), "-o", str(tmp_path / "sql")
    )
    assert code == 0, summary
    assert "payments_eur: 3,000 in" in summary and "merchant_minutes: " in summary
    code, _, summary = run(
        "replay",
        str(tmp_path / "explained.yaml"),
        "--input",
        str(source),
        "-o",
        str(tmp_path / "yaml"),
    )
    assert code == 0, summary
    written = sorted(p.name for p in (tmp_path / "sql").iterdir())
    assert written == ["merchant-minutes.jsonl", "payments-eur.jsonl", "payments-sql-dlq.jsonl"]
    for name in written:
        assert (tmp_path / "sql" / name).read_bytes() == (tmp_path / "yaml" / name).read_bytes()
    assert sorted(listed.split()) == sorted(str(tmp_path / "sql" / n) for n in written)


def test_replay_feeds_the_named_stream_of_several(tmp_path: Path) -> None:
    sql = tmp_path / "two.sql"
    sql.write_text(TWO_SOURCES)
    views = tmp_path / "views.jsonl"
    views.write_text('{"page": "home", "seconds": 30}\n{"page": "faq", "seconds": 3}\n')
    code, _, error = run("replay", str(sql), "--input", str(views))
    assert code == 1
    assert "declares 2 streams (clicks, views)" in error and "--input STREAM=FILE" in error
    code, _, summary = run(
        "replay", str(sql), "--input", f"views={views}", "-o", str(tmp_path / "o")
    )
    assert code == 0, summary
    assert [
        orjson.loads(x) for x in (tmp_path / "o" / "long-views.jsonl").read_bytes().splitlines()
    ] == [{"page": "home", "seconds": 30}]
    assert not (tmp_path / "o" / "home-clicks.jsonl").exists()
    code, _, error = run("replay", str(sql), "--input", f"pages={views}")
    assert code == 1 and "'pages' is not a stream" in error


def test_explain_of_a_broken_file_reports_its_errors(tmp_path: Path) -> None:
    broken = tmp_path / "b.sql"
    broken.write_text("CREATE STREAM s AS SELECT * FROM t;\n")
    code, out, error = run("explain", str(broken))
    assert code == 1 and out == ""
    assert error.startswith(f"{broken}:1:34: statement s: unknown stream 't'")
