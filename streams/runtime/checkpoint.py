"""The checkpoint: when what a worker did becomes what the group has done.

    prepare ─► outputs acknowledged ─► state written ─► offsets committed ─► complete
    (begin the transaction;   (results and      (each changed key    (exactly_once: the
     the member still in       re-keyed records  once, to its         offsets and the
     its generation?)          on the broker)    changelog, acked)    transaction commit)

Why this order (at-least-once): a crash before the offsets are committed leaves them
where they were, and the next owner processes those records again — so every output
must be on the broker before its input counts as done (else it is lost), and the state
they produced must be in the changelog before the offsets (else a restore lacks it).
State written by a checkpoint whose commit never came is *stale*: each changelog record
carries the last input offset it includes, and a restore skips records at or above the
committed offset and writes the key's restored value again (a compensation,
streams.runtime.changelog); records of a member that had lost its partitions are skipped
by their owner epoch (streams.runtime.recovery). With exactly_once all of it is one
transaction: nothing is visible to read_committed readers until the commit.

A member that is out of the group (its generation reset: a long pause, a missed
heartbeat) writes nothing: no state, no offsets; its state is restored at its next
assignment (`lost`). Every transaction call of the worker is here; the engine asks.

Fencing (exactly_once). A check of the generation before the commit is check-then-act: a
worker paused between it and `commit_transaction` (a GC pause, a frozen VM) wakes after
another member took its partitions and commits its transaction anyway — its results a
second time, the group's offsets set back. aiokafka 0.14 sends TxnOffsetCommit v0 (no
generation, no member id: KIP-447 is out of reach), so the broker is made to refuse it by
transactional id: each assignment gets a transactional id never used before (`take_over`
retires the old producer and starts a new one), every offset this worker commits carries
that id as its metadata (`mark_owner` right after the assignment, a plain OffsetCommit that
only the generation's owner can write; then each transaction's offsets), and a new owner,
before it reads where to start, starts a producer with every other id found on its
partitions' offsets: its InitProducerId bumps that id's epoch, which aborts the open
transaction of a zombie (or waits for a commit already under way, whose offsets are then
read). The zombie's next transactional call is refused (ProducerFenced): it has lost its
partitions (`fenced`) and restores at its next assignment with a fresh id. Retired ids
are never used again, so a fence never hurts a live worker. The broker refuses the same
way, with no other member involved, when it aborts a transaction that outlived
transaction_timeout_ms (a broker outage longer than that): the member is still in its
generation and no rebalance would come, so `fenced` asks the group for one.
`faults.reached` marks the named points where tests pause or kill a worker.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiokafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    InvalidProducerEpoch,
    KafkaError,
    ProducerFenced,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from aiokafka.structs import TopicPartition

from streams.runtime import faults
from streams.runtime.changelog import (
    ChangelogStore,
    Write,
    changelog_headers,
    encode_key,
    encode_value,
)
from streams.runtime.local_state import LocalState
from streams.runtime.output import Output
from streams.runtime.seams import (
    GroupConsumer,
    ProducerLike,
    committed_owners,
    read_fatal_error,
    request_rejoin,
)

log = logging.getLogger("sluice.engine")

REBALANCE_ERRORS = (
    CommitFailedError,
    IllegalGenerationError,
    InvalidProducerEpoch,
    ProducerFenced,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
# a newer producer of the transactional id exists: another member fenced this one
FENCED = (ProducerFenced, InvalidProducerEpoch)
# exactly_once: the transactional producer failing this many times in a row, with no
# checkpoint completed between, is not an outage to wait out but a crash (exit 70)
MAX_PRODUCER_FAILURES = 5
NewProducer = Callable[[str], Awaitable[ProducerLike]]


def _nowhere(point: str) -> None:
    return None


class Step(enum.Enum):
    """Where a checkpoint is (the last step it finished)."""

    PREPARED = "prepared"
    OUTPUTS_ACKNOWLEDGED = "outputs acknowledged"
    STATE_WRITTEN = "state written"
    COMMITTED = "offsets committed"
    COMPLETE = "complete"


class Checkpoint:
    """Commits a worker's progress (see the module docstring)."""

    def __init__(
        self,
        consumer: GroupConsumer,
        producer: ProducerLike,
        output: Output,
        *,
        group: str,
        exactly_once: bool,
        generation: Callable[[], int],
        local: LocalState | None = None,
        reached: Callable[[str], None] | None = None,
        new_producer: NewProducer | None = None,
        transactional_id: str = "",
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.output = output
        self.group = group
        self.exactly_once = exactly_once
        self.current_generation = generation
        self.local = local
        self.reached = reached or faults.reached
        self.generation = -1  # the generation of the assignment being worked on
        self.in_transaction = False
        self.lost = False  # out of the group: memory holds more than the commit
        self.committed: dict[TopicPartition, int] = {}
        self.step = Step.COMPLETE
        self.new_producer = new_producer  # exactly_once: a started producer of an id
        # `<app_id>-<uuid>-<n>`: n counts this worker's assignments (0: before the first)
        self.transactional_base = transactional_id.rpartition("-")[0]
        self.transactional_id = transactional_id  # the current one (the offsets' metadata)
        self.retired: set[str] = set()  # this worker's earlier ids: never fenced by it
        self.dead: set[str] = set()  # ids whose producer failed: fenced at the next assignment
        self.producer_failures = 0  # in a row, without a checkpoint completed
        self._ids = itertools.count(1)

    # --- transactions ---------------------------------------------------------------

    async def begin(self) -> None:
        """Work that writes (a batch, an idle flush) starts here: with exactly_once,
        inside a transaction."""
        if self.exactly_once and not self.in_transaction:
            await self.producer.begin_transaction()
            self.in_transaction = True

    async def abort(self) -> None:
        if self.in_transaction:
            self.in_transaction = False
            await self.producer.abort_transaction()

    def member(self) -> bool:
        """Still in the generation of the assignment (as far as the client knows)."""
        return self.current_generation() == self.generation

    # --- the checkpoint ---------------------------------------------------------------

    async def run(
        self,
        stores: Mapping[ChangelogStore, str],
        positions: Mapping[TopicPartition, int],
        *,
        persist: Callable[[], None] = lambda: None,
    ) -> bool:
        """Outputs, then state changes, then offsets. `stores`: each store and the topic
        whose partitions it follows; `positions`: the next offset to process per owned
        partition. False: not committed (the member is out of the group, or fenced)."""
        try:
            done = await self._run(stores, positions, persist)
        except FENCED as exc:
            self.fenced(exc)
            return False
        except KafkaError as exc:
            self.failed(exc)
            return False
        if done:
            self.producer_failures = 0
        return done

    async def _run(
        self,
        stores: Mapping[ChangelogStore, str],
        positions: Mapping[TopicPartition, int],
        persist: Callable[[], None],
    ) -> bool:
        self.step = Step.PREPARED
        offsets = {tp: o for tp, o in positions.items() if self.committed.get(tp) != o}
        # the named points count checkpoints that carry progress (an idle one does not)
        reached = self.reached if offsets else _nowhere
        await self.begin()
        if not self.member():
            await self._lose("no longer in the group's generation")
            return False
        await self.output.drain()
        self.step = Step.OUTPUTS_ACKNOWLEDGED
        reached("checkpoint.after_outputs")
        persist()
        writes = self.queue_writes(stores, positions)
        await self.output.drain()
        self.step = Step.STATE_WRITTEN
        reached("checkpoint.after_changelog")
        if not await self._commit(offsets, reached):
            return False
        self.step = Step.COMMITTED
        reached("checkpoint.after_commit")
        self.committed.update(offsets)
        self.keep_locally(writes)
        self.step = Step.COMPLETE
        return True

    async def write_restored(
        self, stores: Mapping[ChangelogStore, str], positions: Mapping[TopicPartition, int]
    ) -> None:
        """After a restore, before any record: compensations and owner marks written (and
        committed, with exactly_once; the offsets are where they were)."""
        if self.lost or not any(store.has_writes() for store in stores):
            return
        try:
            await self.begin()
            writes = self.queue_writes(stores, positions)
            await self.output.drain()
            if self.exactly_once:
                self.in_transaction = False
                await self.producer.commit_transaction()
        except FENCED as exc:  # the partitions moved on again meanwhile
            self.fenced(exc)
            return
        except KafkaError as exc:
            self.failed(exc)
            return
        self.keep_locally(writes)

    def queue_writes(
        self, stores: Mapping[ChangelogStore, str], positions: Mapping[TopicPartition, int]
    ) -> list[Write]:
        """Every store's changes since the last checkpoint, each key once, with the last
        input offset of its partition that the state includes and the owner epoch."""
        add = self.output.add
        generation = self.generation
        queued: list[Write] = []
        for store, topic in stores.items():
            writes = store.take_writes()
            for write in writes:
                processed = positions.get(TopicPartition(topic, write.partition), 0) - 1
                epoch = write.epoch if write.epoch >= 0 else generation
                add(
                    store.topic,
                    encode_key(write.key),
                    encode_value(write.value),
                    changelog_headers(processed, epoch),
                    write.partition,
                )
            queued += writes
        return queued

    async def _commit(
        self, offsets: dict[TopicPartition, int], reached: Callable[[str], None]
    ) -> bool:
        if self.exactly_once:
            if not self.member():
                # the group moved on without this worker: what it did since is another
                # member's to do again — abort, restore everything later
                await self._lose("no longer in the group's generation")
                return False
            if offsets:
                reached("checkpoint.inside_send_offsets")
                owner = self.transactional_id  # the offsets name their owner (fencing)
                marked = {tp: (offset, owner) for tp, offset in offsets.items()}
                await self.producer.send_offsets_to_transaction(marked, self.group)
            reached("checkpoint.before_commit")
            self.in_transaction = False
            await self.producer.commit_transaction()
        elif offsets:
            try:
                await self.consumer.commit(offsets)
            except REBALANCE_ERRORS as exc:
                await self._lose(f"offset commit refused ({exc})")
                return False
        return True

    async def _lose(self, why: str) -> None:
        """Out of the group: nothing more is written; every partition is restored at the
        next assignment (the next owner processes again what this one did)."""
        self.lost = True
        await self.abort()
        for_partitions = "transaction aborted, " if self.exactly_once else ""
        log.warning("%s: %sstate will be restored", why, for_partitions)

    def broke(self, exc: KafkaError) -> None:
        """A Kafka error from the sends of a batch or an idle flush."""
        if isinstance(exc, FENCED):
            self.fenced(exc)
        else:
            self.failed(exc)

    def failed(self, exc: KafkaError) -> None:
        """A Kafka error from the work of a checkpoint or a batch. exactly_once: the
        transactional producer is dead — aiokafka's sender gives up for good when it cannot
        reach the transaction coordinator (`Unexpected error during batch delivery` after
        a KafkaConnectionError in its coordinator lookup: a broker outage, CI 2026-12-07,
        where the worker exited 70). Treated as a fence: nothing of the transaction
        counts, the group is rejoined, and the next assignment starts a new producer and
        fences this one's id, so that the broker aborts its open transaction at once
        instead of after transaction_timeout_ms. At least once, or the fifth failure in a
        row: the worker's crash."""
        self.producer_failures += 1
        if not self.exactly_once or self.producer_failures >= MAX_PRODUCER_FAILURES:
            raise exc
        self.dead.add(self.transactional_id)
        self._give_up_transaction()
        log.warning(
            "the transactional producer failed (%r; %d in a row): transaction %s given up, "
            "rejoining the group, state will be restored at the assignment",
            exc,
            self.producer_failures,
            self.transactional_id,
        )

    def _give_up_transaction(self) -> None:
        self.lost = True
        self.in_transaction = False
        self.output.discard()
        read_fatal_error(self.producer)
        request_rejoin(self.consumer)

    def fenced(self, exc: BaseException) -> None:
        """exactly_once: the broker aborted this worker's transaction and bumped its
        producer's epoch — another member started a producer of its transactional id (it
        took the partitions while this one was paused), or the transaction stayed open
        past its timeout (a broker outage, a long pause). Nothing of it counts; the
        producer is dead. The next assignment starts a new one and restores every
        partition, so one is asked for: after a timeout the member is still in its
        generation and no rebalance would ever come (measured: a 20 s broker outage left
        a worker ready but dropping every batch until its stall alarm, issue 10)."""
        self._give_up_transaction()
        log.warning(
            "fenced (%r): the broker aborted this worker's transaction (transactional id "
            "%s): another worker took its partitions, or the transaction outlived "
            "transaction_timeout_ms; rejoining the group, state will be restored at the "
            "assignment",
            exc,
            self.transactional_id,
        )

    # --- fencing (exactly_once; see the module docstring) ------------------------------

    async def take_over(self, partitions: Iterable[TopicPartition]) -> None:
        """At an assignment, before the committed offsets are read: every other worker's
        transactional id found on `partitions`' offsets fenced, then this worker's producer
        replaced by one with a new id."""
        assert self.new_producer is not None, "exactly_once needs a producer factory"
        owners = await committed_owners(self.consumer, partitions)
        mine = self.retired | {self.transactional_id}
        ours = f"{self.group}-"  # metadata written by other tools names no producer of ours
        others = {o for _, o in owners.values() if o.startswith(ours)} - mine
        for owner in sorted(others | self.dead):  # this worker's dead ids: their
            # open transactions aborted now, not after transaction_timeout_ms
            began = time.monotonic()
            fence = await self.new_producer(owner)  # InitProducerId: the epoch bumped
            await fence.stop()
            took = (time.monotonic() - began) * 1000
            log.info("fenced transactional id %s (a previous owner's) in %.0f ms", owner, took)
        await self.abort_quietly()
        old = self.producer
        read_fatal_error(old)
        with contextlib.suppress(Exception):  # a fenced producer may fail to stop cleanly
            await old.stop()
        self.dead.clear()
        self.retired.add(self.transactional_id)
        self.transactional_id = f"{self.transactional_base}-{next(self._ids)}"
        self.replace_producer(await self.new_producer(self.transactional_id))

    def replace_producer(self, producer: ProducerLike) -> None:
        """Work with `producer` from now on (what the output held is dropped: the revoke
        checkpoint committed or aborted it)."""
        self.producer = producer
        self.output.discard()
        self.output.producer = producer

    async def abort_quietly(self) -> None:
        with contextlib.suppress(Exception):  # lost or fenced: nothing of it counts
            await self.abort()
        self.in_transaction = False

    async def mark_owner(self, starts: Mapping[TopicPartition, int]) -> None:
        """Right after an assignment: the partitions' start offsets committed with this
        worker's transactional id as metadata (an OffsetCommit carries the generation, so
        only this generation's owner can write it). Refused: the member is out again."""
        owner = self.transactional_id
        try:
            await self.consumer.commit({tp: (o, owner) for tp, o in starts.items()})
        except REBALANCE_ERRORS as exc:
            await self._lose(f"owner mark refused ({exc})")

    def keep_locally(self, writes: Iterable[Write]) -> None:
        """rocksdb://: a committed checkpoint's changes into the local copies, with the
        changelog offset they reach (see streams.runtime.local_state)."""
        if self.local is None:
            return
        by_partition: dict[tuple[ChangelogStore, int], list[tuple[str, Any]]] = {}
        for write in writes:
            by_partition.setdefault((write.store, write.partition), []).append(
                (write.key, write.value)
            )
        acked = self.output.acked
        for (store, partition), changes in by_partition.items():
            end = acked.get((store.topic, partition))
            if end is not None:
                self.local.partition(store.name, partition).write(changes, end)

    def assigned(self, generation: int, dropped: Iterable[TopicPartition]) -> None:
        """A new assignment: its generation; the partitions gone forgotten."""
        self.generation = generation
        self.lost = False
        for tp in dropped:
            self.committed.pop(tp, None)
