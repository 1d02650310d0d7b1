"""Windows on the worker's path against brute force per partition.

The other window tests end every input with `flush(final=True)`, replay's end of input.
A worker never gets that: its input stops, and idle partitions close their windows by
wall clock (`flush(final=False)`), after batches that mix partitions, checkpoints
(`persist`) and restores (a new step over the same store). Issue 22 found windows of a
5-minute hopping window still open minutes after a feed stopped, and restored windows
never closing at all; these tests run that path to its end without the final flush, on
a clock, and compare with what each partition's records give by the contract
(DESIGN.md: per-partition watermark, a window closes when it passes `end + grace`)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from models.pipeline_spec import WindowSpec
from streams.core.event_time import iso_ms
from streams.core.records import BatchResult, Event
from streams.core.state import DictStateStore
from streams.steps.contract import BatchContext
from streams.steps.window import WindowStep

BASE = 1_795_600_000_000  # event times well before the clock below (a backfill)
CLOCK_MS = 1_796_500_000_000
AGGREGATES = {"n": "count()", "total": "sum(v)", "big": "max(v)"}
Record = tuple[str, int, int, int]  # key, partition, event time, value
Windows = dict[tuple[str, str], tuple[int, int, int]]


def brute_force(records: list[Record], size: int, hop: int, grace: int) -> Windows:
    """Every window by the contract, computed per partition over its records in order."""
    found: dict[tuple[str, int], list[int]] = {}
    watermarks: dict[int, int] = {}
    for key, partition, t, v in records:
        watermark = watermarks[partition] = max(watermarks.get(partition, t), t)
        start = ((t - size) // hop + 1) * hop  # the first k * hop with t < k * hop + size
        while start <= t:
            if start + size + grace > watermark:
                window = found.setdefault((key, start), [0, 0, v])
                window[0] += 1
                window[1] += v
                window[2] = max(window[2], v)
            start += hop
    return {(k, iso_ms(s)): (w[0], w[1], w[2]) for (k, s), w in found.items()}


class Worker:
    """A window step as the engine drives it: batches of whole per-partition runs
    (as `getmany` returns them), checkpoints, idle flushes on a clock, restarts."""

    def __init__(self, spec: WindowSpec, *, one_by_one: bool = False) -> None:
        self.spec = spec
        self.one_by_one = one_by_one
        self.store = DictStateStore()
        self.step = self._new_step()
        self.now = CLOCK_MS
        self.out: Windows = {}

    def take(self, events: list[Event]) -> None:
        for event in events:
            value = event.value
            window = (value["user"], value["window_start"])
            assert window not in self.out, f"{window} emitted twice"
            self.out[window] = (value["n"], value["total"], value["big"])

    def batch(self, events: list[Event]) -> None:
        self.take(self.step.process(events, BatchContext(BatchResult(), self.now)))

    def idle(self, ms: int) -> None:
        """The engine's idle flush, every second of `ms`."""
        for _ in range(ms // 1000):
            self.now += 1000
            self.take(self.step.flush(BatchContext(BatchResult(), self.now), final=False))

    def restart(self) -> None:
        """A checkpoint, then a new process restoring the same state."""
        self.step.persist()
        self.step = self._new_step()

    def _new_step(self) -> WindowStep:
        step = WindowStep("window", self.spec, self.store)
        if self.one_by_one:  # the record path (the batch path is the default)
            step.batched = False
        return step


def feed(worker: Worker, records: list[Record], batches: list[int], persist_every: int) -> None:
    """`records` arrive in order; each poll takes the next `batches[i]` of them, grouped
    by partition as the consumer hands them over."""
    offsets: dict[int, int] = {}
    i = polls = 0
    while i < len(records):
        taken = records[i : i + batches[polls % len(batches)]]
        i += len(taken)
        events = []
        for partition in sorted({p for _, p, _, _ in taken}):
            for key, p, t, v in taken:
                if p == partition:
                    offset = offsets[p] = offsets.get(p, -1) + 1
                    value = {"user": key, "v": v}
                    events.append(Event(value, timestamp_ms=t, partition=p, offset=offset))
        worker.batch(events)
        worker.now += 20
        polls += 1
        if polls % persist_every == 0:
            worker.step.persist()


def spec_of(size_s: int, hop_s: int, grace_s: int) -> WindowSpec:
    kind = {"type": "tumbling"} if size_s == hop_s else {"type": "hopping", "hop": f"{hop_s}s"}
    return WindowSpec.model_validate(
        {"size": f"{size_s}s", "grace": f"{grace_s}s", "key": "user", **kind}
        | {"aggregates": AGGREGATES}
    )


@st.composite
def feeds(draw: st.DrawFn) -> list[Record]:
    """Keyed records (a key stays in its partition), event time advancing with disorder
    smaller than the grace used below."""
    keys = draw(st.integers(1, 12))
    partitions = draw(st.integers(1, 4))
    now = BASE
    records = []
    steps = st.tuples(st.integers(0, keys - 1), st.integers(0, 4_000), st.integers(0, 2_000))
    for key, advance, back in draw(st.lists(steps, min_size=1, max_size=200)):
        now += advance
        records.append((f"u{key}", key % partitions, now - back, (key * 31 + now) % 997))
    return records


@settings(max_examples=120, deadline=None)
@given(
    records=feeds(),
    batches=st.lists(st.integers(1, 80), min_size=1, max_size=5),
    persist_every=st.integers(1, 5),
    shape=st.sampled_from([(10, 10), (10, 2), (10, 4), (9, 3)]),
    restart=st.booleans(),
)
def test_an_idle_worker_emits_every_window_of_its_partitions(
    records: list[Record],
    batches: list[int],
    persist_every: int,
    shape: tuple[int, int],
    restart: bool,
) -> None:
    """Input stops; after `grace` of idleness (and the flush that notices it) every window
    is out, equal to brute force, each once — with or without a restart in between, on
    the batch path and on the record path alike."""
    size_s, hop_s = shape
    grace_s = 3
    expected = brute_force(records, size_s * 1000, hop_s * 1000, grace_s * 1000)
    for one_by_one in (False, True):
        worker = Worker(spec_of(size_s, hop_s, grace_s), one_by_one=one_by_one)
        feed(worker, records, batches, persist_every)
        if restart:
            worker.restart()
        worker.idle(grace_s * 1000 + 1000)
        assert worker.out == expected
        assert worker.step.open_count == 0


def test_the_probe_of_issue_22_without_its_broker() -> None:
    """Issue 22's scenario (hopping 5m/1m, grace 30s, 60 users, 30,000 events over 40
    minutes of event time with up to 20 s disorder, 4 partitions at 2,500/s): before the
    fix, 40 s after the feed stopped, 299 windows were still open (all of the last four
    hops of every user)."""
    rng = random.Random(22)
    span, count = 40 * 60_000, 30_000
    records = []
    for i in range(count):
        user = rng.randrange(60)
        t = BASE + i * span // count - rng.randint(0, 20_000)
        records.append((f"u{user}", user % 4, t, rng.randint(1, 500)))
    worker = Worker(spec_of(300, 60, 30))
    # 2,500 records/s polled every 20 ms: about 50 a batch
    feed(worker, records, [50, 37, 64], persist_every=10)
    worker.idle(40_000)
    assert worker.out == brute_force(records, 300_000, 60_000, 30_000)


def test_restored_windows_close_on_an_idle_partition() -> None:
    """A restart with open windows and no record after it (issue 22, case 4)."""
    records = [("a", 0, BASE + i * 1000, i) for i in range(30)]
    worker = Worker(spec_of(10, 10, 2))
    feed(worker, records, [7], persist_every=1)
    worker.restart()
    worker.idle(60_000)
    assert worker.out == brute_force(records, 10_000, 10_000, 2_000)
    assert worker.step.open_count == 0


def test_a_partition_that_keeps_receiving_is_not_closed_early() -> None:
    """Live input (event time near the clock): a window closes when the clock passes
    its end plus grace, not after grace of idleness."""
    spec = spec_of(60, 60, 5)
    worker = Worker(spec)
    start = CLOCK_MS - CLOCK_MS % 60_000
    worker.now = start + 1_000
    worker.batch([Event({"user": "a", "v": 1}, timestamp_ms=start + 1_000, partition=0)])
    worker.idle(30_000)  # idle well past grace, the window's end (and grace) still ahead
    assert worker.out == {}
    worker.idle(40_000)
    assert list(worker.out.values()) == [(1, 1, 1)]


def test_brute_force_matches_the_contract_on_a_small_case() -> None:
    """The oracle itself, by hand: a record later than grace after its windows closed."""
    records = [("a", 0, BASE, 1), ("a", 0, BASE + 13_000, 2), ("a", 0, BASE + 1_000, 4)]
    windows = brute_force(records, 10_000, 10_000, 2_000)
    assert windows == {("a", iso_ms(BASE)): (1, 1, 1), ("a", iso_ms(BASE + 10_000)): (1, 2, 2)}
