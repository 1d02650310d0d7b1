"""`sluice replay` of a pipeline that reads two streams: one --input per stream, merged in
event-time order; clear errors for inputs that do not fit."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner

from streams.cli import main
from streams.offline import merge_lines

PIPELINE = """\
pipeline: paid
source: {topic: orders, timestamp: ts}
steps:
  - join: {stream: payments, key: id, within: 5s, type: left, late: dlq,
           fields: {id: id, method: other.method}}
sink: {topic: paid}
"""
BASE = 1_795_600_000_000


def _write(path: Path, rows: list[object]) -> Path:
    path.write_bytes(
        b"".join((r if isinstance(r, bytes) else orjson.dumps(r)) + b"\n" for r in rows)
    )
    return path


def test_two_inputs_are_joined_and_bad_lines_become_dead_letters(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(PIPELINE)
    orders = _write(
        tmp_path / "o.jsonl",
        [{"id": "a", "ts": BASE}, {"id": "b", "ts": BASE + 1000}, {"id": "c", "ts": BASE + 60_000}],
    )
    payments = _write(
        tmp_path / "pay.jsonl",
        [{"id": "a", "method": "card", "ts": BASE + 2000}, b"{not json", {"id": "z", "ts": BASE}],
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        [
            "replay",
            str(tmp_path / "p.yaml"),
            "--input",
            str(orders),
            "--input",
            f"payments={payments}",
            "--output",
            str(out),
            "--max-event-time-skew",
            "1000d",
        ],
    )
    assert result.exit_code == 0, result.output
    joined = [orjson.loads(x) for x in (out / "paid.jsonl").read_bytes().splitlines()]
    assert sorted((r["id"], r["method"]) for r in joined) == [
        ("a", "card"),
        ("b", None),
        ("c", None),
    ]
    letters = [orjson.loads(x) for x in (out / "paid-dlq.jsonl").read_bytes().splitlines()]
    # the payment at BASE arrives after the watermark passed BASE + 2 s (grace 0): late
    assert sorted(d["error"]["type"] for d in letters) == ["invalid_json", "late"]


def test_a_missing_stream_and_extra_inputs_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(PIPELINE)
    orders = _write(tmp_path / "o.jsonl", [{"id": "a", "ts": BASE}])
    result = CliRunner().invoke(
        main, ["replay", str(tmp_path / "p.yaml"), "--input", f"orders={orders}"]
    )
    assert result.exit_code == 1
    assert "reads orders and payments" in result.output and "missing: payments" in result.output
    (tmp_path / "q.yaml").write_text(
        "pipeline: q\nsource: {topic: orders}\nsteps: []\nsink: {topic: out}\n"
    )
    result = CliRunner().invoke(
        main, ["replay", str(tmp_path / "q.yaml"), "--input", str(orders), "--input", str(orders)]
    )
    assert result.exit_code == 1
    assert "two --input for stream 'orders'" in result.output


def test_lines_merge_by_event_time_keeping_each_file_in_order(tmp_path: Path) -> None:
    a = _write(tmp_path / "a", [{"t": 1}, {"t": 5}, {"t": 3}, b"oops"])
    b = _write(tmp_path / "b", [{"t": 2}, {"t": 4}])
    with a.open("rb") as fa, b.open("rb") as fb:
        merged = list(merge_lines({"a": fa, "b": fb}, {"a": "t", "b": "t"}, 0))
    assert [(s, o) for s, _, o in merged] == [
        ("a", 0),
        ("b", 0),
        ("b", 1),
        ("a", 1),
        ("a", 2),
        ("a", 3),
    ]


def test_check_names_the_line_of_a_join_without_within(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    (folder / "bad.yaml").write_text(
        "pipeline: bad\nsource: {topic: orders, timestamp: ts}\nsteps:\n"
        '  - filter: "amount > 0"\n'
        "  - join: {stream: payments, key: order_id, type: left}\n"
        "sink: {topic: out}\n"
    )
    result = CliRunner().invoke(main, ["check", str(folder)])
    assert result.exit_code == 1
    assert f"{folder / 'bad.yaml'}:5: steps[1].join: a join needs 'within'" in result.output
