"""The StateStore over a Faust table (streams.faust.table_stores), on real Faust objects (no
broker: nothing here sends)."""

from __future__ import annotations

from typing import Any

import faust
import pytest

from streams.core.state import bookkeeping_key
from streams.faust.table_stores import FaustState, FaustTableStore


@pytest.fixture
def state() -> FaustState:
    app = faust.App("unit-faust-tables", broker="kafka://127.0.0.1:1")
    active = {0, 1}
    return FaustState(app, 4, lambda: active)


def test_faust_refuses_table_writes_in_a_batch_and_the_store_does_not_need_the_event(
    state: FaustState,
) -> None:
    store = state.store("p.window")
    assert isinstance(store, FaustTableStore)
    # the trap: outside `async for event in stream` there is no current event to take the
    # changelog partition from
    with pytest.raises(TypeError, match="outside of stream iteration"):
        store.table["k"] = 1
    store.set("k", {"n": 1}, 1)
    store.set("k", {"n": 2}, 1)  # one write per key however often it changes
    store.set(bookkeeping_key("watermark", 0), 5)  # its partition is in its name
    store.set("gone", 1, 0)
    store.delete("gone")
    assert store.get("k") == {"n": 2}
    assert store.get("gone") is None
    writes = sorted(store.take_writes(), key=repr)
    assert writes == sorted(
        [("k", {"n": 2}, 1), (bookkeeping_key("watermark", 0), 5, 0), ("gone", None, 0)],
        key=repr,
    )
    assert store.take_writes() == []


def test_keys_are_those_of_assigned_partitions(state: FaustState) -> None:
    store = state.store("p.dedupe")
    assert isinstance(store, FaustTableStore)
    store.set("mine", 1, 0)
    store.set("also-mine", 1, 1)
    store.set("revoked", 1, 3)  # written before a rebalance took partition 3 away
    # recovered from the changelog as a standby replica of partition 2
    data: Any = store.table.data
    data.data["standby"] = 1
    data._key_partition["standby"] = 2
    assert sorted(store.keys()) == ["also-mine", "mine"]
    assert len(store) == 2


def test_each_step_gets_a_table_named_for_it(state: FaustState) -> None:
    first = state.store("pay.window")
    assert state.store("pay.window") is first
    assert isinstance(first, FaustTableStore)
    assert first.table.name == "pay.window"
    assert first.table.partitions == 4
    lookup = state.lookup("pay.tables.users")
    lookup.set("u1", {"tier": "gold"})
    assert state.lookup("pay.tables.users").get("u1") == {"tier": "gold"}


class _Message:
    def __init__(self, partition: int, offset: int, source: tuple[int, int] | None = None):
        self.partition = partition
        self.offset = offset
        self.headers = (
            []
            if source is None
            else [
                ("sluice.source.partition", str(source[0]).encode()),
                ("sluice.source.offset", str(source[1]).encode()),
            ]
        )


def test_records_applied_before_are_skipped_per_input_and_source_partition(
    state: FaustState,
) -> None:
    """The offsets table (streams.faust.applied_offsets): what a worker applied is skipped when
    Faust hands it over again (a restart from an older commit, a seek back), per input
    partition, and behind a repartition topic per source partition (whose records may
    interleave with another source partition's)."""
    from streams.faust.applied_offsets import AgentCheckpoint

    offsets = state.store("p.__offsets")
    assert isinstance(offsets, FaustTableStore)
    direct = AgentCheckpoint("p", state, offsets, rekeyed=False)
    first = [_Message(0, o) for o in range(5)] + [_Message(1, 0)]
    assert direct.first_deliveries(first) == first
    again = [_Message(0, o) for o in range(3, 8)]
    assert [m.offset for m in direct.first_deliveries(again)] == [5, 6, 7]
    # what the offsets table would hold after a checkpoint: a new worker skips the same
    offsets.set("0", 7, 0)
    restarted = AgentCheckpoint("p", state, offsets, rekeyed=False)
    assert [m.offset for m in restarted.first_deliveries([*again, _Message(0, 8)])] == [8]

    rekeyed = AgentCheckpoint("p", state, state.store("q.__offsets"), rekeyed=True)  # type: ignore[arg-type]
    stage = [_Message(2, 0, (0, 10)), _Message(2, 1, (1, 4)), _Message(2, 2, (0, 11))]
    assert rekeyed.first_deliveries(stage) == stage
    # the re-key agent forwarded source records again after a restart: skipped by their
    # source offsets, whatever their new repartition offsets
    forwarded_again = [_Message(2, 3, (0, 11)), _Message(2, 4, (1, 4)), _Message(2, 5, (0, 12))]
    assert [m.offset for m in rekeyed.first_deliveries(forwarded_again)] == [5]
