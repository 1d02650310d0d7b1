"""What a host says of one running pipeline, shared by the worker's pipeline runner and the
Faust host: tombstones as dead letters at the source, the event-time lag, and the
`/api/pipelines` status document (the dashboard reads it from either)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from models.pipeline_spec import PipelineSpec
from streams.core.records import DeadLetter, Headers
from streams.runtime.output import Output
from streams.runtime.prometheus import PrometheusPipelineMetrics
from streams.runtime.sender import dead_letter_headers
from streams.steps.pipeline import SOURCE_STEP

TOMBSTONE = "the message has no value (a tombstone)"


class _Message(Protocol):
    @property
    def value(self) -> bytes | None: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


M = TypeVar("M", bound=_Message)


def text_key(key: bytes | None) -> str | None:
    return None if key is None else key.decode("utf-8", errors="backslashreplace")


def split_tombstones(
    messages: Iterable[M],
    headers_of: Callable[[M], Headers],
    output: Output,
    dead_letter_topic: str,
    source_topic: str,
) -> tuple[list[M], list[DeadLetter]]:
    """A message without a value (a tombstone: "delete this key" on a compacted topic) is
    no event: an `invalid_json` dead letter at the source that keeps the null value, queued
    on `output`. Returns (the messages with a value, the dead letters)."""
    kept: list[M] = []
    letters: list[DeadLetter] = []
    for message in messages:
        if message.value is not None:
            kept.append(message)
            continue
        letter = DeadLetter(
            raw=b"",
            step=SOURCE_STEP,
            error_type="invalid_json",
            message=TOMBSTONE,
            partition=message.partition,
            offset=message.offset,
            key=text_key(message.key),
            headers=headers_of(message),
        )
        letters.append(letter)
        output.add(dead_letter_topic, message.key, None, dead_letter_headers(letter, source_topic))
    return kept, letters


def event_time_lag(watermarks: Mapping[int, int], now_ms: float) -> float | None:
    """Seconds the slowest partition's watermark is behind the wall clock."""
    if not watermarks:
        return None
    return max(0.0, (now_ms - min(watermarks.values())) / 1000)


def pipeline_status(
    spec: PipelineSpec,
    metrics: PrometheusPipelineMetrics,
    latencies: Sequence[float],
    event_time_lag_s: float | None,
    lag: int,
    recent_dead_letters: Iterable[dict[str, Any]],
) -> dict[str, Any]:
    """One pipeline's entry of `/api/pipelines`: counts, latency, lags, recent dead letters."""
    ordered = sorted(latencies)

    def percentile(q: float) -> float | None:
        return round(ordered[int(q * (len(ordered) - 1))] * 1000, 1) if ordered else None

    return {
        "pipeline": spec.pipeline,
        "source": spec.source.topic,
        "outputs": spec.output_topics(),
        "steps": [{"name": name, "kind": step.kind} for name, step in spec.named_steps()],
        "events_in": metrics.events_in_total,
        "events_out": metrics.events_out_total,
        "dead_letters": metrics.dead_letters_total,
        "dropped": metrics.dropped_total,
        "late": metrics.late_total,
        "windows_open": metrics.windows_open_now,
        "alerts_firing": dict(metrics.firing_now),
        # processing latency: the Kafka record's timestamp to its results' send
        "latency_ms": {"p50": percentile(0.5), "p99": percentile(0.99)},
        "event_time_lag_s": event_time_lag_s,
        "lag": lag,
        "recent_dead_letters": list(recent_dead_letters),
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
