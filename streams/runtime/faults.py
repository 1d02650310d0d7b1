"""Fault injection for integration tests: named points inside the checkpoint (sluice's own,
or a pipeline agent's in a Faust app) where a worker stops itself (SIGSTOP: a GC pause, a
frozen VM) or kills itself (SIGKILL) when a test asks, so a pause or a crash happens at the
exact step, not at whatever moment the scheduler gives; or, at a point that supports it, a
batch holds (`hold`: the code there waits for an event of its own — a Faust agent's batch
until a rebalance begins), so a rebalance finds it in flight.

    TESTS_FAULT="checkpoint.after_changelog:stop:3"   # the 3rd time there: SIGSTOP self
    TESTS_FAULT="checkpoint.before_commit:kill"       # the 1st time: SIGKILL self
    TESTS_FAULT="faust.checkpoint.after_offsets@payments-clean:kill:4"  # that pipeline's 4th
    TESTS_FAULT="faust.batch.taken@payments-risk:hold:3"  # its 3rd batch waits

A point reached with a scope (a Faust app's points name the pipeline: its agents run
concurrently in one process) matches `point` and `point@scope`.

Points: see `POINTS` and `FAUST_POINTS`. A test resumes a stopped worker with SIGCONT. The
variable is not a setting (settings refuse unknown SLUICE_* variables) and is read once at
import; unset, `reached` is a function that returns at once.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Protocol

log = logging.getLogger("sluice.faults")

ENV = "TESTS_FAULT"
POINTS = (
    "checkpoint.after_outputs",  # outputs acknowledged, no state written yet
    "checkpoint.after_changelog",  # state written, offsets not committed
    # exactly_once: the open transaction holds outputs and state; the offsets are about to
    # be added (send_offsets_to_transaction is the next call)
    "checkpoint.inside_send_offsets",
    "checkpoint.before_commit",  # exactly_once: just before commit_transaction
    "checkpoint.after_commit",  # offsets committed, local copies not yet written
)
# a pipeline agent's in a Faust app (streams.faust.applied_offsets)
FAUST_POINTS = (
    # a checkpoint's outputs and state changes are acknowledged, its `__offsets` not written:
    # the next owner re-applies its records (at-least-once; docs/faust.md, kill rounds)
    "faust.checkpoint.after_state",
    # a checkpoint's outputs, state and `__offsets` writes are acknowledged, its events not
    # acked yet, so Faust has not committed them: the next owner of the partitions is handed
    # them again and must skip them by `__offsets`
    "faust.checkpoint.after_offsets",
    # a batch taken from the stream, not processed yet (`hold`: until a rebalance begins,
    # so the revocation finds the batch in flight and must wait for it before the tables
    # move to their next owner)
    "faust.batch.taken",
)
_SIGNALS = {"stop": signal.SIGSTOP, "kill": signal.SIGKILL}
HOLD = "hold"


class Reached(Protocol):
    def __call__(self, point: str, scope: str | None = None) -> None: ...


class Holds(Protocol):
    def __call__(self, point: str, scope: str | None = None) -> bool: ...


class FaultSpecError(ValueError):
    """TESTS_FAULT names no point or action sluice knows."""


def parse(spec: str) -> tuple[str, str, int]:
    """`point[@scope]:action[:nth]` -> (point[@scope], action, nth)."""
    parts = spec.split(":")
    if (
        len(parts) not in (2, 3)
        or parts[0].split("@", 1)[0] not in (*POINTS, *FAUST_POINTS)
        or parts[1] not in (*_SIGNALS, HOLD)
    ):
        raise FaultSpecError(
            f"{ENV}={spec!r}: expected point[@scope]:stop|kill|hold[:nth] with a point of "
            + ", ".join((*POINTS, *FAUST_POINTS))
        )
    nth = int(parts[2]) if len(parts) == 3 else 1
    return parts[0], parts[1], max(nth, 1)


def _counter(target: str, nth: int) -> Holds:
    """True the `nth` time `target` (point or point@scope) is reached, else False."""
    seen = 0

    def fires(point: str, scope: str | None = None) -> bool:
        nonlocal seen
        if target not in (point, f"{point}@{scope}"):
            return False
        seen += 1
        return seen == nth

    return fires


def _never(point: str, scope: str | None = None) -> None:
    return None


def injector(spec: str | None) -> Reached:
    """The `reached(point)` function for `spec` (None: one that does nothing)."""
    if not spec:
        return _never
    target, action, nth = parse(spec)
    if action == HOLD:
        return _never
    signum = _SIGNALS[action]
    fires = _counter(target, nth)

    def reached(point: str, scope: str | None = None) -> None:
        if fires(point, scope):
            log.warning("fault injected at %s: %s", target, signum.name)
            os.kill(os.getpid(), signum)

    return reached


def _holds_never(point: str, scope: str | None = None) -> bool:
    return False


def hold_injector(spec: str | None) -> Holds:
    """The `holds(point)` function for `spec`: True (and a log line) the time a `hold`
    spec's point is reached; the caller then waits for its event."""
    if not spec:
        return _holds_never
    target, action, nth = parse(spec)
    if action != HOLD:
        return _holds_never
    fires = _counter(target, nth)

    def holds(point: str, scope: str | None = None) -> bool:
        if fires(point, scope):
            log.warning("fault injected at %s: hold", target)
            return True
        return False

    return holds


reached = injector(os.environ.get(ENV))
holds = hold_injector(os.environ.get(ENV))
