"""A progress bar over the bytes replay reads, on stderr."""

from __future__ import annotations


class Progress:
    """A rich progress bar over input bytes (or lines, reading stdin), on stderr."""

    def __init__(self, total: int | None, label: str = "replay") -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn(label),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.task = self.progress.add_task(label, total=total)
        self.pending = 0

    def __enter__(self) -> Progress:
        self.progress.start()
        return self

    def advance(self, size: int) -> None:
        self.pending += size
        if self.pending >= 1 << 20:  # redraw per MiB, not per line
            self.progress.advance(self.task, self.pending)
            self.pending = 0

    def __exit__(self, *exc: object) -> None:
        self.progress.advance(self.task, self.pending)
        self.progress.stop()
