"""The engine's phases (streams.runtime.phases): the diagram's moves, each enforced, and
the engine's path through them on the fake broker — and a failure in each phase."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaError

from streams.runtime.phases import ALLOWED, Phase, PhaseError, PhaseMachine
from tests.unit.runtime.fakes import FakeBroker
from tests.unit.runtime.harness import Member, all_partitions, produce

PATHS = [
    [Phase.ASSIGNING, Phase.RESTORING, Phase.RUNNING, Phase.REVOKING, Phase.ASSIGNING],
    [Phase.REVOKING, Phase.REVOKING, Phase.ASSIGNING, Phase.RESTORING, Phase.STOPPING],
    [Phase.FAILED],
]


@pytest.mark.parametrize("path", PATHS)
def test_allowed_paths(path: list[Phase]) -> None:
    machine = PhaseMachine()
    for phase in path:
        machine.move(phase)
    assert machine.history == [Phase.STARTING, *path]


@pytest.mark.parametrize("start", list(Phase))
def test_every_move_outside_the_diagram_is_refused(start: Phase) -> None:
    for to in Phase:
        machine = PhaseMachine()
        machine.phase = start
        if to in ALLOWED[start] or (to is start and to in (Phase.STOPPING, Phase.FAILED)):
            machine.move(to)
            assert machine.phase is to
        else:
            with pytest.raises(PhaseError):
                machine.move(to)


def test_an_engine_runs_through_its_phases() -> None:
    async def run() -> list[Phase]:
        broker = FakeBroker()
        produce(broker, [("a", 1, 1000), ("b", 2, 2000)])
        member = Member(broker, exactly_once=False)
        phases = [member.engine.phase]
        await member.join()
        phases.append(member.engine.phase)
        assert phases == [Phase.STARTING, Phase.RUNNING]
        await member.run_to_end()
        await member.join()  # a rebalance: revoked, assigned again
        await member.engine.stop()
        return member.engine.phases.history

    assert asyncio.run(run()) == [
        Phase.STARTING,
        Phase.REVOKING,
        Phase.ASSIGNING,
        Phase.RESTORING,
        Phase.RUNNING,
        Phase.REVOKING,
        Phase.ASSIGNING,
        Phase.RESTORING,
        Phase.RUNNING,
        Phase.STOPPING,
    ]


class Boom(Exception):
    pass


def test_a_failure_while_restoring_fails_the_engine() -> None:
    async def run() -> Member:
        broker = FakeBroker()
        member = Member(broker, exactly_once=False)

        async def broken(*args: object) -> object:
            raise Boom("changelog unreadable")

        member.engine.recovery.restore = broken  # type: ignore[method-assign,assignment]
        await member.join()
        return member

    member = asyncio.run(run())
    assert member.engine.phase is Phase.FAILED
    assert isinstance(member.engine.failure, Boom)
    assert member.engine.stopping.is_set()
    with pytest.raises(Boom):
        asyncio.run(member.engine.step())


def test_a_failed_checkpoint_before_a_rebalance_restores_everything() -> None:
    async def run() -> Member:
        broker = FakeBroker()
        produce(broker, [("a", 1, 1000)])
        member = Member(broker, exactly_once=False)
        await member.join()
        await member.engine.step()  # processed, not committed

        async def refused(offsets: object) -> None:
            raise KafkaError("broker gone")

        member.consumer.commit = refused  # type: ignore[method-assign]
        await member.consumer.listener.on_partitions_revoked(all_partitions(broker))
        return member

    member = asyncio.run(run())
    assert member.engine.checkpoints.lost
    assert member.engine.phase is Phase.REVOKING


def test_a_failure_while_running_fails_the_engine() -> None:
    async def run() -> Member:
        broker = FakeBroker()
        produce(broker, [("a", 1, 1000)])
        member = Member(broker, exactly_once=False)
        await member.join()

        async def broken(*args: object, **kwargs: object) -> None:
            raise Boom("a step crashed")

        member.runner.process = broken  # type: ignore[method-assign]
        with pytest.raises(Boom):
            await member.engine.run()
        return member

    member = asyncio.run(run())
    assert member.engine.phase is Phase.FAILED
