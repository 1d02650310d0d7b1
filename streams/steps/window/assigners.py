"""Which windows an event time falls in. Windows are aligned to the Unix epoch: tumbling
windows `[k*size, (k+1)*size)`, hopping windows every `hop` for `size`; a session is the
events of a key less than `gap` apart, `[first, last + gap)`, found in
streams.steps.window.one_by_one (it merges the sessions an event joins)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import chain, repeat, tee
from operator import add, mod, sub
from typing import Any

from models.pipeline_spec import WindowSpec

Starts = Callable[[int], Sequence[int]]
# per (record, window) pair: the record's index, the window's start, and whether it is the
# record's last window (a record is late when its last window is closed)
Pairs = tuple[list[int] | None, list[int], Iterable[bool]]


def starts_of(spec: WindowSpec) -> Starts:
    """The starts of the tumbling or hopping windows holding an event time, in order."""
    size = spec.size or 0
    hop = spec.hop or size
    if spec.type == "tumbling":
        return lambda t: (t - t % size,)

    def hopping(t: int) -> list[int]:
        last = t - t % hop
        first = last - ((size - 1) // hop) * hop
        return [s for s in range(first, last + 1, hop) if s <= t < s + size]

    return hopping


def pairs_of(spec: WindowSpec, times: list[int]) -> Pairs:
    """Each record's windows as (record, window) pairs in record order, each record's
    windows by start. Tumbling: one pair a record (`None`: the records themselves), the
    starts computed in C. Hopping: the records repeated, once per window."""
    size = spec.size or 0
    if spec.type == "tumbling":
        return None, list(map(sub, times, map(mod, times, repeat(size)))), repeat(True)
    hop = spec.hop or size
    if size % hop == 0:  # every time is in size/hop windows: all of it in C
        k = size // hop
        firsts = map(sub, times, map(mod, times, repeat(hop)))  # the last window's start
        firsts = map(sub, firsts, repeat((k - 1) * hop))
        return (
            list(chain.from_iterable(map(repeat, range(len(times)), repeat(k)))),
            list(chain.from_iterable(map(range, *_spans(firsts, k * hop), repeat(hop)))),
            ([False] * (k - 1) + [True]) * len(times),
        )
    starts_at = starts_of(spec)
    records: list[int] = []
    starts: list[int] = []
    lasts: list[bool] = []
    for index, t in enumerate(times):
        found: Any = starts_at(t)  # never empty: hop <= size
        records += [index] * len(found)
        starts += found
        lasts += [False] * (len(found) - 1)
        lasts.append(True)
    return records, starts, lasts


def _spans(firsts: Iterable[int], length: int) -> tuple[Iterable[int], Iterable[int]]:
    """(firsts, firsts + length): the bounds of range(first, first + length, hop)."""
    lows, highs = tee(firsts)
    return lows, map(add, highs, repeat(length))
