"""Pipelines wired by their topics, as a broker would wire them: the one runner of replay.

A single pipeline is a graph of one. Whatever a pipeline writes to a topic feeds, at
once, the pipelines that read that topic (as their source, or as a join's other stream),
so a SQL file's statements, or a YAML stream of pipelines that `sluice explain` printed,
replay as they would run. A record passed downstream keeps its key and its event time
(its Kafka timestamp, as a worker's output would carry the time it was produced), so a
reader without a TIMESTAMP column still sees the time of the record that caused it, and
a replay gives the same answer every time. A pipeline never reads its own output back
(a worker would loop on it); pipelines feeding each other in a longer cycle are an error.
At the end of the input the pipelines are flushed upstream first, so the windows an
upstream flush closes still reach the windows downstream before those close.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from models.pipeline_spec import PipelineSpec
from streams.core.errors import SluiceError
from streams.core.jsonl import dumps
from streams.core.metrics import CountingMetrics
from streams.core.records import BatchResult, Event
from streams.core.state import MemoryStateBackend
from streams.core.watchdog import Watchdog
from streams.offline.reading import load_tables
from streams.offline.writing import OutputFiles
from streams.steps.pipeline import (
    DEFAULT_MAX_EVENT_TIME_SKEW_MS,
    DEFAULT_MAX_MESSAGE_BYTES,
    Pipeline,
)


@dataclass(slots=True)
class Node:
    spec: PipelineSpec
    pipeline: Pipeline
    metrics: CountingMetrics


class Graph:
    """The pipelines of one replay over one in-memory state, and who reads which topic.

    `feed(topic, messages)` delivers a batch to every pipeline reading `topic`; what they
    emit goes to `writer` and on to their readers. `flush()` closes what is open at the end
    of the input, upstream first."""

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
        self.state = MemoryStateBackend()
        files = dict(tables or {})
        declared = {name for spec in specs for name in spec.tables}
        unknown = sorted(set(files) - declared)
        if unknown and len(specs) > 1:  # one pipeline: load_tables names it and its tables
            raise SluiceError(
                f"--table {unknown[0]}=…: no pipeline declares a table {unknown[0]!r} "
                f"(tables: {', '.join(sorted(declared)) or 'none'})"
            )
        self.nodes: list[Node] = []
        for spec in specs:
            own = files if len(specs) == 1 else {n: p for n, p in files.items() if n in spec.tables}
            if own:
                load_tables(spec, own, self.state)
            metrics = CountingMetrics()
            pipeline = Pipeline(
                spec,
                state=self.state,
                metrics=metrics,
                max_message_bytes=max_message_bytes,
                max_event_time_skew_ms=max_event_time_skew_ms,
                watchdog=watchdog,
            )
            self.nodes.append(Node(spec, pipeline, metrics))
        # topic → the pipelines reading it (a pipeline may read two: a join's other stream)
        self.readers: dict[str, list[int]] = {}
        for index, node in enumerate(self.nodes):
            for topic in dict.fromkeys(node.pipeline.streams):
                self.readers.setdefault(topic, []).append(index)
        self.order = self._upstream_first()
        self.offsets: dict[str, int] = {}
        self.writer: OutputFiles | None = None

    @property
    def outside_topics(self) -> list[str]:
        """The topics read and written by none of the pipelines: where inputs go."""
        written = {t for node in self.nodes for t in node.spec.output_topics()}
        return [topic for topic in self.readers if topic not in written]

    def output_topics(self) -> list[str]:
        return [topic for node in self.nodes for topic in node.spec.output_topics()]

    def _downstream(self, index: int) -> list[int]:
        topics = self.nodes[index].spec.output_topics()
        return sorted({r for t in topics for r in self.readers.get(t, []) if r != index})

    def _upstream_first(self) -> list[int]:
        """The pipelines upstream first; a cycle is an error."""
        edges = {index: self._downstream(index) for index in range(len(self.nodes))}
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
        if len(order) != len(self.nodes):
            looped = [self.nodes[i].spec.pipeline for i in edges if i not in order]
            raise SluiceError(f"pipelines {', '.join(looped)} feed each other in a cycle")
        return order

    async def feed(self, topic: str, messages: list[Event], sender: int = -1) -> None:
        """Deliver `messages` of `topic` to each pipeline reading it (but `sender`)."""
        indexes = [i for i in self.readers.get(topic, ()) if i != sender]
        for index in indexes:
            # every reader gets its own copies: steps change events in place
            copies = messages if len(indexes) == 1 else [_copy(m) for m in messages]
            node = self.nodes[index]
            await self.deliver(index, await node.pipeline.process(copies, topic))

    async def deliver(self, index: int, result: BatchResult) -> None:
        """Write what pipeline `index` emitted, and pass it on to the pipelines reading it."""
        pipeline = self.nodes[index].pipeline
        assert self.writer is not None
        self.writer.write(result, pipeline.dead_letter_topic)
        for topic, events in result.outputs.items():
            if events and topic in self.readers:
                await self.feed(topic, [self._message(topic, e) for e in events], index)
        dead = pipeline.dead_letter_topic
        if result.dead_letters and dead in self.readers:
            letters = [
                Event(None, key=letter.key, raw=letter.raw, offset=self._next(dead))
                for letter in result.dead_letters
            ]
            await self.feed(dead, letters, index)

    async def flush(self) -> None:
        """The end of the input: every window closes, upstream first; state persisted."""
        for index in self.order:
            await self.deliver(index, await self.nodes[index].pipeline.flush(final=True))
        for node in self.nodes:
            node.pipeline.persist()

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
