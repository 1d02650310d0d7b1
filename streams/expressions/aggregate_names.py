"""The one table of aggregate names (SQL's and the pipelines'): name -> how many values it
takes (at least, at most). A window's or aggregate step's calls are parsed against it
(aggregate_calls); the steps register an implementation per name
(streams.steps.window.implementations, checked at import); anywhere else in an
expression an aggregate is refused by name (compiler)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

AGGREGATE_FUNCTIONS: Final[Mapping[str, tuple[int, int]]] = MappingProxyType(
    {
        "count": (0, 1),
        "sum": (1, 1),
        "avg": (1, 1),
        "min": (1, 1),
        "max": (1, 1),
        "first": (1, 1),
        "last": (1, 1),
        "earliest": (1, 1),
        "latest": (1, 1),
        "percentile": (2, 2),
        "count_distinct": (1, 1),
    }
)
