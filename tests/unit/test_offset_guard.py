"""OffsetGuard: skip what this process already processed, find what the stream skipped."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from streams.runtime.agents import OffsetGuard


def events(*positions: tuple[int, int]) -> list[Any]:
    return [
        SimpleNamespace(message=SimpleNamespace(topic="t", partition=p, offset=o))
        for p, o in positions
    ]


def offsets(batch: list[Any]) -> list[tuple[int, int]]:
    return [(e.message.partition, e.message.offset) for e in batch]


def test_redelivered_records_are_skipped() -> None:
    guard = OffsetGuard()
    first = events((0, 0), (0, 1), (1, 0))
    assert guard.fresh(first) == first
    guard.done(first)
    again = events((0, 0), (0, 1), (0, 2), (1, 0), (1, 1))
    assert offsets(guard.fresh(again)) == [(0, 2), (1, 1)]


def test_gaps_before_and_inside_a_batch() -> None:
    guard = OffsetGuard()
    guard.done(events((0, 4)))
    assert guard.gaps(events((0, 5), (0, 6))) == []
    assert guard.gaps(events((0, 8), (0, 9), (0, 12), (1, 3))) == [("t", 0, 5, 7), ("t", 0, 10, 11)]


def test_baseline_only_raises() -> None:
    guard = OffsetGuard()
    guard.done(events((0, 10)))
    guard.baseline({("t", 0): 5, ("t", 1): 7})
    assert offsets(guard.fresh(events((0, 10), (0, 11), (1, 6), (1, 7)))) == [(0, 11), (1, 7)]
    assert guard.gaps(events((1, 9))) == [("t", 1, 7, 8)]
