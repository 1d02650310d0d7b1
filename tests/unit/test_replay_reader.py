"""Replay's reader: lines read a chunk at a time become the same messages, in the same
order and batches, as reading the file line by line, whatever the chunk boundaries."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from models.pipeline_spec import PipelineSpec
from streams.offline import reading, replay

SPEC = PipelineSpec.model_validate(
    yaml.safe_load("pipeline: p\nsource: {topic: in}\nsteps: []\nsink: {topic: out}\n")
)
lines_of = st.one_of(
    st.integers(0, 10**6).map(lambda i: orjson.dumps({"i": i})),
    st.integers(0, 10**6).map(lambda i: orjson.dumps({"i": i}) + b"\r"),
    st.sampled_from([b"", b"  ", b"\r", b"\t\r", b"not json", b'{"i": ']),
)


def _expected(data: bytes) -> tuple[list[bytes], int]:
    """Non-blank lines without their line end, and the count of blank ones."""
    found, blank = [], 0
    for line_read in data.split(b"\n"):
        raw = line_read.rstrip(b"\r\n")
        if raw and not raw.isspace():
            found.append(raw)
        else:
            blank += 1
    return found, blank - (1 if data.endswith(b"\n") or not data else 0)


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(lines_of, max_size=40),
    chunk=st.integers(1, 64),
    batch=st.integers(1, 9),
    final_newline=st.booleans(),
)
def test_chunks_give_the_lines_a_line_by_line_reader_gives(
    lines: list[bytes], chunk: int, batch: int, final_newline: bool
) -> None:
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        patch.setattr(reading, "CHUNK_BYTES", chunk)
        source = Path(folder) / "in.jsonl"
        source.write_bytes(data)
        summary = asyncio.run(replay(SPEC, str(source), Path(folder) / "out", batch_size=batch))
        out = Path(folder) / "out" / "out.jsonl"
        written = out.read_bytes().splitlines() if out.exists() else []
    messages, blank = _expected(data)
    assert summary.only.events_in == len(messages)
    assert summary.only.blank_lines == blank
    valid = [m for m in messages if m.startswith(b'{"i":') and m.endswith(b"}")]
    assert [orjson.loads(w) for w in written] == [orjson.loads(v) for v in valid]
