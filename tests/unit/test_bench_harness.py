"""The Kafka benchmarks' arithmetic: Prometheus histograms read back, quantiles, the soak's
checks. (The harnesses themselves run in tests/integration/test_soak.py and
test_steady_state.py.)"""

from __future__ import annotations

import math
from typing import Any

import pytest

from bench.soak import (
    Sample,
    interval_ratios,
    keep_up_checks,
    linear_fit_r2,
    minute_line,
    overload_checks,
)
from bench.support import Histogram, Metrics, exact_quantiles_ms

SCRAPE = """\
# TYPE sluice_events_in_total counter
sluice_events_in_total{pipeline="a"} 10.0
sluice_events_in_total{pipeline="b"} 5.0
# TYPE sluice_end_to_end_latency_seconds histogram
sluice_end_to_end_latency_seconds_bucket{le="0.01",pipeline="a"} 50.0
sluice_end_to_end_latency_seconds_bucket{le="0.1",pipeline="a"} 90.0
sluice_end_to_end_latency_seconds_bucket{le="+Inf",pipeline="a"} 100.0
sluice_end_to_end_latency_seconds_count{pipeline="a"} 100.0
sluice_end_to_end_latency_seconds_sum{pipeline="a"} 3.0
sluice_end_to_end_latency_seconds_bucket{le="0.01",pipeline="b"} 0.0
sluice_end_to_end_latency_seconds_bucket{le="0.1",pipeline="b"} 100.0
sluice_end_to_end_latency_seconds_bucket{le="+Inf",pipeline="b"} 100.0
sluice_end_to_end_latency_seconds_count{pipeline="b"} 100.0
sluice_end_to_end_latency_seconds_sum{pipeline="b"} 5.0
"""


def test_metrics_are_summed_over_series_and_read_by_label() -> None:
    metrics = Metrics.parse(SCRAPE)
    assert metrics.total("sluice_events_in_total") == 15
    assert metrics.total("sluice_events_in_total", pipeline="b") == 5
    assert metrics.by_label("sluice_events_in_total", "pipeline") == {"a": 10, "b": 5}
    both = metrics.histogram("sluice_end_to_end_latency_seconds")
    assert both.buckets == [(0.01, 50), (0.1, 190), (math.inf, 200)]
    assert both.count == 200 and both.sum == 8


def test_histogram_quantiles_interpolate_inside_buckets_as_promql() -> None:
    histogram = Metrics.parse(SCRAPE).histogram("sluice_end_to_end_latency_seconds", pipeline="a")
    assert histogram.quantile(0.25) == pytest.approx(0.005)  # half of the first bucket
    assert histogram.quantile(0.7) == pytest.approx(0.01 + 0.09 * 20 / 40)
    assert histogram.quantile(0.95) == 0.1  # in +Inf: the highest finite bound
    assert Histogram([]).quantile(0.5) is None
    later = Histogram([(0.01, 60), (0.1, 100), (math.inf, 110)], 4.0)
    change = later - histogram
    assert change.buckets == [(0.01, 10), (0.1, 10), (math.inf, 10)] and change.count == 10
    assert change.quantiles_ms((0.5,)) == {"p50": 5.0, "count": 10}


def test_exact_quantiles_are_nearest_rank_in_milliseconds() -> None:
    values = [i / 1000 for i in range(1, 1001)]  # 1 ms … 1000 ms
    found = exact_quantiles_ms(values)
    assert found == {"p50": 500.0, "p90": 900.0, "p99": 990.0, "p999": 999.0, "max": 1000.0}
    assert exact_quantiles_ms([])["p50"] is None


def _sample(t: float, produced: int, processed: int, lag: int, rss: float) -> Sample:
    return Sample(
        t=t,
        produced=produced,
        events_in={"a": processed, "b": processed + 5},
        source_lag=lag,
        total_lag=lag,
        rss_mb=rss,
        worker_cpu_percent=None,
        worker_run_queue_percent=None,
        broker_cpu_percent=None,
        latency_ms={},
        load_average=[0.0, 0.0, 0.0],
    )


