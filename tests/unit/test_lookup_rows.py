"""What a lookup table's feeder makes of each message: a row, a delete, or a dead letter
(issue 22: `[1,2]` reached `enrich` as a row and crashed the worker)."""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.core.records import DeadLetter
from streams.core.state import DictStateStore
from streams.runtime.lookups import TABLE_STEP, _apply


@dataclass
class Message:
    value: bytes | None
    key: bytes | None = None
    partition: int = 2
    offset: int = 41
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def apply(message: Message, store: DictStateStore) -> DeadLetter | None:
    return _apply("users", "users-topic", ("user_id",), store, message)


def test_rows_deletes_and_dead_letters() -> None:
    store = DictStateStore()
    assert apply(Message(b'{"user_id": "a", "tier": 1}'), store) is None
    assert apply(Message(b'{"tier": 2}', key=b"b"), store) is None  # keyed by the message
    assert store.get("a") == {"user_id": "a", "tier": 1}
    assert store.get("b") == {"tier": 2}
    assert apply(Message(None, key=b"a"), store) is None  # a tombstone deletes
    assert store.get("a") is None
    for raw, kind, said in [
        (b"[1,2]", "invalid_json", "expected a JSON object, got an array"),
        (b'"text"', "invalid_json", "expected a JSON object, got a string"),
        (b"{not json", "invalid_json", "invalid JSON"),
        (b'{"tier": 3}', "key", "user_id missing or null"),
    ]:
        letter = apply(Message(raw, key=b"b" if kind != "key" else None), store)
        assert letter is not None, raw
        assert (letter.step, letter.error_type, letter.raw) == (TABLE_STEP, kind, raw)
        assert said in letter.message and "users" in letter.message
        assert (letter.partition, letter.offset) == (2, 41)
    assert store.get("b") == {"tier": 2}  # no bad message replaced the row
