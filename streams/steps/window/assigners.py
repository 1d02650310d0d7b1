"""Which windows an event time falls in. Windows are aligned to the Unix epoch: tumbling
windows `[k*size, (k+1)*size)`, hopping windows every `hop` for `size`; a session is the
events of a key less than `gap` apart, `[first, last + gap)`, found in
streams.steps.window.one_by_one (it merges the sessions an event joins)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from models.pipeline import WindowSpec

Starts = Callable[[int], Sequence[int]]


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
