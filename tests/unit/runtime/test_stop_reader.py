"""Stopping a consumer: aiokafka's own CancelledError (from the fetch tasks its close
cancels and awaits) stays inside; a cancellation of the stopping task goes on."""

from __future__ import annotations

import asyncio

import pytest

from streams.runtime.seams import stop_reader


class LeakingReader:
    """Stops as aiokafka 0.14's consumer did with a fetch in its retry back-off: the fetch
    task is cancelled and awaited, and its CancelledError escapes `stop()`."""

    def __init__(self) -> None:
        self.stops = 0

    async def stop(self) -> None:
        self.stops += 1
        fetch = asyncio.get_running_loop().create_task(asyncio.sleep(3600))
        await asyncio.sleep(0)
        fetch.cancel()
        await fetch


def test_the_libraries_cancellation_does_not_escape() -> None:
    reader = LeakingReader()
    asyncio.run(stop_reader(reader))  # type: ignore[arg-type]
    assert reader.stops == 1


def test_a_leaking_stop_raises_without_the_shim() -> None:
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(LeakingReader().stop())


def test_cancelling_the_stopping_task_still_cancels_it() -> None:
    class SlowReader:
        async def stop(self) -> None:
            await asyncio.sleep(3600)

    async def main() -> bool:
        stopping = asyncio.create_task(stop_reader(SlowReader()))  # type: ignore[arg-type]
        await asyncio.sleep(0)
        stopping.cancel()
        try:
            await stopping
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(main())
