"""Store partitions (streams.runtime.changelog): the StateStore interface over a
partition per changelog partition; exact ownership by pipeline."""

from __future__ import annotations

from streams.core.state import StateStore, bookkeeping_key
from streams.runtime.changelog import ChangelogStore, WorkerState, marks_in, owner_key


def test_a_store_keeps_each_key_in_its_partition() -> None:
    store = ChangelogStore("p.w", "t")
    assert isinstance(store, StateStore)
    store.set("a", 1, 0)
    store.set("b", 2, 1)
    store.set("b", 3)  # where it is
    store.set(bookkeeping_key("watermark", 2), 9)  # the partition its name says
    store.set("c", 4)  # no partition known: 0
    assert sorted(store.keys()) == sorted(["a", "b", "c", bookkeeping_key("watermark", 2)])
    assert len(store) == 4 and store.get("b") == 3 and store.get("zz", "none") == "none"
    writes = {(w.key, w.value, w.partition) for w in store.take_writes()}
    assert writes == {("a", 1, 0), ("b", 3, 1), ("c", 4, 0), ("\x00watermark:2", 9, 2)}
    assert not store.has_writes()
    store.delete("a")
    store.delete("never")
    assert [(w.key, w.value) for w in store.take_writes()] == [("a", None), ("never", None)]


def test_a_key_moved_to_another_partition_lives_in_one() -> None:
    store = ChangelogStore("p.w", "t")
    store.set("k", 1, 0)
    store.set("k", 2, 3)
    store.drop_partitions({0})
    assert store.get("k") == 2
    store.delete("k", 3)
    assert store.get("k") is None and len(store) == 0


def test_dropping_a_partition_touches_only_its_keys() -> None:
    store = ChangelogStore("p.w", "t")
    for i in range(8):
        store.set(f"k{i}", i, i % 4)
    store.take_writes()
    store.drop_partitions({1, 3, 7})
    assert sorted(store.keys()) == ["k0", "k2", "k4", "k6"]
    assert set(store.partitions) == {0, 2}


def test_restored_values_and_compensations() -> None:
    store = ChangelogStore("p.w", "t")
    store.load("a", 1, 2)
    store.load("b", 1, 2)
    store.load("b", None, 2)
    assert not store.has_writes() and store.get("a") == 1 and store.get("b") is None
    store.compensate("a", 2)
    store.compensate("b", 2)
    writes = sorted((w.key, w.value, w.partition) for w in store.take_writes())
    assert writes == [("a", 1, 2), ("b", None, 2)]
    assert "1 keys" in repr(store)


def test_ownership_is_by_the_pipeline_that_made_the_store_not_by_prefix() -> None:
    state = WorkerState("app")
    a, ab = state.for_pipeline("a"), state.for_pipeline("a.b")
    mine = a.store("a.b.window")  # a name that looks like the other pipeline's
    theirs = ab.store("a.b.count")
    a.store("a.b.window")  # made twice: owned once
    assert state.stores_of("a") == [mine]
    assert state.stores_of("a.b") == [theirs]
    assert state.stores_of("nobody") == []
    assert a.lookup("a.tables.t") is state.lookup("a.tables.t")
    assert state.store("x.y") is state.stores["x.y"]
    assert list(state.lookups_of("a", ["t"])) == ["t"]


def test_headers_and_owner_keys() -> None:
    assert marks_in([("sluice.offset", b"12"), ("sluice.generation", b"3")]) == (12, 3)
    assert marks_in([("sluice.offset", b"x"), ("sluice.generation", b"y")]) == (None, -1)
    assert marks_in([("other", b"1")]) == (None, -1)
    assert owner_key(4) == bookkeeping_key("owner", 4)
