"""Waiting for something to become true, in one place: every test that polls (a worker
ready, a metric reached, a broker gone) says what it waits for, and fails with that."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path


def _holds(predicate: Callable[[], object]) -> bool:
    try:
        return bool(predicate())
    except OSError:  # an endpoint not up yet is "not yet", not a failure
        return False


def wait_until(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.2
) -> float:
    """Block until `predicate()` is true; returns the seconds it took. AssertionError
    naming `what` after `timeout` seconds."""
    began = time.monotonic()
    while not _holds(predicate):
        if time.monotonic() - began > timeout:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(interval)
    return time.monotonic() - began


async def eventually(
    predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.2
) -> float:
    """`wait_until` for async tests: sleeps without blocking the event loop."""
    began = time.monotonic()
    while not _holds(predicate):
        if time.monotonic() - began > timeout:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        await asyncio.sleep(interval)
    return time.monotonic() - began


def stopped(pid: int) -> bool:
    """The process is stopped (SIGSTOP: state T in /proc/<pid>/stat), as a worker is that
    paused itself at a named fault point (streams.runtime.faults)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] == "T"
