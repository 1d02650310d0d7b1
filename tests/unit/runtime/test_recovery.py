"""Recovery (streams.runtime.recovery) on the in-memory broker: the rules record by
record, local copies, the repartition bookkeeping, and a changelog that never ends."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from streams.runtime import recovery as recovery_module
from streams.runtime.changelog import (
    ChangelogStore,
    StateRecoveryError,
    changelog_headers,
    owner_key,
)
from streams.runtime.local_state import LocalState
from streams.runtime.recovery import PartitionReplay, Recovery, first_deliveries
from streams.runtime.sender import SOURCE_OFFSET, SOURCE_PARTITION
from tests.unit.runtime.fakes import FakeBroker, FakeReader

TOPIC = "app-p.w-changelog"


def _write(
    broker: FakeBroker, key: str, value: Any, offset: int, epoch: int, txn: Any = None
) -> None:
    encoded = None if value is None else orjson.dumps(value)
    broker.append(TOPIC, 0, orjson.dumps(key), encoded, changelog_headers(offset, epoch), txn)


def _recovery(
    broker: FakeBroker, local: LocalState | None = None, committed: bool = False
) -> Recovery:
    return Recovery(lambda rc: FakeReader(broker, rc), local, read_committed=committed)


def test_the_rules_record_by_record() -> None:
    store = ChangelogStore("p.w", TOPIC)
    replay = PartitionReplay(store, 0, committed=100)
    replay.apply("c", 3, [])  # no headers (written before there were any): applied
    replay.apply("a", 1, changelog_headers(10, 2))  # applied
    replay.apply("b", 1, changelog_headers(150, 2))  # stale: at or above the commit
    replay.apply("a", 7, changelog_headers(50, 1))  # a zombie: epoch 1 after epoch 2
    assert store.get("a") == 1 and store.get("b") is None and store.get("c") == 3
    assert (replay.stale, replay.zombie, replay.skipped) == (1, 1, {"a", "b"})
    assert replay.take_over(generation=1) == 3  # above every epoch applied
    writes = {(w.key, w.value, w.epoch) for w in store.take_writes()}
    assert writes == {("a", 1, 3), ("b", None, 3), (owner_key(0), 3, 3)}


def test_a_restore_skips_stale_and_zombie_writes_and_compensates_them() -> None:
    broker = FakeBroker()
    _write(broker, "k", {"n": 1}, offset=4, epoch=1)
    _write(broker, owner_key(0), 2, offset=4, epoch=2)  # the new owner's mark
    _write(broker, "k", {"n": 2}, offset=9, epoch=2)
    _write(broker, "k", {"n": 99}, offset=6, epoch=1)  # the zombie wakes up
    _write(broker, "gone", None, offset=9, epoch=2)
    _write(broker, "late", {"n": 5}, offset=20, epoch=2)  # not committed
    store = ChangelogStore("p.w", TOPIC)
    restored = asyncio.run(_recovery(broker).restore([store], {0: 10}, generation=2))
    assert store.get("k") == {"n": 2} and store.get("late") is None
    assert (restored.stale, restored.zombie, restored.records) == (1, 1, 6)
    assert restored.ends[(TOPIC, 0)] == 6
    writes = {w.key: (w.value, w.epoch) for w in store.take_writes()}
    assert writes == {"k": ({"n": 2}, 3), "late": (None, 3), owner_key(0): (3, 3)}


def test_read_committed_restores_skip_aborted_and_stop_at_open_transactions() -> None:
    broker = FakeBroker()
    aborted, pending = broker.next_txn(), broker.next_txn()
    broker.aborted.add(aborted)
    broker.open_txns.add(pending)
    _write(broker, "a", 1, offset=1, epoch=1, txn=aborted)
    _write(broker, "b", 2, offset=1, epoch=1)
    store = ChangelogStore("p.w", TOPIC)
    asyncio.run(_recovery(broker, committed=True).restore([store], {0: 5}, generation=1))
    assert store.get("a") is None and store.get("b") == 2


def test_local_copies_are_loaded_and_the_changelog_read_from_where_they_end(
    tmp_path: Path,
) -> None:
    broker = FakeBroker()
    local = LocalState(tmp_path)
    _write(broker, "old", 1, offset=1, epoch=4)  # already in the local copy
    local.partition("p.w", 0).write([("old", 1), (owner_key(0), 4)], 1)
    _write(broker, "new", 2, offset=2, epoch=4)
    _write(broker, "zombie", 3, offset=2, epoch=3)  # below the local copy's owner mark
    store = ChangelogStore("p.w", TOPIC)
    recovery = _recovery(broker, local)
    asyncio.run(recovery.restore([store], {0: 10}, generation=1))
    assert store.get("old") == 1 and store.get("new") == 2 and store.get("zombie") is None
    entries, offset = local.partition("p.w", 0).load()
    assert dict(entries)["new"] == 2 and offset == 3
    recovery.drop([store], {0})
    assert len(store) == 0
    local.close_all()


def test_nothing_to_restore() -> None:
    restored = asyncio.run(_recovery(FakeBroker()).restore([], {0: 1}, generation=1))
    assert restored.records == 0 and not restored.ends


def test_a_changelog_that_never_reaches_its_end_fails_the_restore(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Stuck(FakeReader):
        def highwater(self, partition: Any) -> int | None:
            return 1_000  # more than there is: never reached

    broker = FakeBroker()
    _write(broker, "a", 1, offset=1, epoch=1)
    monkeypatch.setattr(recovery_module, "RESTORE_IDLE_S", 0.0)
    recovery = Recovery(lambda rc: Stuck(broker, rc), None, read_committed=False)
    with pytest.raises(StateRecoveryError, match="returned nothing"):
        asyncio.run(recovery.restore([ChangelogStore("p.w", TOPIC)], {0: 5}, generation=1))


def _forwarded(partition: int, source_partition: int, offset: int) -> Any:
    headers = [
        (SOURCE_PARTITION, str(source_partition).encode()),
        (SOURCE_OFFSET, str(offset).encode()),
    ]
    return SimpleNamespace(partition=partition, headers=headers)


def test_records_forwarded_twice_are_processed_once() -> None:
    store = ChangelogStore("p.__forwarded", "t")
    first = [_forwarded(0, 1, 5), _forwarded(0, 1, 6), _forwarded(0, 2, 5)]
    assert first_deliveries(store, first) == first
    again = [_forwarded(0, 1, 6), _forwarded(0, 1, 7), SimpleNamespace(partition=0, headers=[])]
    assert first_deliveries(store, again) == again[1:]
    assert store.get("0:1") == 7 and store.get("0:2") == 5
