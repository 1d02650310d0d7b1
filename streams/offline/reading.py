"""What replay reads: JSON Lines inputs (a file or stdin) a chunk at a time, several
inputs merged by event time, and lookup tables filled from files."""

from __future__ import annotations

import heapq
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from models.pipeline_spec import PipelineSpec
from streams.core import jsonl
from streams.core.errors import SluiceError
from streams.core.event_time import event_time_ms
from streams.core.records import key_of
from streams.core.state import StateBackend, lookup_store_name

STDIN = "-"
CHUNK_BYTES = 1 << 20


def line_chunks(stream: BinaryIO) -> Iterator[tuple[list[bytes], int]]:
    """The lines of `stream` (without their line breaks), a chunk of about a MiB at a time,
    with the bytes each chunk read. `read1` returns what a pipe already holds, so a line
    on stdin is not kept waiting for a full chunk. Reading a MiB and splitting it in C
    instead of iterating the file by lines: ~0.15 µs less per line (8 KiB reads)."""
    rest = b""
    read = stream.read1 if hasattr(stream, "read1") else stream.read
    while chunk := read(CHUNK_BYTES):
        lines = (rest + chunk if rest else chunk).split(b"\n")
        rest = lines.pop()
        yield lines, len(chunk)
    if rest:
        yield [rest], 0


class open_input:
    """A binary stream over a file or stdin (iterating it gives its lines)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._handle: BinaryIO | None = None

    def __enter__(self) -> BinaryIO:
        if self.source == STDIN:
            return sys.stdin.buffer
        try:
            self._handle = open(self.source, "rb")
        except OSError as exc:
            raise SluiceError(f"cannot read input {self.source!r}: {exc.strerror}") from None
        return self._handle

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()


def input_size(source: str) -> int | None:
    """Bytes to read (for a progress bar); None for stdin or a pipe."""
    return Path(source).stat().st_size if source != STDIN and Path(source).is_file() else None


def merge_lines(
    files: Mapping[str, BinaryIO], time_fields: Mapping[str, str | None], now_ms: int
) -> Iterator[tuple[str, bytes, int]]:
    """(stream, line, line number from 0) of every non-blank line of `files`, each file in
    its own order, interleaved by event time: the next line is the one whose event time is
    the smallest among the files' next lines (ties: the order of `files`). A line whose
    time cannot be read (bad JSON, no time field) keeps its file's previous time, so the
    pipeline sees it where it stands and dead-letters it there."""

    def lines(stream: str, handle: BinaryIO) -> Iterator[tuple[int, int, str, bytes, int]]:
        field = time_fields.get(stream)
        rank = list(files).index(stream)
        last = 0
        offset = 0
        for chunk, _ in line_chunks(handle):
            for line in chunk:
                raw = line.rstrip(b"\r")
                if raw and not raw.isspace():
                    last = _line_time(raw, field, last, now_ms)
                    yield last, rank, stream, raw, offset
                offset += 1

    for _, _, stream, raw, offset in heapq.merge(
        *(lines(stream, handle) for stream, handle in files.items()),
        key=lambda item: (item[0], item[1]),
    ):
        yield stream, raw, offset


def _line_time(raw: bytes, field: str | None, previous: int, now_ms: int) -> int:
    if field is None:
        return now_ms
    try:
        value = jsonl.loads(raw)
        return event_time_ms(value[field], field) if isinstance(value, dict) else previous
    except (ValueError, KeyError, SluiceError):
        return previous


def time_field(spec: PipelineSpec, stream: str) -> str | None:
    """The event-time field of `stream` as `spec` reads it (a join's own, or the source's)."""
    join = spec.join
    if join is not None and stream == join.stream:
        return join.timestamp or spec.source.timestamp
    return spec.source.timestamp


def load_tables(
    spec: PipelineSpec, files: Mapping[str, Path], state: StateBackend
) -> dict[str, int]:
    """Fill the pipeline's lookup tables from JSON Lines files; returns rows per table."""
    loaded: dict[str, int] = {}
    for name, path in files.items():
        table = spec.tables.get(name)
        if table is None:
            known = ", ".join(spec.tables) or "none"
            raise SluiceError(
                f"--table {name}=…: pipeline {spec.pipeline!r} declares no table {name!r} "
                f"(its tables: {known})"
            )
        store = state.lookup(lookup_store_name(spec.pipeline, name))
        rows = 0
        with open_input(str(path)) as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    row = jsonl.loads(line)
                except ValueError as exc:
                    raise SluiceError(
                        f"{path}:{number}: invalid JSON in table {name!r}: {exc}"
                    ) from None
                key = key_of(row, table.key) if isinstance(row, dict) else None
                if key is None:
                    raise SluiceError(
                        f"{path}:{number}: table {name!r}: row has no key field(s) "
                        f"{', '.join(table.key)}"
                    )
                store.set(key, row)
                rows += 1
        loaded[name] = rows
    return loaded
