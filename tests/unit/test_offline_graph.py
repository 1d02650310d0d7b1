"""The one offline runner: a single pipeline is a graph of one, inputs name their topics,
and a pipeline never reads its own output back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
import yaml
from click.testing import CliRunner

from models.pipeline import PipelineSpec
from streams.cli import main
from streams.errors import SluiceError
from streams.offline import replay


def _spec(text: str) -> PipelineSpec:
    return PipelineSpec.model_validate(yaml.safe_load(text))


def _lines(path: Path) -> list[object]:
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
