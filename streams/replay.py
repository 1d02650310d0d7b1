"""`sluice replay`: run one pipeline offline over a JSON Lines file.

The input is one partition; event time comes from the pipeline's `source.timestamp`
field, else the time the line is read. Every topic the pipeline emits to becomes
`OUTPUT_DIR/<topic>.jsonl`: one record value a line; dead letters as
`{"error": {"step", "type", "message"}, "payload": "<original line>"}`. At the end of the
input every open window closes.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import gc
import heapq
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter
from pathlib import Path
from typing import IO, BinaryIO

import orjson

from models.envelopes import DeadLetterError, ReplayDeadLetter
from models.pipeline import PipelineSpec
from streams import jsonl
from streams.errors import SluiceError
from streams.event_time import event_time_ms
from streams.metrics import CountingMetrics
from streams.pipeline import DEFAULT_MAX_EVENT_TIME_SKEW_MS, DEFAULT_MAX_MESSAGE_BYTES, Pipeline
from streams.records import BatchResult, DeadLetter, Event, key_of
from streams.state import MemoryStateBackend, StateBackend, lookup_store_name
from streams.watchdog import StuckRecord, Watchdog

_VALUE = attrgetter("value")
STDIN = "-"
DEFAULT_OUTPUT_DIR = "replay-out"
STUCK_EXIT_STATUS = 3


@dataclass(slots=True)
class ReplaySummary:
    pipeline: str
    events_in: int = 0
    outputs: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    dead_letter_topic: str = ""
    dropped: int = 0
    blank_lines: int = 0
    seconds: float = 0.0
    files: list[Path] = field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        return self.events_in / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        outs = ", ".join(f"{topic} {count:,}" for topic, count in sorted(self.outputs.items()))
        return (
            f"{self.pipeline}: {self.events_in:,} in; out: {outs or 'nothing'}; "
            f"dead letters {self.dead_letters:,} ({self.dead_letter_topic}); "
            f"dropped {self.dropped:,}; "
            + (f"skipped {self.blank_lines:,} blank lines; " if self.blank_lines else "")
            + f"{self.events_per_second:,.0f} events/s in {self.seconds:.2f}s"
        )


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


class OutputFiles:
    """One JSON Lines file per topic, opened (truncated) on first write (replay and the
    SQL graph replay)."""

    def __init__(self, directory: Path, stack: ExitStack) -> None:
        self.directory = directory
        self.stack = stack
        self.files: dict[str, IO[bytes]] = {}

    def handle(self, topic: str) -> IO[bytes]:
        handle = self.files.get(topic)
        if handle is None:
            path = self.directory / f"{topic}.jsonl"
            handle = self.files[topic] = self.stack.enter_context(path.open("wb"))
        return handle

    def write(self, result: BatchResult, dead_letter_topic: str) -> None:
        for topic, events in result.outputs.items():
            if events:
                self.handle(topic).write(jsonl.dumps_lines(list(map(_VALUE, events))))
        if result.dead_letters:
            handle = self.handle(dead_letter_topic)
            handle.write(
                b"".join([dead_letter_line(letter) + b"\n" for letter in result.dead_letters])
            )


def dead_letter_line(letter: DeadLetter) -> bytes:
    """The replay form of a dead letter: the original line as text, or base64 (with
    `"payload_encoding": "base64"`) when its bytes are not UTF-8, so nothing is lost.
    The JSON of `models.envelopes.ReplayDeadLetter` (tests hold them equal), written with
    orjson: ~1 µs a letter instead of ~10 through the model."""
    error = {"step": letter.step, "type": letter.error_type, "message": letter.message}
    try:
        line: dict[str, str | dict[str, str]] = {
            "error": error,
            "payload": letter.raw.decode("utf-8"),
        }
    except UnicodeDecodeError:
        line = {
            "error": error,
            "payload": base64.b64encode(letter.raw).decode("ascii"),
            "payload_encoding": "base64",
        }
    try:
        return orjson.dumps(line)
    except orjson.JSONEncodeError:  # a message orjson refuses (a lone surrogate): the model's
        return _model_line(letter)


def _model_line(letter: DeadLetter) -> bytes:
    error = DeadLetterError(step=letter.step, type=letter.error_type, message=letter.message)
    try:
        envelope = ReplayDeadLetter(error=error, payload=letter.raw.decode("utf-8"))
    except UnicodeDecodeError:
        envelope = ReplayDeadLetter(
            error=error,
            payload=base64.b64encode(letter.raw).decode("ascii"),
            payload_encoding="base64",
        )
    return envelope.model_dump_json(exclude_none=True).encode()


def exit_when_stuck(record: StuckRecord) -> None:
    """Replay's answer to a sync component stuck past its timeout: a thread cannot be
    stopped, so say which step and line, and exit (status 3) instead of hanging."""
    sys.stderr.write(
        f"sluice replay: pipeline {record.pipeline!r} step {record.step!r} is stuck on the "
        f"record on line {record.offset + 1}: it has run for {record.running_s:.1f} s, past "
        f"its timeout ({record.timeout_s:g} s). A sync process() cannot be interrupted, so "
        "replay stops here; the output files are incomplete.\n"
    )
    sys.stderr.flush()
    os._exit(STUCK_EXIT_STATUS)


@contextmanager
def batch_tuning() -> Iterator[None]:
    """Process settings for a batch job, restored afterwards.

    The collector as the worker tunes it (start-up objects frozen, fewer and larger
    collections): it took ~0.45 s of 1.7 s on `sluice bench windows` by default. The C
    heap: a 64 MiB glibc top pad while replay runs, since orjson.dumps' buffers otherwise
    trim and regrow the heap every few dozen calls (a four-field dumps: 0.9 µs instead of
    0.09 µs); then the default pad is back and the kept memory returned (malloc_trim).
    glibc's mmap threshold stops adapting once mallopt was called: the one setting that
    cannot be restored (docs/decisions/0004-garbage-collection-and-heap.md)."""
    previous = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    padded = _malloc_top_pad(64 << 20)
    try:
        yield
    finally:
        if padded:  # the default back, and the memory the pad kept given back too
            _malloc_top_pad(_DEFAULT_TOP_PAD)
            _malloc_trim()
        gc.set_threshold(*previous)
        gc.unfreeze()


_M_TOP_PAD = -2  # glibc's mallopt parameter
_DEFAULT_TOP_PAD = 128 << 10  # glibc's default (mallopt(3))


def _malloc_trim() -> None:
    with suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)


def _malloc_top_pad(size: int) -> bool:
    """glibc's M_TOP_PAD; False where the C library has no mallopt (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        return bool(libc.mallopt(_M_TOP_PAD, size))
    except (OSError, AttributeError, TypeError):
        return False


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


