"""A window step's state carries the layout it was built from (issue 22, case 8): a
reorder of the aggregates reads it by name; any other change is one clear error."""

from __future__ import annotations

from typing import Any

import pytest

from models.pipeline_spec import WindowSpec
from streams.core.errors import StateLayoutError
from streams.core.records import BatchResult, Event
from streams.core.state import DictStateStore, bookkeeping_key
from streams.steps.contract import BatchContext
from streams.steps.window import WindowStep
from streams.steps.window.layout import LAYOUT

BASE = 1_795_600_000_000
FIRST = {"n": "count()", "big": "max(v)", "total": "sum(v)"}


def step_of(store: DictStateStore, aggregates: dict[str, str], **options: Any) -> WindowStep:
    spec = WindowSpec.model_validate(
        {"type": "tumbling", "size": "10s", "key": "user", "aggregates": aggregates} | options
    )
    return WindowStep("counts", spec, store, pipeline="shop")


def feed(step: WindowStep, records: list[tuple[str, int, int]]) -> list[dict[str, Any]]:
    events = [
        Event({"user": u, "v": v}, timestamp_ms=t, partition=i % 2, offset=i)
        for i, (u, t, v) in enumerate(records)
    ]
    out = [e.value for e in step.process(events, BatchContext(BatchResult(), 0))]
    step.persist()
    return out


def final(step: WindowStep) -> list[dict[str, Any]]:
    return [e.value for e in step.flush(BatchContext(BatchResult(), 0), final=True)]


RECORDS = [(f"u{i % 3}", BASE + i * 700, (i * 37) % 101) for i in range(40)]


def reference(aggregates: dict[str, str]) -> list[dict[str, Any]]:
    """Every record through one step that never restarted."""
    step = step_of(DictStateStore(), aggregates)
    return feed(step, RECORDS) + final(step)


def test_reordered_aggregates_read_the_state_by_name() -> None:
    store = DictStateStore()
    early = feed(step_of(store, FIRST), RECORDS[:25])
    reordered = {"total": "sum(v)", "n": "count()", "big": "max(v)"}
    later = step_of(store, reordered)
    got = early + feed(later, RECORDS[25:])
    # and once more: the state was written back in the new order
    got += final(step_of(store, reordered))
    assert by_window(got) == by_window(reference(FIRST))
    assert len(got) == len(by_window(got))


def by_window(results: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["user"], r["window_start"]): r for r in results}


@pytest.mark.parametrize(
    ("aggregates", "options", "said"),
    [
        (FIRST | {"low": "min(v)"}, {}, "aggregate(s) added: low: min(v)"),
        ({"n": "count()", "big": "max(v)"}, {}, "aggregate(s) removed: total"),
        (FIRST | {"big": "min(v)"}, {}, "big: max(v) -> min(v)"),
        (FIRST, {"size": "20s"}, "window size 10000 ms -> 20000 ms"),
        (FIRST, {"key": ["user", "v"]}, "key ['user'] -> ['user', 'v']"),
    ],
)
def test_an_incompatible_change_is_one_clear_error(
    aggregates: dict[str, str], options: dict[str, Any], said: str
) -> None:
    store = DictStateStore("shop.counts")
    feed(step_of(store, FIRST), RECORDS[:25])
    changed = step_of(store, aggregates, **options)
    with pytest.raises(StateLayoutError) as caught:
        feed(changed, RECORDS[25:])
    message = str(caught.value)
    assert "pipeline 'shop', step 'counts'" in message
    assert said in message
    assert "store 'shop.counts'" in message and "new name" in message
    assert caught.value.store == "shop.counts"


def strip_layouts(store: DictStateStore) -> None:
    """State as the version before layouts wrote it."""
    for partition in (0, 1):
        store.delete(bookkeeping_key(LAYOUT, partition))


def test_state_from_before_layouts_loads_as_the_current_layout() -> None:
    store = DictStateStore()
    early = feed(step_of(store, FIRST), RECORDS[:25])
    strip_layouts(store)
    later = step_of(store, FIRST)
    got = early + feed(later, RECORDS[25:]) + final(later)
    assert by_window(got) == by_window(reference(FIRST))
    assert store.get(bookkeeping_key(LAYOUT, 0)) is not None  # adopted


def test_state_from_before_layouts_with_another_count_is_the_clear_error() -> None:
    store = DictStateStore("shop.counts")
    feed(step_of(store, FIRST), RECORDS[:25])
    strip_layouts(store)
    with pytest.raises(StateLayoutError, match="holds 3 aggregate state"):
        feed(step_of(store, FIRST | {"low": "min(v)"}), RECORDS[25:])
