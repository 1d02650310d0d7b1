"""Event-time windows (streams.steps.window.step) and the aggregates they and the running
`aggregate` step compute (protocol, exact, sketches, implementations)."""

from __future__ import annotations

from streams.steps.window.implementations import make_aggregate
from streams.steps.window.keys import key_value
from streams.steps.window.protocol import Aggregate, Batched, GrowsInPlace, ValueKinds
from streams.steps.window.step import WindowStep

__all__ = [
    "Aggregate",
    "Batched",
    "GrowsInPlace",
    "ValueKinds",
    "WindowStep",
    "key_value",
    "make_aggregate",
]