async def replay(
    spec: PipelineSpec,
    source: str,
    output_dir: Path,
    *,
    tables: Mapping[str, Path] | None = None,
    batch_size: int = 1000,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS,
    progress: bool = False,
    on_stuck: Callable[[StuckRecord], None] = exit_when_stuck,
) -> ReplaySummary:
    """Replay `source` (a path or `-`) through `spec`, writing outputs to `output_dir`.

    A component stuck past its timeout calls `on_stuck` from a watchdog thread (by default
    `exit_when_stuck`)."""
    state = MemoryStateBackend()
    if tables:
        load_tables(spec, tables, state)
    metrics = CountingMetrics()
    with Watchdog(on_stuck, interval_s=0.25) as watchdog, batch_tuning():
        pipeline = Pipeline(
            spec,
            state=state,
            metrics=metrics,
            max_message_bytes=max_message_bytes,
            max_event_time_skew_ms=max_event_time_skew_ms,
            watchdog=watchdog,
        )
        return await _replay(pipeline, metrics, source, output_dir, batch_size, progress)


async def _replay(
    pipeline: Pipeline,
    metrics: CountingMetrics,
    source: str,
    output_dir: Path,
    batch_size: int,
    progress: bool,
) -> ReplaySummary:
    spec = pipeline.spec
    output_dir.mkdir(parents=True, exist_ok=True)
    for topic in spec.output_topics():  # stale files from an earlier run would mislead
        (output_dir / f"{topic}.jsonl").unlink(missing_ok=True)
    total_bytes = (
        Path(source).stat().st_size if source != STDIN and Path(source).is_file() else None
    )
    began = time.perf_counter()
    with ExitStack() as stack:
        outputs = OutputFiles(output_dir, stack)
        stream = stack.enter_context(open_input(source))
        bar = stack.enter_context(Progress(total_bytes)) if progress else None
        offset = 0
        blank = 0
        batch: list[Event] = []
        # a record's "broker time" in replay: when its batch was read
        now_ms = int(time.time() * 1000)
        for read, size in line_chunks(stream):
            if bar is not None:
                bar.advance(size)
            chunk = read
            if any(map(bytes.endswith, read, repeat(b"\r", len(read)))):
                chunk = [line.rstrip(b"\r") for line in read]
            if all(chunk) and not any(map(bytes.isspace, chunk)):
                # no blank line: the chunk's lines become events a batch's worth at a time
                taken = 0
                while taken < len(chunk):
                    lines = chunk[taken : taken + batch_size - len(batch)]
                    count = len(lines)
                    # Event(value, key, timestamp_ms, headers, raw, partition, offset)
                    batch += map(
                        Event,
                        repeat(None, count),
                        repeat(None, count),
                        repeat(now_ms, count),
                        repeat(None, count),
                        lines,
                        repeat(0, count),
                        range(offset, offset + count),
                    )
                    offset += count
                    taken += count
                    if len(batch) >= batch_size:
                        outputs.write(await pipeline.process(batch), pipeline.dead_letter_topic)
                        batch = []
                        now_ms = int(time.time() * 1000)
                continue
            for raw in chunk:
                if not raw or raw.isspace():
                    offset += 1
                    blank += 1
                    continue
                batch.append(Event(None, None, now_ms, None, raw, 0, offset))
                offset += 1
                if len(batch) >= batch_size:
                    outputs.write(await pipeline.process(batch), pipeline.dead_letter_topic)
                    batch = []
                    now_ms = int(time.time() * 1000)
        if batch:
            outputs.write(await pipeline.process(batch), pipeline.dead_letter_topic)
        outputs.write(await pipeline.flush(final=True), pipeline.dead_letter_topic)
        pipeline.persist()
        files = [output_dir / f"{topic}.jsonl" for topic in outputs.files]
    return ReplaySummary(
        pipeline=spec.pipeline,
        events_in=metrics.events_in_total,
        outputs=dict(metrics.sent),
        dead_letters=metrics.dead_letters_total,
        dead_letter_topic=pipeline.dead_letter_topic,
        dropped=metrics.dropped_total,
        blank_lines=blank,
        seconds=time.perf_counter() - began,
        files=files,
    )


