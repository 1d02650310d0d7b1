"""Issue 22 case 1 on the in-memory broker: a member that lost its partitions (paused
beyond the session timeout) wakes up and writes its old state to the changelog after
the new owner's writes and commits. A restore must not apply those writes: the state a
fresh worker restores equals the state of a run without the zombie."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.unit.runtime.fakes import FakeBroker
from tests.unit.runtime.harness import Member, all_partitions, produce


def _events(users: int, count: int, start: int = 0) -> list[tuple[str, int, int]]:
    return [(f"user{i % users}", i, (start + i) * 700) for i in range(count)]


async def _reference(first: Any, second: Any) -> Any:
    broker = FakeBroker()
    produce(broker, first)
    produce(broker, second)
    member = Member(broker, exactly_once=False)
    await member.join()
    await member.run_to_end()
    return member.values()


async def _with_zombie(first: Any, second: Any, *, woken_in_checkpoint: bool) -> Any:
    broker = FakeBroker()
    produce(broker, first)
    zombie = Member(broker, exactly_once=False)
    await zombie.join()
    await zombie.run_to_end()
    produce(broker, second)
    zombie.engine.batch_max = 8
    await zombie.engine.step()  # a batch of the first new records processed, not yet
    # checkpointed ...
    assert zombie.engine.uncommitted
    # ... when the process stops; the group moves on without it
    heir = Member(broker, exactly_once=False)
    await heir.join()
    await heir.run_to_end()
    if woken_in_checkpoint:
        # woken inside a checkpoint: the client has not noticed yet, it writes state,
        # then its commit is refused
        await zombie.engine.checkpoint()
    else:
        # woken by the heartbeat's verdict: the revoke of the rejoin writes nothing
        zombie.consumer._coordinator.generation = -1
        written = len(broker.log("unit-counts.window-changelog", 0))
        await zombie.consumer.listener.on_partitions_revoked(all_partitions(broker))
        assert len(broker.log("unit-counts.window-changelog", 0)) == written
    assert zombie.engine.checkpoints.lost
    fresh = Member(broker, exactly_once=False)
    await fresh.join()
    return fresh.values()


def _check(woken_in_checkpoint: bool) -> None:
    first, second = _events(5, 40), _events(5, 160, start=400)
    want = asyncio.run(_reference(first, second))
    got = asyncio.run(_with_zombie(first, second, woken_in_checkpoint=woken_in_checkpoint))
    assert got == want


def test_a_zombie_woken_inside_a_checkpoint_changes_no_restored_state() -> None:
    _check(woken_in_checkpoint=True)


def test_a_zombie_out_of_its_generation_writes_nothing() -> None:
    _check(woken_in_checkpoint=False)
