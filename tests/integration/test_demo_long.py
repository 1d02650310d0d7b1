"""`make run` left running keeps running (issue 22, case 9).

`sluice run --demo` stopped after ~26 minutes on the embedded broker: tansu lists every
record batch of a partition on each fetch, stops listing at the fetch's max wait and then
answers with no records; the worker fetched with a 10 ms wait, and the demo sent its
payments in 0.1 s steps spread over the 4 partitions of `payments`: ~10 batches a second
in each, and the worker wrote as many into each topic it writes and reads back. Now the
demo sends one batch a second, to one partition at a time (streams/runtime/
demo_traffic.py), and the worker waits up to 100 ms (engine_clients.FETCH_MAX_WAIT_MS).

The first test checks the demo's batches at its own pace (before: ~38 a second on
`payments`, ~10 a partition on the others). The second runs the demo 25 times faster
(`--demo-step 0.04`): 80 s make the record batches of 33 minutes of `make run` (2,000
steps, each one batch on `payments`; 26 minutes were 1,560), with the broker fetching 25
times as often; the records per second stay `make run`'s 200, so a batch carries 8 instead
of 200 — the broker's cost is per batch, and the worker keeps up on a shared CI machine.
A real hour, memory included: bench/results/demo-hour-20261206*.log.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from bench.demo_run import DEMO_RATE, Sample, batches_per_partition, demo_run, samples

pytestmark = pytest.mark.integration

PAYMENTS_PIPELINES = ("payments-clean", "payments-risk", "payments_eur")
# topics the worker writes and reads back: the SQL demo's derived stream, the repartitions
WRITTEN_BY_THE_WORKER = [
    "payments-eur",
    "sluice-payments-risk-repartition",
    "sluice-merchant_minutes-repartition",
]
# per partition and demo step the worker writes a batch to each partition of these (it
# reads a step at once), plus windows it closes by the clock: 1.14 measured at 1x
BATCHES_PER_STEP = 1.5


def describe(history: list[Sample]) -> str:
    return "\n".join(
        f"t={s.t} ready={s.ready} failing={s.failing} produced={s.produced} in={s.events_in}"
        for s in history[-8:]
    )


def batch_counts(port: int) -> dict[str, list[int]]:
    topics = ["payments", "settlements", *WRITTEN_BY_THE_WORKER]
    return asyncio.run(batches_per_partition(f"127.0.0.1:{port}", topics))


def steps_so_far(began: float, step: float) -> float:
    """The demo's steps until now, counting: it goes on while its batches are counted, and
    may have begun up to a second before the sampler saw /ready."""
    return (time.monotonic() - began + 1.0) / step


def assert_batches_per_step(batches: dict[str, list[int]], steps: float) -> None:
    # what each fetch of these partitions lists on the embedded broker: one a step, in all,
    # on each of the demo's two streams
    assert sum(batches["payments"]) <= steps + 2, (steps, batches)
    assert sum(batches["settlements"]) <= steps + 2, (steps, batches)
    for topic in WRITTEN_BY_THE_WORKER:
        assert max(batches[topic]) <= steps * BATCHES_PER_STEP + 2, (topic, steps, batches)


@pytest.mark.timeout(180)
def test_make_run_sends_a_record_batch_a_second() -> None:
    with demo_run() as run:  # as `make run`: 200 payments/s, a step a second
        last = list(samples(run, 30, 10))[-1]
        assert last.ready and last.produced, last
        batches = batch_counts(run.broker_port)
        steps = steps_so_far(run.began, 1.0)
    print(f"{steps:.0f} s of `make run`; record batches per partition: {batches}")
    assert_batches_per_step(batches, steps)


@pytest.mark.timeout(300)
def test_the_demo_keeps_running_for_33_minutes_of_its_batches() -> None:
    step, seconds, every = 0.04, 80.0, 5.0
    history: list[Sample] = []
    with demo_run(DEMO_RATE, step) as run:
        for sample in samples(run, seconds, every):
            history.append(sample)
            assert run.alive(), run.log_tail()
            # ready all along: no stall, no crash, the broker answering
            assert sample.ready and not sample.failing, describe(history)
            if len(history) < 3:
                continue
            before, previous = history[-3], history[-2]
            # the demo keeps producing at its rate
            assert sample.produced is not None and previous.produced is not None
            assert sample.produced - previous.produced >= DEMO_RATE * every / 2, describe(history)
            # and everything produced two samples (10 s) ago has been read since
            assert before.produced is not None
            for pipeline in PAYMENTS_PIPELINES:
                assert sample.events_in[pipeline] >= before.produced, describe(history)
            # the derived stream too: the SQL pipeline reading payments-eur moves on
            moved = sample.events_in["merchant_minutes"] - before.events_in["merchant_minutes"]
            assert moved > 0, describe(history)
        batches = batch_counts(run.broker_port)
        steps = steps_so_far(run.began, step)
    last = history[-1]
    print(f"{steps:.0f} demo steps in {last.t:.0f} s; record batches per partition: {batches}")
    assert last.t >= seconds - every, describe(history)
    assert steps >= 26 * 60, steps  # more than the 26 minutes after which it stopped
    assert_batches_per_step(batches, steps)
