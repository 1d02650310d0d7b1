"""Helpers for the streaming SQL tests: compile a file, replay it as a graph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from hypothesis import settings

from streams.offline import Graph, run
from streams.sql.compiler import SqlProgram, compile_sql

# `pytest --hypothesis-profile=sql-thorough tests/unit/sql` runs the DuckDB comparison on
# many more random queries than CI does
settings.register_profile("sql-thorough", max_examples=1500, deadline=None)


def compiled(text: str, file: str = "test.sql") -> SqlProgram:
    program = compile_sql(text, file)
    assert not program.errors, "\n".join(e.describe() for e in program.errors)
    return program


def read_jsonl(path: Path) -> list[Any]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def replay_sql(
    text: str,
    lines: list[bytes],
    directory: Path,
    *,
    stream: str | None = None,
    batch_size: int = 1000,
) -> tuple[dict[str, list[Any]], Graph]:
    """Replay `lines` into the file's declared stream (`stream` when several); returns
    every topic's records and the graph (for its metrics)."""
    program = compiled(text)
    source = program.relation(stream) if stream else program.sources[0]
    assert source is not None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "input.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    graph = Graph(program.specs())
    summary = await run(graph, {source.topic: str(path)}, directory / "out", batch_size=batch_size)
    return {file.stem: read_jsonl(file) for file in summary.files}, graph
