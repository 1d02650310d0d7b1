"""State written by sluice before streams/steps/window/ was a package (cef485d, the
modules window.py and aggregates.py) is read by today's window step: the changelog and
restart copies of running workers stay valid across the upgrade.

data/window_state_before_split.json holds what that version stored after the first half
of `records()` (no window had closed yet: every open window, with every aggregate's
state, percentile's DDSketch and the layout and watermark bookkeeping keys included).
Today's step restores it, takes the second half and ends the input; its results must be
those of the whole input computed by brute force (test_window_properties)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from models.pipeline_spec import WindowSpec
from streams.core.records import BatchResult, Event
from streams.core.state import DictStateStore
from streams.steps.contract import BatchContext
from streams.steps.window import WindowStep
from tests.unit.steps.test_window_properties import AGGREGATES, brute_force, same

BASE = 1_795_600_000_000  # a multiple of 20 s: the first half (4.5 s) closes no window
OPTIONS: dict[str, dict[str, Any]] = {
    "tumbling": {"type": "tumbling", "size": "10s", "grace": "3s"},
    "hopping": {"type": "hopping", "size": "10s", "hop": "4s", "grace": "3s"},
}
STORED = Path(__file__).parent / "data" / "window_state_before_split.json"


def records() -> list[tuple[str, int, int | None]]:
    """(key, t, x): key "a" dense enough for percentile's sketch (over 256 values in a
    window), some nulls, in event-time order."""
    rows: list[tuple[str, int, int | None]] = []
    for i in range(1_500):
        key = "a" if i % 5 else "bc"[i % 2]
        x = None if i % 17 == 0 else (i * 37) % 101 - 50
        rows.append((key, BASE + i * 6, x))
    return rows


@pytest.mark.parametrize("kind", sorted(OPTIONS))
def test_state_stored_before_the_split_is_read(kind: str) -> None:
    store = DictStateStore()
    stored = json.loads(STORED.read_text())[kind]
    for key, value in stored.items():
        store.set(key, value)
    sketches = [w for v in stored.values() if isinstance(v, dict) for w in v.get("w", ())]
    assert any(isinstance(dumped, dict) for w in sketches for dumped in w[3])  # a DDSketch
    spec = WindowSpec.model_validate({"key": "k", "aggregates": AGGREGATES, **OPTIONS[kind]})
    step = WindowStep("window", spec, store)
    rows = records()
    results: list[dict[str, Any]] = []
    second = rows[len(rows) // 2 :]
    for i in range(0, len(second), 100):
        ctx = BatchContext(BatchResult(), 0)
        events = [Event({"k": k, "x": x}, timestamp_ms=t) for k, t, x in second[i : i + 100]]
        results += [e.value for e in step.process(events, ctx)]
    results += [e.value for e in step.flush(BatchContext(BatchResult(), 0), final=True)]
    size, hop = 10_000, 4_000 if kind == "hopping" else 10_000

    def starts(t: int) -> list[int]:
        last = t - t % hop
        return [s for s in range(last - 2 * hop, last + 1, hop) if s <= t < s + size]

    expected, late = brute_force(rows, starts, 3_000, lambda s: s + size)
    assert late == 0
    same(results, expected)
