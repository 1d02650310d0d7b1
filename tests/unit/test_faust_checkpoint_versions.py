"""State records that carry their checkpoint (streams.faust.checkpoint_versions): a
checkpoint's state written without its `__offsets` write — a kill between the two — is
rolled back at the next recovery, so the records the next owner applies again count once.
On real Faust tables (no broker): a recording output stands for the changelogs, and a
"recovery" loads what reached them into a fresh app's tables, as Faust's does."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import faust
import orjson
import pytest

from streams.core.jsonl import dumps
from streams.faust.applied_offsets import AgentCheckpoint
from streams.faust.checkpoint_versions import CHECKPOINT, CheckpointVersions
from streams.faust.table_stores import FaustState, FaustTableStore

ACTIVE = {0, 1}


def decoded(record: bytes | None) -> Any:
    return None if record is None else orjson.loads(record)


def test_a_value_is_kept_once_its_checkpoint_is_committed_and_rolled_back_before() -> None:
    versions = CheckpointVersions()
    first = versions.records([("a", {"n": 1}, 0), ("gone", 5, 1)], {0: 1, 1: 1})
    versions.commit()
    second = versions.records([("a", {"n": 2}, 0), ("b", 7, 0), ("gone", None, 1)], {0: 2, 1: 2})
    # the changelogs as a recovery reads them (the latest record per key)
    latest = {orjson.loads(k): decoded(v) for k, v, _ in [*first, *second]}
    assert latest["a"] == {CHECKPOINT: 2, "v": {"n": 2}, "p": {"n": 1}}
    assert latest["gone"] == {CHECKPOINT: 2, "p": 5}  # deleted: no "v"
    partitions = {"a": 0, "b": 0, "gone": 1}

    def settled(committed: dict[int, int]) -> tuple[dict[str, Any], list[tuple[str, int]]]:
        data = dict(latest)
        rolled, seen = CheckpointVersions().settle(
            data, partitions, ACTIVE, lambda p: committed.get(p, 0)
        )
        assert seen == {0: 2, 1: 2}
        return data, rolled

    # the second checkpoint's offsets written on both partitions: its values stand
    assert settled({0: 2, 1: 2}) == ({"a": {"n": 2}, "b": 7}, [])
    # written on neither: the first checkpoint's values, the new key gone, the deleted back
    data, rolled = settled({0: 1, 1: 1})
    assert data == {"a": {"n": 1}, "gone": 5}
    assert sorted(rolled) == [("a", 0), ("b", 0), ("gone", 1)]
    # per partition: partition 1's offsets landed, partition 0's did not
    data, rolled = settled({0: 1, 1: 2})
    assert data == {"a": {"n": 1}}
    assert sorted(rolled) == [("a", 0), ("b", 0)]


def test_a_committed_deletion_becomes_a_tombstone_at_the_next_checkpoint() -> None:
    versions = CheckpointVersions()
    versions.records([("k", 1, 0)], {0: 1})
    versions.commit()
    versions.records([("k", None, 0)], {0: 2})
    versions.commit()
    assert versions.records([], {}) == [(dumps("k"), None, 0)]
    versions.commit()
    assert versions.records([], {}) == []  # once
    # written again before its tombstone went out: no tombstone after the new value
    versions.records([("j", 1, 0)], {0: 3})
    versions.commit()
    versions.records([("j", None, 0)], {0: 4})
    versions.commit()
    assert [k for k, v, _ in versions.records([("j", 2, 0)], {0: 5})] == [dumps("j")]


def test_values_of_other_partitions_and_plain_values_are_left_as_they_are() -> None:
    standby = {CHECKPOINT: 9, "v": 1}
    data: dict[Any, Any] = {"standby": dict(standby), "plain": [1, 2]}
    versions = CheckpointVersions()
    rolled, seen = versions.settle(data, {"standby": 3, "plain": 0}, ACTIVE, lambda p: 0)
    assert (rolled, seen) == ([], {})
    assert data == {"standby": standby, "plain": [1, 2]}  # settled once its partition is ours
    assert versions.committed_values == {"plain": dumps([1, 2])}


class RecordingOutput:
    """The changelogs: every record added, per topic, in order; `drain` delivers them
    unless the test's kill came first."""

    def __init__(self) -> None:
        self.delivered: dict[str, list[tuple[bytes, bytes | None, int]]] = {}
        self.queued: list[tuple[str, bytes, bytes | None, int]] = []

    def add(
        self, topic: str, key: bytes, value: bytes | None, headers: Any, partition: int
    ) -> None:
        self.queued.append((topic, key, value, partition))

    async def drain(self) -> None:
        for topic, key, value, partition in self.queued:
            self.delivered.setdefault(topic, []).append((key, value, partition))
        self.queued = []


class Killed(Exception):
    """The worker died at the fault point."""