def test_a_worker_that_keeps_up_passes_and_one_that_stalls_fails() -> None:
    steady = [_sample(10 * i, 1000 * i, 1000 * i - 50, 50, 100 + i * 0.1) for i in range(1, 13)]
    checks = keep_up_checks(steady, ["a", "b"], rate=100, batch_max=1000, warm_up=30)
    assert all(check["ok"] for check in checks.values()), checks
    assert min(interval_ratios(steady, ["a", "b"])) == pytest.approx(1.0)

    stalled = [_sample(10 * i, 1000 * i, min(1000 * i, 5000), 0, 100) for i in range(1, 13)]
    checks = keep_up_checks(stalled, ["a"], rate=100, batch_max=1000, warm_up=30)
    assert not checks["processing_at_least_90_percent_of_produced"]["ok"]

    growing = [_sample(10 * i, 1000 * i, 1000 * i, 0, 100 * 1.01**i) for i in range(1, 13)]
    checks = keep_up_checks(growing, ["a"], rate=100, batch_max=1000, warm_up=30)
    assert not checks["rss_flat_within_5_percent"]["ok"]
    assert keep_up_checks(steady[:2], ["a"], 100, 1000, 30)["samples_after_warm_up"]["ok"] is False


def test_overload_passes_while_the_rate_holds_and_fails_on_a_collapse() -> None:
    holding = [_sample(10 * i, 1200 * i, 1000 * i, 200 * i, 100) for i in range(1, 13)]
    checks = overload_checks(holding, ["a"], max_rate=100, warm_up=0)
    assert all(check["ok"] for check in checks.values()), checks
    assert checks["lag_grows_linearly"]["slope_per_second"] == 20

    collapsing = [
        _sample(10 * i, 1200 * i, 1000 * min(i, 6), 1200 * i - 1000 * min(i, 6), 100)
        for i in range(1, 13)
    ]
    checks = overload_checks(collapsing, ["a"], max_rate=100, warm_up=0)
    assert not checks["no_collapse_last_third_at_least_80_percent_of_first"]["ok"]


def test_linear_fit() -> None:
    slope, r2 = linear_fit_r2([0, 1, 2, 3], [1, 3, 5, 7])
    assert slope == pytest.approx(2) and r2 == pytest.approx(1)
    assert linear_fit_r2([0, 1], [0, 1]) == (0.0, 0.0)


def test_peers_ratios_include_the_cost_of_exactly_once() -> None:
    from bench.peers import EXACTLY_ONCE, _ratios

    jobs: dict[str, dict[str, Any]] = {
        "filter": {
            "sluice": {"median_events_per_second": 80_000},
            "quix": {"median_events_per_second": 40_000},
            EXACTLY_ONCE: {"median_events_per_second": 60_000},
        },
        "count": {"sluice": {"failed": "boom"}, "quix": {"median_events_per_second": 1}},
    }
    assert _ratios(jobs) == {
        "filter: sluice/quix": 2.0,
        "filter: exactly_once/at_least_once": 0.75,
    }


def test_a_broker_whose_run_fails_is_recorded_and_the_other_still_runs() -> None:
    from bench.support import BenchError, on_each_broker

    def measure(kind: str) -> dict[str, str]:
        if kind == "tansu":
            raise BenchError("the worker exited 70")
        return {"ran": kind}

    assert on_each_broker("both", measure) == {
        "tansu": {"failed": "the worker exited 70"},
        "apache-kafka": {"ran": "apache-kafka"},
    }


def test_a_long_phase_reports_each_minute_in_a_line() -> None:
    samples = [_sample(10 * i, 1000 * i, 900 * i, 100 * i, 150.0) for i in range(1, 13)]
    line = minute_line(samples, ["a", "b"], 10.0)
    # the last minute: 60 s, 6,000 produced and 5,400 read by the slower pipeline
    assert line == (
        " 2.0 min: produced 100/s, processed 90/s, source lag 1,200, RSS 150 MB, p99 ? ms"
    )
    first = minute_line(samples[:6], ["a"], 10.0)
    assert first.startswith(" 1.0 min: produced 100/s, processed 90/s")
