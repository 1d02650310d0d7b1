"""A batch histogram exposes what the client's own Histogram exposes for the same values,
observed one by one or a batch at a time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from streams.runtime.histograms import BatchHistogram
from streams.runtime.prometheus import _LATENCY_BUCKETS


def samples(registry: CollectorRegistry) -> dict[tuple[str, str, str], float]:
    return {
        (s.name, s.labels.get("p", ""), s.labels.get("le", "")): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


values_strategy = st.lists(
    st.one_of(
        st.sampled_from(_LATENCY_BUCKETS),  # exactly on a bound: `le` is inclusive
        st.floats(0, 100, allow_nan=False),
    ),
    max_size=200,
)


@given(values_strategy, values_strategy, st.integers(0, 200))
def test_batches_equal_the_clients_histogram(
    first: list[float], second: list[float], split: int
) -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("lat", "l", ["p"], buckets=_LATENCY_BUCKETS, registry=theirs)
    batch = BatchHistogram("lat", "l", ["p"], buckets=_LATENCY_BUCKETS, registry=ours)
    for label, values in (("a", first), ("b", second)):
        mine = reference.labels(label)  # a child exports zeros before its first value
        for value in values:
            mine.observe(value)
        child = batch.labels(label)
        child.observe_many(values[:split])
        for value in values[split:]:
            child.observe(value)
    expected, got = samples(theirs), samples(ours)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert abs(got[key] - value) <= 1e-9 * max(1.0, abs(value)), key


def test_the_exposition_has_the_clients_series() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    Histogram("lat", "l", ["p"], buckets=(0.5, 1.0), registry=theirs).labels("x").observe(0.7)
    BatchHistogram("lat", "l", ["p"], buckets=(0.5, 1.0), registry=ours).labels("x").observe(0.7)
    wanted = [
        line for line in generate_latest(theirs).decode().splitlines() if "_created" not in line
    ]
    assert generate_latest(ours).decode().splitlines() == wanted