async def replay_streams(
    spec: PipelineSpec,
    inputs: Mapping[str, str],
    output_dir: Path,
    *,
    tables: Mapping[str, Path] | None = None,
    batch_size: int = 1000,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS,
) -> ReplaySummary:
    """Replay a pipeline that reads two streams (a join): `inputs` maps each stream (the
    source topic, the join's `stream`) to its file. The files are merged as records would
    arrive live: each file in its own order, the next record always the one with the
    smaller event time of the files' next records (streams.replay_merge); consecutive
    records of one stream form a batch. Each file is one partition."""
    state = MemoryStateBackend()
    if tables:
        load_tables(spec, tables, state)
    metrics = CountingMetrics()
    with Watchdog(exit_when_stuck, interval_s=0.25) as watchdog, batch_tuning():
        pipeline = Pipeline(
            spec,
            state=state,
            metrics=metrics,
            max_message_bytes=max_message_bytes,
            max_event_time_skew_ms=max_event_time_skew_ms,
            watchdog=watchdog,
        )
        missing = [stream for stream in pipeline.streams if stream not in inputs]
        unknown = [stream for stream in inputs if stream not in pipeline.streams]
        if missing or unknown:
            raise SluiceError(
                f"pipeline {spec.pipeline!r} reads {' and '.join(pipeline.streams)}: give "
                "--input STREAM=FILE for each"
                + (f" (missing: {', '.join(missing)})" if missing else "")
                + (f" (not read: {', '.join(unknown)})" if unknown else "")
            )
        times = {stream: _time_field(spec, stream) for stream in inputs}
        output_dir.mkdir(parents=True, exist_ok=True)
        for topic in spec.output_topics():
            (output_dir / f"{topic}.jsonl").unlink(missing_ok=True)
        began = time.perf_counter()
        with ExitStack() as stack:
            outputs = OutputFiles(output_dir, stack)
            files = {
                stream: stack.enter_context(open_input(path)) for stream, path in inputs.items()
            }
            now_ms = int(time.time() * 1000)
            batch: list[Event] = []
            batch_stream = ""
            for stream, raw, offset in merge_lines(files, times, now_ms):
                if batch and (stream != batch_stream or len(batch) >= batch_size):
                    result = await pipeline.process(batch, batch_stream)
                    outputs.write(result, pipeline.dead_letter_topic)
                    batch = []
                batch_stream = stream
                batch.append(Event(None, None, now_ms, None, raw, 0, offset))
            if batch:
                result = await pipeline.process(batch, batch_stream)
                outputs.write(result, pipeline.dead_letter_topic)
            outputs.write(await pipeline.flush(final=True), pipeline.dead_letter_topic)
            pipeline.persist()
            written = [output_dir / f"{topic}.jsonl" for topic in outputs.files]
    return ReplaySummary(
        pipeline=spec.pipeline,
        events_in=metrics.events_in_total,
        outputs=dict(metrics.sent),
        dead_letters=metrics.dead_letters_total,
        dead_letter_topic=pipeline.dead_letter_topic,
        dropped=metrics.dropped_total,
        seconds=time.perf_counter() - began,
        files=written,
    )


def _time_field(spec: PipelineSpec, stream: str) -> str | None:
    join = spec.join
    if join is not None and stream == join.stream:
        return join.timestamp or spec.source.timestamp
    return spec.source.timestamp


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


class Progress:
    """A rich progress bar over input bytes (or lines, reading stdin), on stderr."""

    def __init__(self, total: int | None, label: str = "replay") -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn(label),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.task = self.progress.add_task(label, total=total)
        self.pending = 0

    def __enter__(self) -> Progress:
        self.progress.start()
        return self

    def advance(self, size: int) -> None:
        self.pending += size
        if self.pending >= 1 << 20:  # redraw per MiB, not per line
            self.progress.advance(self.task, self.pending)
            self.pending = 0

    def __exit__(self, *exc: object) -> None:
        self.progress.advance(self.task, self.pending)
        self.progress.stop()
