"""Process settings for a replay: the collector and the C heap tuned for a batch job, and
what happens when a sync component gets stuck (a thread cannot be stopped)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from streams.core.watchdog import StuckRecord

STUCK_EXIT_STATUS = 3


def exit_when_stuck(record: StuckRecord) -> None:
    """Replay's answer to a sync component stuck past its timeout: a thread cannot be
    stopped, so say which step and line, and exit (status 3) instead of hanging."""
    sys.stderr.write(
        f"sluice replay: pipeline {record.pipeline!r} step {record.step!r} is stuck on the "
        f"record on line {record.offset + 1}: it has run for {record.running_s:.1f} s, past "
        f"its timeout ({record.timeout_s:g} s). A sync process() cannot be interrupted, so "
        "replay stops here; the output files are incomplete.\n"
    )
    sys.stderr.flush()
    os._exit(STUCK_EXIT_STATUS)


@contextmanager
def batch_tuning() -> Iterator[None]:
    """Process settings for a batch job, restored afterwards.

    The collector as the worker tunes it (start-up objects frozen, fewer and larger
    collections): it took ~0.45 s of 1.7 s on `sluice bench windows` by default. The C
    heap: a 64 MiB glibc top pad while replay runs, since orjson.dumps' buffers otherwise
    trim and regrow the heap every few dozen calls (a four-field dumps: 0.9 µs instead of
    0.09 µs); then the default pad is back and the kept memory returned (malloc_trim).
    glibc's mmap threshold stops adapting once mallopt was called: the one setting that
    cannot be restored (docs/decisions/0004-garbage-collection-and-heap.md)."""
    previous = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    padded = _malloc_top_pad(64 << 20)
    try:
        yield
    finally:
        if padded:  # the default back, and the memory the pad kept given back too
            _malloc_top_pad(_DEFAULT_TOP_PAD)
            _malloc_trim()
        gc.set_threshold(*previous)
        gc.unfreeze()


_M_TOP_PAD = -2  # glibc's mallopt parameter
_DEFAULT_TOP_PAD = 128 << 10  # glibc's default (mallopt(3))


def _malloc_trim() -> None:
    with suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)


def _malloc_top_pad(size: int) -> bool:
    """glibc's M_TOP_PAD; False where the C library has no mallopt (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        return bool(libc.mallopt(_M_TOP_PAD, size))
    except (OSError, AttributeError, TypeError):
        return False
