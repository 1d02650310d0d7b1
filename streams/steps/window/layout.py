"""What a window step's state was built from, stored beside it (a bookkeeping key per
partition), so that a changed pipeline never reads state it cannot read right.

A window's state holds each window's aggregate states by position. Issue 22: aggregates
reordered in the YAML (`{n, big}` -> `{big, n}`) were read into each other's places
(`big` 500, `n` 132 where replay gave 7 and 625), and an aggregate added failed every
restart with a `ValueError` from zip. Now the layout (window type, size, hop, gap, key
fields, and the aggregates by name with their calls) is compared at load:

- the same aggregates in another order: compatible; the state is read by name (and
  written back in the new order);
- anything else changed: `StateLayoutError`, naming the pipeline, the step, what
  changed and what to do;
- no layout stored (state written before layouts existed): taken as the current layout
  when the number of aggregates matches (that version had no other check either).
"""

from __future__ import annotations

from typing import Any

from models.pipeline_spec import WindowSpec
from streams.core.errors import StateLayoutError
from streams.expressions.aggregate_calls import AggregateCall

LAYOUT = "layout"  # the bookkeeping key's name (streams.core.state.bookkeeping_key)


def _call_text(call: AggregateCall) -> str:
    argument = call.argument.source.strip() if call.argument is not None else ""
    parameter = f", {call.parameter:g}" if call.parameter is not None else ""
    return f"{call.function}({argument}{parameter})"


def layout_of(spec: WindowSpec) -> dict[str, Any]:
    """The layout of a window step's state, as stored (JSON)."""
    return {
        "type": spec.type,
        "size": spec.size,
        "hop": spec.hop,
        "gap": spec.gap,
        "key": list(spec.key or ()),
        "aggregates": [[name, _call_text(call)] for name, call in spec.aggregates.items()],
    }


def _describe(layout: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{name}: {call}" for name, call in layout["aggregates"]) + "}"


def read_order(
    stored: dict[str, Any], current: dict[str, Any], *, pipeline: str, step: str, store: str
) -> list[int] | None:
    """Per current aggregate, its position in the stored states (None: the same order),
    or StateLayoutError when the stored state cannot be read as the step is now."""
    changes = []
    for field, what, unit in (
        ("type", "window type", ""),
        ("size", "window size", " ms"),
        ("hop", "hop", " ms"),
        ("gap", "session gap", " ms"),
        ("key", "key", ""),
    ):
        if stored.get(field) != current[field]:
            changes.append(f"{what} {stored.get(field)}{unit} -> {current[field]}{unit}")
    before = dict(stored.get("aggregates", []))
    now = dict(current["aggregates"])
    added = sorted(set(now) - set(before))
    removed = sorted(set(before) - set(now))
    changed = sorted(n for n in set(now) & set(before) if now[n] != before[n])
    if added:
        changes.append("aggregate(s) added: " + ", ".join(f"{n}: {now[n]}" for n in added))
    if removed:
        changes.append("aggregate(s) removed: " + ", ".join(removed))
    if changed:
        changes.append(
            "aggregate(s) changed: " + ", ".join(f"{n}: {before[n]} -> {now[n]}" for n in changed)
        )
    if changes:
        raise StateLayoutError(
            f"pipeline {pipeline!r}, step {step!r}: its stored state was built from another "
            f"definition ({'; '.join(changes)}; stored aggregates {_describe(stored)}), and "
            "reading it would give wrong results. Reset the step's state (stop every worker, "
            f"delete the changelog topic of store {store!r}, and with store rocksdb:// "
            "its local copy), or give the pipeline a new name",
            store,
        )
    names = [name for name, _ in stored["aggregates"]]
    order = [names.index(name) for name, _ in current["aggregates"]]
    return None if order == list(range(len(order))) else order


def check_count(dumped: list[Any], expected: int, *, pipeline: str, step: str, store: str) -> None:
    """State stored before layouts existed: it can only be read when it holds as many
    aggregate states as the step has aggregates."""
    if len(dumped) != expected:
        raise StateLayoutError(
            f"pipeline {pipeline!r}, step {step!r}: its stored state (written by an earlier "
            f"sluice, without a layout) holds {len(dumped)} aggregate state(s), the step now "
            f"has {expected}. Reset the step's state (stop every worker, delete the "
            f"changelog topic of store {store!r}, and with store rocksdb:// its local "
            "copy), or give the pipeline a new name",
            store,
        )
