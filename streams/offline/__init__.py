"""Offline replay: pipelines run over JSON Lines files, no broker (`sluice replay`).

`runner.replay` is the one runner: a single pipeline is a graph of one (`graph.Graph`,
pipelines wired by their topics), one input is read a chunk at a time, several are merged
by event time (`reading`); every topic written becomes a file (`writing`); `tuning` sets
the process up for a batch job. Nothing here imports the runtime or a Kafka client.
"""

from streams.offline.graph import Graph
from streams.offline.reading import STDIN, load_tables, merge_lines, open_input
from streams.offline.runner import (
    DEFAULT_OUTPUT_DIR,
    PipelineSummary,
    ReplaySummary,
    replay,
    run,
)
from streams.offline.writing import dead_letter_line

__all__ = [
    "DEFAULT_OUTPUT_DIR",
    "STDIN",
    "Graph",
    "PipelineSummary",
    "ReplaySummary",
    "dead_letter_line",
    "load_tables",
    "merge_lines",
    "open_input",
    "replay",
    "run",
]
