"""The Faust host's re-key stage (streams.faust.messages.forward): a record without a key
goes to a partition fixed by its source partition, so the copy the re-key agent forwards
again after a restart lands where the first did and the stage skips it by its source
position (a sticky partition put it elsewhere: dead letters twice)."""

from __future__ import annotations

from typing import Any

from streams.faust.messages import forward


class Message:
    def __init__(self, partition: int, offset: int, value: bytes, key: bytes | None = None):
        self.topic, self.partition, self.offset = "payments", partition, offset
        self.key, self.value, self.headers = key, value, None


class Recording:
    def __init__(self) -> None:
        self.added: list[tuple[bytes | None, int | None]] = []

    def add(self, topic: str, key: Any, value: Any, headers: Any, partition: Any = None) -> None:
        self.added.append((key, partition))


def test_keyless_records_follow_their_source_partition_and_keyed_ones_their_key() -> None:
    messages = [
        Message(5, 0, b'{"user_id": "u1"}'),
        Message(5, 1, b'{"no_user": 1}'),
        Message(2, 7, b"not json"),
        Message(3, 2, b"not json", key=b"kept"),
    ]
    for _ in range(2):  # forwarded again: the same places
        output = Recording()
        forward(messages, ("user_id",), "stage", output, 4)  # type: ignore[arg-type]
        assert output.added == [(b"u1", None), (None, 1), (None, 2), (b"kept", None)]
