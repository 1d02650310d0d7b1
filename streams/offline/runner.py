"""`sluice replay`: pipelines run offline over JSON Lines files, one runner for all.

A single pipeline is a graph of one (streams.offline.graph). Each input file is one
partition of a topic; event time comes from the reading pipeline's timestamp field, else
the time the line is read. Several inputs (a join's two streams) are merged as records
would arrive live: each file in its own order, the next record always the one with the
smallest event time of the files' next records; consecutive records of one input form a
batch. Every topic written becomes `OUTPUT_DIR/<topic>.jsonl`: one record value a line;
dead letters as `{"error": {"step", "type", "message"}, "payload": "<original line>"}`.
At the end of the input every open window closes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path

from models.pipeline_spec import PipelineSpec
from streams.core.errors import SluiceError
from streams.core.records import Event
from streams.core.watchdog import StuckRecord, Watchdog
from streams.offline.graph import Graph
from streams.offline.progress import Progress
from streams.offline.reading import input_size, line_chunks, merge_lines, open_input, time_field
from streams.offline.tuning import batch_tuning, exit_when_stuck
from streams.offline.writing import OutputFiles
from streams.steps.pipeline import DEFAULT_MAX_EVENT_TIME_SKEW_MS, DEFAULT_MAX_MESSAGE_BYTES

DEFAULT_OUTPUT_DIR = "replay-out"


@dataclass(slots=True)
class PipelineSummary:
    """What one pipeline of a replay took in and gave out."""

    pipeline: str
    events_in: int = 0
    outputs: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    dead_letter_topic: str = ""
    dropped: int = 0
    blank_lines: int = 0
    seconds: float = 0.0

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


@dataclass(slots=True)
class ReplaySummary:
    """One summary per pipeline (upstream first), and the files written."""

    pipelines: list[PipelineSummary] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def only(self) -> PipelineSummary:
        """The summary of a graph of one (a single pipeline's replay)."""
        if len(self.pipelines) != 1:
            raise ValueError(f"{len(self.pipelines)} pipelines were replayed, not one")
        return self.pipelines[0]

    def lines(self) -> list[str]:
        return [summary.line() for summary in self.pipelines]


async def replay(
    pipelines: PipelineSpec | Sequence[PipelineSpec],
    inputs: str | Mapping[str, str],
    output_dir: Path,
    *,
    tables: Mapping[str, Path] | None = None,
    batch_size: int = 1000,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS,
    progress: bool = False,
    on_stuck: Callable[[StuckRecord], None] = exit_when_stuck,
) -> ReplaySummary:
    """Replay `inputs` through `pipelines` (one, or several wired by their topics), writing
    every topic to `output_dir`. `inputs`: a path (`-` = stdin) for the one topic the
    pipelines read from outside, or topic → path. A component stuck past its timeout
    calls `on_stuck` from a watchdog thread (by default `exit_when_stuck`)."""
    specs = [pipelines] if isinstance(pipelines, PipelineSpec) else list(pipelines)
    with Watchdog(on_stuck, interval_s=0.25) as watchdog, batch_tuning():
        graph = Graph(
            specs,
            tables=tables,
            max_message_bytes=max_message_bytes,
            max_event_time_skew_ms=max_event_time_skew_ms,
            watchdog=watchdog,
        )
        return await run(graph, inputs, output_dir, batch_size=batch_size, progress=progress)


async def run(
    graph: Graph,
    inputs: str | Mapping[str, str],
    output_dir: Path,
    *,
    batch_size: int = 1000,
    progress: bool = False,
) -> ReplaySummary:
    """Feed `inputs` to `graph`, then flush it: the replay itself (see `replay`)."""
    sources = _inputs(graph, inputs)
    output_dir.mkdir(parents=True, exist_ok=True)
    for topic in graph.output_topics():  # stale files from an earlier run would mislead
        (output_dir / f"{topic}.jsonl").unlink(missing_ok=True)
    began = time.perf_counter()
    blank = 0
    with ExitStack() as stack:
        graph.writer = OutputFiles(output_dir, stack)
        if len(sources) == 1:
            ((topic, source),) = sources.items()
            blank = await _read_one(graph, topic, source, stack, batch_size, progress)
        else:
            await _read_merged(graph, sources, stack, batch_size)
        await graph.flush()
        files = graph.writer.paths
    seconds = time.perf_counter() - began
    summary = ReplaySummary(files=files)
    fed = {index for topic in sources for index in graph.readers.get(topic, ())}
    for index in graph.order:
        node = graph.nodes[index]
        summary.pipelines.append(
            PipelineSummary(
                pipeline=node.spec.pipeline,
                events_in=node.metrics.events_in_total,
                outputs=dict(node.metrics.sent),
                dead_letters=node.metrics.dead_letters_total,
                dead_letter_topic=node.pipeline.dead_letter_topic,
                dropped=node.metrics.dropped_total,
                blank_lines=blank if index in fed else 0,
                seconds=seconds,
            )
        )
    return summary


def _inputs(graph: Graph, inputs: str | Mapping[str, str]) -> dict[str, str]:
    """topic → path; an input for a topic nobody reads, or a join's stream without one
    (and written by no pipeline of the graph), is an error."""
    if isinstance(inputs, str):
        outside = graph.outside_topics
        if len(graph.nodes) == 1:
            outside = [graph.nodes[0].spec.source.topic]
        if len(outside) != 1:
            raise SluiceError(
                f"--input {inputs}: the pipelines read {len(outside)} outside topics "
                f"({', '.join(outside) or 'none'}); name one: --input TOPIC=FILE"
            )
        inputs = {outside[0]: inputs}
    written = {topic for node in graph.nodes for topic in node.spec.output_topics()}
    unread = [topic for topic in inputs if topic not in graph.readers]
    for node in graph.nodes:
        streams = node.pipeline.streams
        missing = [s for s in streams if s not in inputs and s not in written]
        if (missing and len(streams) > 1) or (unread and len(graph.nodes) == 1):
            raise SluiceError(
                f"pipeline {node.spec.pipeline!r} reads {' and '.join(streams)}: give "
                "--input STREAM=FILE for each"
                + (f" (missing: {', '.join(missing)})" if missing else "")
                + (f" (not read: {', '.join(unread)})" if unread else "")
            )
    if unread:
        raise SluiceError(
            f"--input {unread[0]}=…: no pipeline reads topic {unread[0]!r} "
            f"(read: {', '.join(graph.readers)})"
        )
    return dict(inputs)


async def _read_one(
    graph: Graph, topic: str, source: str, stack: ExitStack, batch_size: int, progress: bool
) -> int:
    """Feed one file as `topic`, a batch at a time; returns the blank lines skipped."""
    stream = stack.enter_context(open_input(source))
    bar = stack.enter_context(Progress(input_size(source))) if progress else None
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
                    await graph.feed(topic, batch)
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
                await graph.feed(topic, batch)
                batch = []
                now_ms = int(time.time() * 1000)
    if batch:
        await graph.feed(topic, batch)
    return blank


async def _read_merged(
    graph: Graph, sources: Mapping[str, str], stack: ExitStack, batch_size: int
) -> None:
    """Feed several files merged by event time (see the module docstring)."""
    files = {topic: stack.enter_context(open_input(path)) for topic, path in sources.items()}
    times = {topic: _time_field(graph, topic) for topic in sources}
    now_ms = int(time.time() * 1000)
    batch: list[Event] = []
    batch_topic = ""
    for topic, raw, offset in merge_lines(files, times, now_ms):
        if batch and (topic != batch_topic or len(batch) >= batch_size):
            await graph.feed(batch_topic, batch)
            batch = []
        batch_topic = topic
        batch.append(Event(None, None, now_ms, None, raw, 0, offset))
    if batch:
        await graph.feed(batch_topic, batch)


def _time_field(graph: Graph, topic: str) -> str | None:
    """The event-time field of `topic` as its first reader reads it."""
    readers = graph.readers.get(topic)
    return time_field(graph.nodes[readers[0]].spec, topic) if readers else None
