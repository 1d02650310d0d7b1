"""The sluice command line as a user runs it: check, replay, bench, run --demo."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from models.envelopes import ReplayDeadLetter
from streams.cli import main
from streams.offline.demo_data import payments, users_table, write_lines

ROOT = Path(__file__).resolve().parents[2]
SLUICE = Path(sys.executable).parent / "sluice"
DEMO_PIPELINE = ROOT / "config" / "pipelines" / "payments-clean.yaml"


def sluice(
    *args: str, cwd: Path = ROOT, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SLUICE), *args],
        cwd=cwd,
        capture_output=True,
        text=stdin is None,
        input=stdin,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def read_jsonl(path: Path) -> list[object]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_check_repo_config_passes() -> None:
    result = sluice("check", "config")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "payments-clean" in result.stdout


def test_check_reports_every_error_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "sluice.yaml").write_text("web: {port: -1}\n")
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "x.yaml").write_text(
        'pipeline: x\nsource: {topic: a}\nsteps:\n  - filter: "lenght(name) > 3"\n'
        "  - dedup: {key: id}\nsink: {topic: b}\n"
    )
    (tmp_path / "pipelines" / "y.yaml").write_text("pipeline: y\nsource: [\n")
    result = sluice("check", str(tmp_path / "pipelines"))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    x = tmp_path / "pipelines" / "x.yaml"
    assert (
        f"{x}:4: steps[0].filter: unknown function 'lenght' (did you mean 'length'?) "
        "at column 1 in 'lenght(name) > 3'"
    ) in lines
    assert any(line.startswith(f"{x}:5: steps[1]: unknown step kind 'dedup'") for line in lines)
    assert any(line.startswith(f"{tmp_path / 'pipelines' / 'y.yaml'}:") for line in lines)
    whole = sluice("check", str(tmp_path))
    assert whole.returncode == 1
    assert f"{tmp_path / 'sluice.yaml'}:1: web.port:" in whole.stdout


def test_replay_writes_sink_routes_and_dead_letters(tmp_path: Path) -> None:
    source = tmp_path / "payments.jsonl"
    lines = list(payments(5000, seed=3, malformed_ratio=0.05))
    write_lines(source, iter(lines))
    out = tmp_path / "out"
    result = sluice("replay", str(DEMO_PIPELINE), "--input", str(source), "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "payments-clean: 5,000 in" in result.stderr
    clean = read_jsonl(out / "payments-clean.jsonl")
    large = read_jsonl(out / "payments-large.jsonl")
    dead = [ReplayDeadLetter.model_validate(d) for d in read_jsonl(out / "payments-dlq.jsonl")]
    # every dead letter carries an original input line, unchanged, and a reason
    originals = {line.decode() for line in lines}
    assert dead and all(d.payload in originals for d in dead)
    kinds = Counter((d.error.step, d.error.type) for d in dead)
    assert set(kinds) == {("source", "invalid_json"), ("validate", "schema"), ("map", "expression")}
    assert all(d.error.message for d in dead)
    # independent brute force over the input
    expected_clean: list[Any] = []
    expected_large: list[Any] = []
    expected_dead = 0
    rates = {"USD": 0.92, "GBP": 1.17, "EUR": 1.0}
    for line in lines:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            expected_dead += 1
            continue
        if (
            "user_id" not in record
            or not isinstance(record["amount"], float | int)
            or record["currency"] not in ("EUR", "USD", "GBP", "CHF", "JPY")
        ):
            expected_dead += 1
            continue
        if not (record["amount"] > 0 and record["currency"] in rates):
            continue
        if not isinstance(record["card"]["number"], str):
            expected_dead += 1
            continue
        eur = round(record["amount"] * rates[record["currency"]] + 0.0, 2)
        (expected_large if eur >= 500 else expected_clean).append(record["payment_id"])
    assert [r["payment_id"] for r in clean] == expected_clean  # type: ignore[index]
    assert [r["payment_id"] for r in large] == expected_large  # type: ignore[index]
    assert len(dead) == expected_dead
    assert all(r["card_bin"] == "400000" for r in clean)  # type: ignore[index]


def test_replay_from_stdin_and_stale_outputs_are_cleared(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "payments-large.jsonl").write_text('{"stale": true}\n')
    data = b"".join(line + b"\n" for line in payments(300, seed=5, malformed_ratio=0))
    result = sluice("replay", str(DEMO_PIPELINE), "--input", "-", "-o", str(out), stdin=data)
    assert result.returncode == 0, result.stderr
    assert (
        not (out / "payments-large.jsonl").exists()
        or b"stale" not in (out / "payments-large.jsonl").read_bytes()
    )
    assert len(read_jsonl(out / "payments-clean.jsonl")) > 200


def test_replay_errors_are_clear(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(main, ["replay", str(DEMO_PIPELINE), "--input", str(tmp_path / "nope")])
    assert missing.exit_code == 1
    assert "cannot read input" in missing.output
    table = runner.invoke(
        main, ["replay", str(DEMO_PIPELINE), "-i", "-", "--table", "users=x.jsonl"], input=""
    )
    assert table.exit_code == 1
    assert "declares no table 'users'" in table.output
    bad_table = runner.invoke(main, ["replay", str(DEMO_PIPELINE), "-i", "-", "--table", "users"])
    assert bad_table.exit_code == 2
    assert "NAME=FILE" in bad_table.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("pipeline: b\nsource: {topic: a}\nsink: {topic: 'no spaces'}\n")
    result = runner.invoke(main, ["replay", str(broken), "-i", "-"], input="")
    assert result.exit_code == 1
    assert f"{broken}:3: sink.topic" in result.output


def test_replay_in_process_with_tables_and_settings(tmp_path: Path) -> None:
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(
        "pipeline: t\nsource: {topic: payments, key: user_id}\n"
        "tables: {users: {topic: users, key: user_id}}\n"
        'steps:\n  - filter: "amount > 10"\nsink: {topic: out}\n'
    )
    users = tmp_path / "users.jsonl"
    write_lines(users, users_table(20))
    source = tmp_path / "in.jsonl"
    write_lines(source, payments(500, users=20, malformed_ratio=0))
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "sluice.yaml").write_text(
        "processing: {batch_max: 7, max_message_bytes: 100}\n"
    )
    result = CliRunner().invoke(
        main,
        [
            "replay",
            str(pipeline),
            "-i",
            str(source),
            "--table",
            f"users={users}",
            "-o",
            str(tmp_path / "out"),
            "--config",
            str(tmp_path / "cfg"),
            "--progress",
        ],
    )
    assert result.exit_code == 0, result.output
    # every payment line is longer than 100 bytes: all oversize dead letters
    dead = read_jsonl(tmp_path / "out" / "t-dlq.jsonl")
    assert len(dead) == 500
    assert {d["error"]["type"] for d in dead} == {"oversize"}  # type: ignore[index]


def test_bench_replay_records_results(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["bench", "--events", "3000", "--runs", "1", "--results", str(tmp_path), "replay"]
    )
    assert result.exit_code == 0, result.output
    assert "ratio" in result.output
    [saved] = list(tmp_path.glob("replay-*.json"))
    figures = orjson.loads(saved.read_bytes())
    assert figures["events"] == 3000
    assert figures["sluice_out"] == figures["reference_out"] > 0
    assert figures["sluice_dead_letters"] == figures["reference_rejected"] > 0
    assert figures["ratio"] > 0


@pytest.mark.parametrize(
    "command", [["--help"], ["replay", "--help"], ["check", "--help"], ["bench", "--help"]]
)
def test_help_answers_questions(command: list[str]) -> None:
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_check_and_run_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["check", str(ROOT / "config")])
    assert ok.exit_code == 0 and "ok:" in ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipeline: b\nsource: {topic: a}\nsteps: [{filter: 'x >'}]\nsink: {topic: c}\n")
    failed = runner.invoke(main, ["check", str(bad)])
    assert failed.exit_code == 1
    assert f"{bad}:3: steps[0].filter: syntax error" in failed.output
    broken = runner.invoke(main, ["run", "--demo", "--config", str(tmp_path)])
    assert broken.exit_code == 1


def test_bench_windows_agrees_with_duckdb(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["bench", "--events", "4000", "--runs", "1", "--results", str(tmp_path), "windows"]
    )
    assert result.exit_code == 0, result.output
    [saved] = list(tmp_path.glob("windows-*.json"))
    figures = orjson.loads(saved.read_bytes())
    assert figures["windows"] > 100
    assert figures["mismatching_windows"] == 0
