"""The `sluice` command line: the group in app.py, its commands by what they touch —
offline (check, replay, explain), serve (run, worker, broker), produce_consume (produce,
consume) and bench."""

from streams.cli import bench, offline, produce_consume, serve  # noqa: F401 - they register commands
from streams.cli.app import main

__all__ = ["main"]
