"""A Prometheus histogram that takes a batch of observations at once, through the client's
public collector API.

The worker observes every result's end-to-end latency, a batch at a time (thousands a
second). prometheus_client's `Histogram` has no batch method: one `observe` takes two
locked increments per value, and reaching into its `_buckets` and `_sum` (what this
replaced) breaks silently with another client version. Here a child keeps plain counts
per bucket and a sum, and `collect` reports them as a `HistogramMetricFamily`; the
exposition is the same series (`_bucket{le=…}`, `_count`, `_sum`) as the client's own.
One event loop writes and the scrape reads; a scrape between two increments of one batch
is at most one batch behind, as with the client's per-value locks.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

# how the client writes an `le` bound (untyped in the client)
_go_float = cast(Callable[[float], str], floatToGoString)


class HistogramChild:
    """One label set's buckets (not cumulative; `le` is inclusive, as Prometheus')."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def observe_many(self, values: Sequence[float]) -> None:
        counts, bounds = self.counts, self.bounds
        for value in values:
            counts[bisect_left(bounds, value)] += 1
        self.total += sum(values)

    def cumulative(self) -> list[tuple[str, float]]:
        running, found = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            found.append((_go_float(bound), float(running)))
        return found


class BatchHistogram(Collector):
    """A labelled histogram family, registered like the client's own."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = tuple(sorted(float(b) for b in buckets if b != float("inf")))
        self._children: dict[tuple[str, ...], HistogramChild] = {}
        registry.register(self)

    def labels(self, *values: str) -> HistogramChild:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: labels {self.labelnames}, got {values}")
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = HistogramChild(self.bounds)
        return child

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, child in list(self._children.items()):
            family.add_metric(list(key), child.cumulative(), child.total)
        yield family
