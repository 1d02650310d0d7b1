"""Faust delivers a topic's events into a list; a task takes them a batch at a time.

A Faust agent over `stream.take_events()` pays for the stream machinery per record: a
queue get, the stream's processors, the take buffer, events and acks handed around over
several event-loop turns — about 60 µs a record, which caps a worker near 17k records/s
before any work (bench/README.md). Here the conductor's delivery appends the event to a
`BatchQueue` (it stands in for the channel's queue, same interface), and one task per
stage takes whole batches and acks each event once its batch is done. Group membership,
assignment, offset commits and rebalance handling stay Faust's: the queue is registered
with Faust's flow control, which clears it on rebalances as it clears a stream's queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import faust


class BatchQueue:
    """The buffer between Faust's conductor and one batch-taking task."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: list[Any] = []
        self._ready = asyncio.Event()  # not empty
        self._batch = asyncio.Event()  # a whole batch is waiting
        self._space = asyncio.Event()  # not full
        self._space.set()
        self._batch_size = maxsize

    def __len__(self) -> int:
        return len(self._items)

    def full(self) -> bool:
        return len(self._items) >= self.maxsize

    def put_nowait_enhanced(
        self,
        value: Any,
        *,
        on_pressure_high: Callable[[], None] | None = None,
        on_pressure_drop: Callable[[], None] | None = None,
    ) -> None:
        """The conductor's delivery (the signature of Faust's FlowControlQueue)."""
        items = self._items
        items.append(value)
        if len(items) == 1:
            self._ready.set()
        if len(items) >= self._batch_size:
            self._batch.set()
        if len(items) >= self.maxsize:
            self._space.clear()

    async def put(self, value: Any) -> None:
        """The conductor's delivery when the queue was full: wait for room."""
        while self.full():
            await self._space.wait()
        self.put_nowait_enhanced(value)

    def clear(self) -> None:
        """Called by Faust's flow control on rebalances: buffered events are dropped,
        unacked, and delivered again from the committed offset."""
        self._items = []
        self._ready.clear()
        self._batch.clear()
        self._space.set()

    async def take(self, most: int, within: float) -> list[Any]:
        """The next batch: waits for a first event, then up to `within` seconds more
        for `most` of them."""
        self._batch_size = most
        await self._ready.wait()
        if len(self._items) < most:
            self._batch.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._batch.wait(), within)
        taken = self._items[:most]
        del self._items[:most]
        if not self._items:
            self._ready.clear()
        if len(self._items) < most:
            self._batch.clear()
        self._space.set()
        return taken


def batch_channel(app: faust.App, topic: Any, maxsize: int) -> BatchQueue:
    """Subscribe `topic` with a BatchQueue as its buffer; iterate it with `take`."""
    queue = BatchQueue(maxsize)
    channel = topic.clone_using_queue(queue)
    app.topics.add(channel)
    # duck-typed: flow control only ever calls `clear()` on the queues it manages
    app.flow_control.manage_queue(queue)  # type: ignore[arg-type]
    return queue


def ack(events: list[Any]) -> None:
    """Mark events processed: Faust commits offsets up to the last contiguous ack."""
    for event in events:
        event.ack()
