"""The buffer between Faust's conductor and a batch-taking task (pure asyncio)."""

from __future__ import annotations

import asyncio
import time

from streams.runtime.batch_channel import BatchQueue


async def test_take_returns_a_full_batch_at_once_and_keeps_the_rest_in_order() -> None:
    queue = BatchQueue(maxsize=100)
    for i in range(25):
        queue.put_nowait_enhanced(i)
    began = time.monotonic()
    first = await queue.take(10, within=30)
    second = await queue.take(10, within=30)
    assert first == list(range(10)) and second == list(range(10, 20))
    assert time.monotonic() - began < 1, "a full batch does not wait for `within`"
    assert len(queue) == 5


async def test_a_partial_batch_goes_after_within() -> None:
    queue = BatchQueue(maxsize=100)
    queue.put_nowait_enhanced(1)
    began = time.monotonic()
    assert await queue.take(10, within=0.2) == [1]
    assert 0.15 <= time.monotonic() - began < 2


async def test_take_waits_for_the_first_event_and_a_completed_batch_ends_the_wait() -> None:
    queue = BatchQueue(maxsize=100)

    async def deliver() -> None:
        await asyncio.sleep(0.1)
        for i in range(5):
            queue.put_nowait_enhanced(i)

    began = time.monotonic()
    task = asyncio.create_task(deliver())
    assert await queue.take(5, within=30) == [0, 1, 2, 3, 4]
    await task
    assert 0.05 <= time.monotonic() - began < 2


async def test_put_on_a_full_queue_waits_for_room() -> None:
    queue = BatchQueue(maxsize=3)
    for i in range(3):
        queue.put_nowait_enhanced(i)
    assert queue.full()
    blocked = asyncio.create_task(queue.put(3))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    assert await queue.take(2, within=0) == [0, 1]
    await asyncio.wait_for(blocked, 2)
    assert await queue.take(10, within=0) == [2, 3]


async def test_clear_drops_what_is_buffered() -> None:
    queue = BatchQueue(maxsize=10)
    for i in range(10):
        queue.put_nowait_enhanced(i)
    queue.clear()
    assert len(queue) == 0 and not queue.full()
    queue.put_nowait_enhanced(99)
    assert await queue.take(10, within=0) == [99]