def a_pipeline(worker: str) -> tuple[FaustState, AgentCheckpoint, FaustTableStore]:
    """One worker's app (the same app id: the same changelog topics)."""
    app = faust.App("unit-versions", broker="kafka://127.0.0.1:1")
    state = FaustState(app, 4, lambda: ACTIVE)
    offsets = state.store("p.__offsets")
    counts = state.store("p.window")
    assert isinstance(offsets, FaustTableStore) and isinstance(counts, FaustTableStore)
    return state, AgentCheckpoint("p", state, offsets, rekeyed=False), counts


def recovered(worker: str, changelogs: RecordingOutput) -> tuple[AgentCheckpoint, FaustTableStore]:
    """A new owner's tables read from the changelogs (the latest record per key), as a
    Faust memory store recovers them, then settled."""
    state, checkpoint, counts = a_pipeline(worker)
    for store in state.stores.values():
        topic = store.table.changelog_topic.get_topic_name()
        data = store.table.data.data
        for key, value, partition in changelogs.delivered.get(topic, []):
            k = orjson.loads(key)
            if value is None:
                data.pop(k, None)
            else:
                data[k] = orjson.loads(value)
            store.table.data._key_partition[k] = partition
    checkpoint.settle()
    return checkpoint, counts


class _Message:
    def __init__(self, partition: int, offset: int) -> None:
        self.partition, self.offset, self.headers = partition, offset, None


def apply(checkpoint: AgentCheckpoint, counts: FaustTableStore, offsets: range) -> None:
    """A counting step over records of partition 0: what the checkpoint has not applied."""
    for message in checkpoint.first_deliveries([_Message(0, o) for o in offsets]):
        counts.set("count", (counts.get("count") or 0) + 1, message.partition)
        counts.set(f"seen:{message.offset}", True, message.partition)


def run(checkpoint: AgentCheckpoint, output: RecordingOutput, kill: Callable[[str], bool]) -> None:
    from streams.runtime import faults

    def reached(point: str, scope: str | None = None) -> None:
        if kill(point):
            output.queued = []
            raise Killed(point)

    original = faults.reached
    faults.reached = reached
    try:
        asyncio.run(checkpoint.run(output, lambda: None))  # type: ignore[arg-type]
    finally:
        faults.reached = original


KILL_POINTS = ["faust.checkpoint.after_state", "faust.checkpoint.after_offsets"]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_records_applied_again_after_a_kill_inside_a_checkpoint_count_once(point: str) -> None:
    changelogs = RecordingOutput()
    _, checkpoint, counts = a_pipeline("one")
    apply(checkpoint, counts, range(0, 10))
    run(checkpoint, changelogs, lambda p: False)
    apply(checkpoint, counts, range(10, 25))
    with pytest.raises(Killed):
        run(checkpoint, changelogs, lambda p: p == point)
    # the next owner: handed records 10.. again (never acked), applies what it must
    owner, counts = recovered("two", changelogs)
    apply(owner, counts, range(10, 30))
    assert counts.get("count") == 30
    assert sorted(int(k.split(":")[1]) for k in counts.keys() if k.startswith("seen:")) == list(
        range(30)
    )
    run(owner, changelogs, lambda p: False)
    # and what it committed recovers to the same, whoever reads it next
    third, counts = recovered("three", changelogs)
    assert counts.get("count") == 30
    apply(third, counts, range(0, 30))
    assert counts.get("count") == 30


def test_a_rolled_back_key_is_written_again_so_a_later_commit_cannot_revive_it() -> None:
    changelogs = RecordingOutput()
    _, checkpoint, counts = a_pipeline("one")
    apply(checkpoint, counts, range(0, 5))
    run(checkpoint, changelogs, lambda p: False)
    apply(checkpoint, counts, range(5, 8))
    with pytest.raises(Killed):
        run(checkpoint, changelogs, lambda p: p == "faust.checkpoint.after_state")
    owner, counts = recovered("two", changelogs)
    assert counts.get("count") == 5 and counts.get("seen:6") is None
    # the new owner commits a checkpoint touching nothing the dead one wrote but the
    # partition: the uncommitted records are superseded, not revived by the higher number
    run(owner, changelogs, lambda p: False)
    _, counts = recovered("three", changelogs)
    assert counts.get("count") == 5 and counts.get("seen:6") is None


def test_a_key_changed_since_the_last_checkpoint_keeps_its_committed_value() -> None:
    versions = CheckpointVersions()
    versions.records([("k", 1, 0)], {0: 1})
    versions.commit()
    data: dict[Any, Any] = {"k": 2}  # changed live, not checkpointed yet
    versions.settle(data, {"k": 0}, ACTIVE, lambda p: 1, changed={"k"})
    assert data == {"k": 2}
    # its next record still says what to roll back to: the committed 1, not the live 2
    [(_, record, _)] = versions.records([("k", 3, 0)], {0: 2})
    assert decoded(record) == {CHECKPOINT: 2, "v": 3, "p": 1}
