"""The one offline runner: a single pipeline is a graph of one, inputs name their topics,
and a pipeline never reads its own output back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from click.testing import CliRunner

from models.pipeline_spec import PipelineSpec
from streams.cli import main
from streams.core.errors import SluiceError
from streams.offline import replay


def _spec(text: str) -> PipelineSpec:
    return PipelineSpec.model_validate(yaml.safe_load(text))


def _lines(path: Path) -> list[Any]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_a_pipeline_writing_its_own_source_topic_reads_it_once(tmp_path: Path) -> None:
    spec = _spec("pipeline: p\nsource: {topic: t}\nsteps: []\nsink: {topic: t}\n")
    (tmp_path / "in.jsonl").write_bytes(b'{"i": 1}\n{"i": 2}\n')
    summary = asyncio.run(replay(spec, str(tmp_path / "in.jsonl"), tmp_path / "out"))
    assert _lines(tmp_path / "out" / "t.jsonl") == [{"i": 1}, {"i": 2}]
    assert summary.only.events_in == 2


def test_an_input_for_a_topic_nobody_reads_is_an_error(tmp_path: Path) -> None:
    specs = [
        _spec("pipeline: a\nsource: {topic: x}\nsteps: []\nsink: {topic: y}\n"),
        _spec("pipeline: b\nsource: {topic: y}\nsteps: []\nsink: {topic: z}\n"),
    ]
    (tmp_path / "in.jsonl").write_bytes(b'{"i": 1}\n')
    with pytest.raises(SluiceError, match="no pipeline reads topic 'nope'"):
        asyncio.run(replay(specs, {"nope": str(tmp_path / "in.jsonl")}, tmp_path / "out"))
    summary = asyncio.run(replay(specs, str(tmp_path / "in.jsonl"), tmp_path / "out"))
    assert [s.pipeline for s in summary.pipelines] == ["a", "b"]  # upstream first
    assert _lines(tmp_path / "out" / "z.jsonl") == [{"i": 1}]


def test_a_single_yaml_pipeline_takes_topic_equals_file(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "pipeline: p\nsource: {topic: t}\nsteps: []\nsink: {topic: o}\n"
    )
    (tmp_path / "in.jsonl").write_bytes(b'{"i": 1}\n')
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        ["replay", str(tmp_path / "p.yaml"), "-i", f"t={tmp_path / 'in.jsonl'}", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert _lines(out / "o.jsonl") == [{"i": 1}]


def test_a_join_downstream_of_another_pipeline_reads_both_inputs(tmp_path: Path) -> None:
    """Two inputs for a graph: `orders` feeds a filter whose output a join reads with
    `payments`. The join's results equal the join replayed alone over the filtered file."""
    base = 1_795_600_000_000
    orders: list[dict[str, Any]] = [
        {"id": f"o{i}", "amount": i % 3, "ts": base + i * 400} for i in range(60)
    ]
    payments = [
        {"id": f"o{i}", "method": "card", "ts": base + i * 400 + 900} for i in range(0, 60, 2)
    ]
    big = _spec(
        "pipeline: big\nsource: {topic: orders, timestamp: ts}\n"
        'steps: [{filter: "amount > 0"}]\nsink: {topic: big}\n'
    )
    join = (
        "pipeline: paid\nsource: {topic: %s, timestamp: ts}\nsteps:\n"
        "  - join: {stream: payments, key: id, within: 5s, type: left,"
        " fields: {id: id, method: other.method}}\nsink: {topic: paid}\n"
    )
    files = {name: tmp_path / f"{name}.jsonl" for name in ("orders", "payments", "big-only")}
    files["orders"].write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in orders))
    files["payments"].write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in payments))
    kept = [r for r in orders if r["amount"] > 0]
    files["big-only"].write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in kept))
    inputs = {"orders": str(files["orders"]), "payments": str(files["payments"])}
    skew = 10**13
    asyncio.run(
        replay([big, _spec(join % "big")], inputs, tmp_path / "graph", max_event_time_skew_ms=skew)
    )
    alone = {"orders": str(files["big-only"]), "payments": str(files["payments"])}
    asyncio.run(
        replay(_spec(join % "orders"), alone, tmp_path / "alone", max_event_time_skew_ms=skew)
    )
    paid = _lines(tmp_path / "graph" / "paid.jsonl")
    assert len(paid) == len(kept) and paid == _lines(tmp_path / "alone" / "paid.jsonl")
    assert sum(r["method"] == "card" for r in paid) == sum(int(r["id"][1:]) % 2 == 0 for r in kept)
