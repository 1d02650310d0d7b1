"""Tombstones become source dead letters alike in both hosts; the status document's lag."""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.runtime.pipeline_status import event_time_lag, split_tombstones


@dataclass
class Message:
    value: bytes | None
    key: bytes | None
    partition: int
    offset: int
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class RecordingOutput:
    def __init__(self) -> None:
        self.added: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []

    def add(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        self.added.append((topic, key, value, headers))


def test_tombstones_become_dead_letters_keeping_key_place_and_headers() -> None:
    messages = [
        Message(b'{"a":1}', b"k1", 0, 10),
        Message(None, b"k\xff", 1, 11, [("h", b"v")]),
        Message(b'{"a":2}', None, 0, 12),
        Message(None, None, 2, 13),
    ]
    output = RecordingOutput()
    kept, letters = split_tombstones(
        messages,
        lambda m: list(m.headers),
        output,  # type: ignore[arg-type]
        "dlq",
        "payments",
    )
    assert [m.offset for m in kept] == [10, 12]
    assert [(d.partition, d.offset, d.key, d.headers) for d in letters] == [
        (1, 11, "k\\xff", [("h", b"v")]),
        (2, 13, None, []),
    ]
    assert {(d.step, d.error_type, d.raw) for d in letters} == {("source", "invalid_json", b"")}
    # queued as they came, the null value and the original key bytes kept
    assert [(t, k, v) for t, k, v, _ in output.added] == [
        ("dlq", b"k\xff", None),
        ("dlq", None, None),
    ]
    headers = dict(output.added[0][3])
    assert headers["h"] == b"v" and headers["sluice.source.topic"] == b"payments"


def test_event_time_lag_is_the_slowest_partitions() -> None:
    assert event_time_lag({}, 5_000) is None
    assert event_time_lag({0: 4_000, 1: 1_000}, 5_000) == 4.0
    assert event_time_lag({0: 9_000}, 5_000) == 0.0  # ahead of the clock: no lag
