"""TESTS_FAULT: which point and which time a worker stops or kills itself."""

from __future__ import annotations

import signal

import pytest

from streams.runtime import faults


def test_a_scoped_point_fires_only_for_its_scope_and_on_its_nth_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[int] = []
    monkeypatch.setattr("os.kill", lambda pid, signum: sent.append(signum))
    reached = faults.injector("faust.checkpoint.after_offsets@payments-clean:kill:2")
    reached("faust.checkpoint.after_offsets", "payments-risk")
    reached("faust.checkpoint.after_offsets", "payments-clean")
    reached("checkpoint.after_outputs", "payments-clean")
    assert sent == []
    reached("faust.checkpoint.after_offsets", "payments-risk")
    reached("faust.checkpoint.after_offsets", "payments-clean")
    assert sent == [signal.SIGKILL]
    reached("faust.checkpoint.after_offsets", "payments-clean")
    assert sent == [signal.SIGKILL]  # once


def test_an_unscoped_point_fires_in_every_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[int] = []
    monkeypatch.setattr("os.kill", lambda pid, signum: sent.append(signum))
    reached = faults.injector("faust.checkpoint.after_offsets:stop:2")
    reached("faust.checkpoint.after_offsets", "a")
    reached("faust.checkpoint.after_offsets", "b")
    assert sent == [signal.SIGSTOP]


@pytest.mark.parametrize(
    "spec", ["nowhere:kill", "faust.checkpoint.after_offsets@x:explode", "checkpoint.after_outputs"]
)
def test_an_unknown_point_or_action_is_refused_naming_the_variable(spec: str) -> None:
    with pytest.raises(faults.FaultSpecError, match="TESTS_FAULT"):
        faults.injector(spec)


def test_a_hold_fires_once_at_its_nth_time_and_sends_no_signal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[int] = []
    monkeypatch.setattr("os.kill", lambda pid, signum: sent.append(signum))
    spec = "faust.batch.taken@payments-risk:hold:2"
    holds, reached = faults.hold_injector(spec), faults.injector(spec)
    assert [holds("faust.batch.taken", "payments-clean") for _ in range(3)] == [False] * 3
    fired = [holds("faust.batch.taken", "payments-risk") for _ in range(3)]
    assert fired == [False, True, False]
    reached("faust.batch.taken", "payments-risk")
    assert sent == []  # a hold is the caller's wait, never a signal


def test_a_signal_spec_never_holds() -> None:
    holds = faults.hold_injector("faust.batch.taken:kill")
    assert not any(holds("faust.batch.taken", "p") for _ in range(3))
