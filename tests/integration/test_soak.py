"""A short soak (issue 17): the shipped demo pipelines and the windowed benchmark pipeline
on one worker with the shipped settings, fed at a steady modest rate for 90 s — the
`sluice bench soak` harness, shortened. The worker keeps up all along (no stall), reads
everything, accounts for every record, and its memory stops growing after the warm-up."""

from __future__ import annotations

import asyncio

import pytest

from bench.soak import interval_ratios, keep_up_checks, run_phase
from bench.support import open_broker

# `alone`: a keep-up check means nothing while another test file takes the other core. In a
# CI run beside the Faust rebalance tests (two Faust workers and Apache Kafka) the worker
# processed [0.594, 0.616, 0.955, 0.889, 0.665, 0.727] of the rate; `make test` runs it
# by itself after the parallel part.
pytestmark = [pytest.mark.integration, pytest.mark.alone]

# Below half of a modest 2,000/s: the worker's maximum here is several times that. 800, not
# 1,000, since the shipped demo gained payments-settled (payments re-keyed onto a repartition
# topic and each kept in the join's state, changelogged, for within + grace): at 1,000/s one
# 10-s interval processed 0.805 of the rate in a CI run sharing 2 cores with another test
# file, while alone it kept >= 0.9 throughout.
RATE = 800.0
SECONDS = 90.0
INTERVAL = 10.0
WARM_UP = 30.0  # event time runs 20x the clock: dedupe's 10 minutes are 30 s
RSS_GROWTH_BOUND = 0.15  # after the warm-up; the bench's 10-minute soak checks 5%


@pytest.mark.timeout(240)
def test_steady_load_keeps_up_and_accounts_for_every_record() -> None:
    with open_broker("tansu") as broker:
        soak, found = asyncio.run(run_phase(broker, RATE, SECONDS, INTERVAL, drain_timeout=30))
    soak.discard()
    samples, sources = soak.samples, soak.sources
    assert found["worker_exit_code"] == 0, found["worker_log_errors"]
    assert found["produce_failures"] == 0
    assert len(samples) >= SECONDS / INTERVAL - 1
    produced = found["produced"]
    assert produced >= RATE * SECONDS * 0.9, found["achieved_produce_rate"]

    # no stall: every interval after the warm-up processed >= 90% of what was produced, or
    # >= 75% with the next interval catching up (>= 1.8 for the two): a batch straddling
    # an interval's end is not a stall. Measured in a CI run with the Faust rebalance tests
    # on the other core: [1.009, 0.891, 1.015, 0.907, 0.826, 0.993].
    after = [s for s in samples if s.t >= WARM_UP]
    ratios = interval_ratios(after, sources)
    assert ratios and not stalls(ratios), [round(r, 3) for r in ratios]
    checks = keep_up_checks(samples, sources, RATE, 1000, WARM_UP)
    assert checks["source_lag_near_zero"]["ok"], checks

    # lag near zero at the end: what was left when the producer stopped is read at once
    assert found["drain_seconds"] is not None and found["drain_seconds"] < 10, found
    assert samples[-1].source_lag <= RATE * 2, samples[-1]

    # every record accounted for: each pipeline reading payments read each record once,
    # and payments-clean sent each one somewhere (an output, a drop, a dead letter)
    final = found["final"]
    for pipeline in sources:
        assert final["events_in"][pipeline] == produced, (pipeline, final)
    clean = "payments-clean"
    assert (
        final["events_out"][clean] + final["dropped"].get(clean, 0) + final["dead_letters"][clean]
        == produced
    ), final

    # memory: flat after the warm-up, within a bound
    rss = [s.rss_mb for s in after if s.rss_mb is not None]
    assert rss and max(rss) <= rss[0] * (1 + RSS_GROWTH_BOUND), rss


def stalls(ratios: list[float]) -> list[int]:
    """Intervals that processed too little of what was produced (see the test)."""
    found = []
    for i, ratio in enumerate(ratios):
        caught_up = i + 1 < len(ratios) and ratio >= 0.75 and ratio + ratios[i + 1] >= 1.8
        if ratio < 0.9 and not caught_up:
            found.append(i)
    return found


def test_a_slow_interval_caught_up_next_is_no_stall_and_a_real_one_is() -> None:
    assert stalls([1.009, 0.891, 1.015, 0.907, 0.826, 0.993]) == []
    assert stalls([1.0, 0.6, 1.4]) == [1]  # a quarter and more missing: a stall
    assert stalls([1.0, 0.8, 0.95]) == [1]  # not caught up
    assert stalls([1.0, 0.85]) == [1]  # the last interval has nothing after it
