"""Replay several pipelines as one graph: what a SQL file (or a YAML stream of pipelines
that `sluice explain` printed) declares.

The input file feeds the pipelines that read its topic; whatever a pipeline writes to a
topic feeds, at once, the pipelines that read that topic, as a broker would deliver it.
Every topic written lands in `DIR/<topic>.jsonl`. A record passed downstream keeps its
key and its event time (its Kafka timestamp, as a worker's output would carry the time it
was produced), so a reader without a TIMESTAMP column still sees the time of the record
that caused it, and a replay gives the same answer every time. At the end of the input
the pipelines are flushed in graph order, so the windows an upstream flush closes still
reach the windows downstream before those close.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from models.pipeline import PipelineSpec
from streams.errors import SluiceError
from streams.jsonl import dumps
from streams.metrics import CountingMetrics
from streams.pipeline import DEFAULT_MAX_EVENT_TIME_SKEW_MS, DEFAULT_MAX_MESSAGE_BYTES, Pipeline
from streams.records import BatchResult, Event
from streams.replay import (
    STDIN,
    OutputFiles,
    Progress,
    ReplaySummary,
    exit_when_stuck,
    load_tables,
    open_input,
)
from streams.sql.compiler import SqlProgram
from streams.state import MemoryStateBackend
from streams.watchdog import Watchdog


@dataclass(slots=True)
class GraphSummary:
    """One summary per pipeline, and the files written."""

    pipelines: list[ReplaySummary] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [summary.line() for summary in self.pipelines]


@dataclass(slots=True)
class _Node:
    spec: PipelineSpec
    pipeline: Pipeline
    metrics: CountingMetrics
    readers: list[int] = field(default_factory=list)  # nodes reading what this one writes


def sql_input(program: SqlProgram, value: str) -> tuple[str, str]:
    """`--input [STREAM=]FILE` of a SQL file: the topic of the declared stream it feeds,
    and the file. The stream may be left out when the file declares only one."""
    sources = program.sources
    names = ", ".join(s.name.text for s in sources) or "none"
    stream, sep, path = value.partition("=")
    if sep and stream and path:
        relation = program.relation(stream)
        if relation is not None and relation.kind == "lookup":
            raise SluiceError(
                f"--input {value}: '{stream}' is a lookup table; fill it with --table {stream}=FILE"
            )
        if relation is not None:
            return relation.topic, path
        if not Path(value).exists():
            raise SluiceError(
                f"--input {value}: '{stream}' is not a stream of {program.file} (declared: {names})"
            )
    if len(sources) != 1:
        raise SluiceError(
            f"--input {value}: {program.file} declares {len(sources)} streams ({names}); "
            f"name the one the input feeds: --input STREAM=FILE"
        )
    return sources[0].topic, value


def topic_input(specs: Sequence[PipelineSpec], value: str) -> tuple[str, str]:
    """`--input [TOPIC=]FILE` of several YAML pipelines: the topic the file stands for
    (left out when only one topic read is written by none of them)."""
    written = {topic for spec in specs for topic in spec.output_topics()}
    roots = list(dict.fromkeys(s.source.topic for s in specs if s.source.topic not in written))
    topic, sep, path = value.partition("=")
    if sep and topic and path and any(s.source.topic == topic for s in specs):
        return topic, path
    if len(roots) != 1:
        raise SluiceError(
            f"--input {value}: the pipelines read {len(roots)} outside topics "
            f"({', '.join(roots) or 'none'}); name one: --input TOPIC=FILE"
        )
    return roots[0], value


def _order(specs: Sequence[PipelineSpec]) -> tuple[list[int], dict[str, list[int]]]:
    """The pipelines upstream first, and who reads each topic; a cycle is an error."""
    readers: dict[str, list[int]] = {}
    for index, spec in enumerate(specs):
        readers.setdefault(spec.source.topic, []).append(index)
    edges = {
        index: sorted({r for t in spec.output_topics() for r in readers.get(t, [])})
        for index, spec in enumerate(specs)
    }
    incoming = dict.fromkeys(edges, 0)
    for targets in edges.values():
        for target in targets:
            incoming[target] += 1
    ready = [index for index, count in incoming.items() if count == 0]
    order: list[int] = []
    while ready:
        index = ready.pop(0)
        order.append(index)
        for target in edges[index]:
            incoming[target] -= 1
            if incoming[target] == 0:
                ready.append(target)
    if len(order) != len(specs):
        looped = [specs[i].pipeline for i in edges if i not in order]
        raise SluiceError(f"pipelines {', '.join(looped)} feed each other in a cycle")
    return order, readers


class GraphReplay:
    """Pipelines wired by their topics, fed from one input file."""

    def __init__(
        self,
        specs: Sequence[PipelineSpec],
        *,
        tables: Mapping[str, Path] | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS,
        watchdog: Watchdog | None = None,
    ) -> None:
        if not specs:
            raise SluiceError("nothing to replay: no pipelines")
        self.order, readers = _order(specs)
        self.readers = readers
        self.state = MemoryStateBackend()
        declared = {name for spec in specs for name in spec.tables}
        unknown = sorted(set(tables or {}) - declared)
        if unknown:
            raise SluiceError(
                f"--table {unknown[0]}=…: no pipeline declares a table {unknown[0]!r} "
                f"(tables: {', '.join(sorted(declared)) or 'none'})"
            )
        self.nodes: list[_Node] = []
        for spec in specs:
            metrics = CountingMetrics()
            own = {n: p for n, p in (tables or {}).items() if n in spec.tables}
            if own:
                load_tables(spec, own, self.state)
            pipeline = Pipeline(
                spec,
                state=self.state,
                metrics=metrics,
                max_message_bytes=max_message_bytes,
                max_event_time_skew_ms=max_event_time_skew_ms,
                watchdog=watchdog,
            )
            self.nodes.append(_Node(spec, pipeline, metrics))
        self.offsets: dict[str, int] = {}
        self.writer: OutputFiles | None = None

    def roots(self, topic: str) -> list[int]:
        return self.readers.get(topic, [])

    async def feed(self, indexes: list[int], messages: list[Event]) -> None:
        for index in indexes:
            # every reader gets its own copies: steps change events in place
            copies = messages if len(indexes) == 1 else [_copy(m) for m in messages]
            node = self.nodes[index]
            await self.deliver(index, await node.pipeline.process(copies))

    async def deliver(self, index: int, result: BatchResult) -> None:
        node = self.nodes[index]
        assert self.writer is not None
        self.writer.write(result, node.pipeline.dead_letter_topic)
        for topic, events in result.outputs.items():
            readers = self.readers.get(topic)
            if readers and events:
                await self.feed(readers, [self._message(topic, e) for e in events])
        dead = node.pipeline.dead_letter_topic
        readers = self.readers.get(dead)
        if readers and result.dead_letters:
            messages = []
            for letter in result.dead_letters:
                messages.append(
                    Event(None, key=letter.key, raw=letter.raw, offset=self._next(dead))
                )
            await self.feed(readers, messages)

    def _next(self, topic: str) -> int:
        offset = self.offsets.get(topic, 0)
        self.offsets[topic] = offset + 1
        return offset

    def _message(self, topic: str, event: Event) -> Event:
        return Event(
            None,
            key=event.key,
            timestamp_ms=event.timestamp_ms,
            headers=list(event.headers),
            raw=dumps(event.value),
            offset=self._next(topic),
        )

    async def run(
        self,
        input_topic: str,
        source: str,
        output_dir: Path,
        *,
        batch_size: int = 1000,
        progress: bool = False,
    ) -> GraphSummary:
        output_dir.mkdir(parents=True, exist_ok=True)
        for node in self.nodes:  # stale files from an earlier run would mislead
            for topic in node.spec.output_topics():
                (output_dir / f"{topic}.jsonl").unlink(missing_ok=True)
        roots = self.roots(input_topic)
        total = Path(source).stat().st_size if source != STDIN and Path(source).is_file() else None
        began = time.perf_counter()
        with ExitStack() as stack:
            self.writer = OutputFiles(output_dir, stack)
            lines = stack.enter_context(open_input(source))
            bar = stack.enter_context(Progress(total)) if progress else None
            batch: list[Event] = []
            now_ms = int(time.time() * 1000)  # a line's "broker time": when its batch was read
            for offset, line in enumerate(lines):
                raw = line.rstrip(b"\r\n")
                if bar is not None:
                    bar.advance(len(line))
                if raw and not raw.isspace():
                    batch.append(Event(None, raw=raw, timestamp_ms=now_ms, offset=offset))
                if len(batch) >= batch_size:
                    await self.feed(roots, batch)
                    batch = []
                    now_ms = int(time.time() * 1000)
            if batch:
                await self.feed(roots, batch)
            for index in self.order:
                await self.deliver(index, await self.nodes[index].pipeline.flush(final=True))
            for node in self.nodes:
                node.pipeline.persist()
            files = [output_dir / f"{topic}.jsonl" for topic in self.writer.files]
        seconds = time.perf_counter() - began
        summary = GraphSummary(files=files)
        for index in self.order:
            node = self.nodes[index]
            summary.pipelines.append(
                ReplaySummary(
                    pipeline=node.spec.pipeline,
                    events_in=node.metrics.events_in_total,
                    outputs=dict(node.metrics.sent),
                    dead_letters=node.metrics.dead_letters_total,
                    dead_letter_topic=node.pipeline.dead_letter_topic,
                    dropped=node.metrics.dropped_total,
                    seconds=seconds,
                )
            )
        return summary


def _copy(event: Event) -> Event:
    return Event(
        None,
        key=event.key,
        timestamp_ms=event.timestamp_ms,
        headers=list(event.headers),
        raw=event.raw,
        partition=event.partition,
        offset=event.offset,
    )


async def replay_graph(
    specs: Sequence[PipelineSpec],
    input_topic: str,
    source: str,
    output_dir: Path,
    *,
    tables: Mapping[str, Path] | None = None,
    batch_size: int = 1000,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_event_time_skew_ms: int = DEFAULT_MAX_EVENT_TIME_SKEW_MS,
    progress: bool = False,
) -> GraphSummary:
    """Replay `source` (a path or `-`) as the topic `input_topic` through `specs`; a
    component stuck past its timeout stops it as in `sluice replay` (exit status 3)."""
    with Watchdog(exit_when_stuck, interval_s=0.25) as watchdog:
        graph = GraphReplay(
            specs,
            tables=tables,
            max_message_bytes=max_message_bytes,
            max_event_time_skew_ms=max_event_time_skew_ms,
            watchdog=watchdog,
        )
        return await graph.run(
            input_topic, source, output_dir, batch_size=batch_size, progress=progress
        )
