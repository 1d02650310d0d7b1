"""The checkpoint (streams.runtime.checkpoint) on the fake broker: the order of its steps
and calls, and what it does once the member is out of its generation."""

from __future__ import annotations

import asyncio
from pathlib import Path

from streams.runtime.checkpoint import Step
from streams.runtime.local_state import LocalState
from tests.unit.runtime.fakes import FakeBroker
from tests.unit.runtime.harness import Member, produce


def test_exactly_once_calls_in_order() -> None:
    async def run() -> Member:
        broker = FakeBroker()
        produce(broker, [("a", 1, 1000), ("b", 2, 30_000)])
        member = Member(broker, exactly_once=True)
        await member.join()
        await member.run_to_end()
        return member

    member = asyncio.run(run())
    calls = member.producer.calls
    # the restore's owner marks, then a batch: begin, offsets, commit
    assert calls == ["begin", "commit", "begin", "send_offsets", "commit"]
    assert member.engine.checkpoints.step is Step.COMPLETE


def test_exactly_once_out_of_the_generation_aborts_and_commits_nothing() -> None:
    async def run() -> tuple[Member, FakeBroker]:
        broker = FakeBroker()
        produce(broker, [("a", 1, 1000), ("b", 2, 30_000)])
        member = Member(broker, exactly_once=True)
        await member.join()
        await member.engine.step()  # a batch in an open transaction
        member.consumer._coordinator.generation = -1  # the heartbeat said: dropped
        member.engine.checkpoints.member = iter([True, False]).__next__  # type: ignore[method-assign]
        await member.engine.checkpoint()
        return member, broker

    member, broker = asyncio.run(run())
    assert member.producer.calls[-1] == "abort"
    assert member.engine.checkpoints.lost
    assert not any(broker.group_offsets.values())


def test_at_least_once_out_of_the_generation_writes_no_state() -> None:
    async def run() -> tuple[Member, FakeBroker, int]:
        broker = FakeBroker()
        produce(broker, [("a", 1, 1000), ("b", 2, 30_000)])
        member = Member(broker, exactly_once=False)
        await member.join()
        await member.engine.step()
        before = sum(len(log) for (t, _), log in broker.logs.items() if "changelog" in t)
        member.consumer._coordinator.generation = -1
        await member.engine.checkpoint()
        return member, broker, before

    member, broker, before = asyncio.run(run())
    after = sum(len(log) for (t, _), log in broker.logs.items() if "changelog" in t)
    assert after == before and member.engine.checkpoints.lost
    assert member.engine.checkpoints.step is Step.PREPARED


def test_committed_changes_reach_the_local_copies(tmp_path: Path) -> None:
    async def run() -> Member:
        broker = FakeBroker()
        produce(broker, [("a", 1, 1000)])
        member = Member(broker, exactly_once=False)
        member.engine.checkpoints.local = LocalState(tmp_path)
        await member.join()
        await member.run_to_end()
        return member

    member = asyncio.run(run())
    local = member.engine.checkpoints.local
    assert local is not None
    partition = sum(b"a") % 4
    entries, offset = local.partition("counts.window", partition).load()
    assert "a" in dict(entries) and offset > 0
    local.close_all()
