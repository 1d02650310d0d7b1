"""Durations (`500ms`, `10s`, `1m`, `2h`, `1d`) parsed to whole milliseconds.

The parser is `models.durations` (the config's data format; `models` imports nothing from
`streams`); these names stay for streams' callers until the layout moves them.
"""

from models.durations import MAX_DURATION_MS, format_duration_ms, parse_duration_ms

__all__ = ["MAX_DURATION_MS", "format_duration_ms", "parse_duration_ms"]
