"""How far a pipeline agent has read its topics: records behind the log end (lag), and
whether it is caught up — the condition for closing idle windows by wall clock."""

from __future__ import annotations

from typing import Any

from .messages import tp


async def caught_up(
    consumer: Any, topic: str, partitions: set[int], next_offsets: dict[int, int]
) -> bool:
    """Every one of `partitions` of `topic` processed to its end: the next offset to
    process (or, for a partition not read since the assignment, where the consumer reads:
    the commit, or later) at the highwater."""
    for partition in partitions:
        where = tp(topic, partition)
        end = consumer.highwater(where)
        done = next_offsets.get(partition)
        if done is None:
            done = await consumer.position(where)
        if end is None or done is None or done < end:
            return False
    return True


def lags(
    consumer: Any, topic: str, partitions: set[int], next_offsets: dict[int, int]
) -> dict[tuple[str, int], int]:
    """Records behind the log end per partition of `topic`."""
    found = {}
    for partition in partitions:
        end = consumer.highwater(tp(topic, partition))
        if end is not None:
            done = next_offsets.get(partition, end)
            found[(topic, partition)] = max(0, end - done)
    return found
