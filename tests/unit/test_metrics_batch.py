"""Observing a batch of latencies at once gives the same histogram as one by one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from streams.runtime.metrics import _LATENCY_BUCKETS, observe_many


def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("le", "")): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


@given(
    st.lists(
        st.one_of(
            st.sampled_from(_LATENCY_BUCKETS),  # exactly on a bound: `le` is inclusive
            st.floats(0, 100, allow_nan=False),
        ),
        max_size=200,
    )
)
def test_observe_many_equals_observing_each(values: list[float]) -> None:
    one, many = CollectorRegistry(), CollectorRegistry()
    each = Histogram("lat", "l", ["p"], buckets=_LATENCY_BUCKETS, registry=one).labels("a")
    bulk = Histogram("lat", "l", ["p"], buckets=_LATENCY_BUCKETS, registry=many).labels("a")
    for value in values:
        each.observe(value)
    observe_many(bulk, values)
    expected, got = samples(one), samples(many)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert abs(got[key] - value) <= 1e-9 * max(1.0, abs(value)), key
