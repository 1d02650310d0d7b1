"""An engine on the fake broker (tests/unit/runtime/fakes.py): a windowed count per user,
its input, and what a run leaves behind (results, state)."""

from __future__ import annotations

import functools
from typing import Any

import orjson
import yaml
from aiokafka.structs import TopicPartition

from models.pipeline_spec import PipelineSpec
from models.settings import Settings
from streams.core.state import BOOKKEEPING
from streams.runtime.changelog import WorkerState
from streams.runtime.engine import Engine
from streams.runtime.pipeline_runner import PipelineRunner
from streams.runtime.prometheus import Registry
from streams.runtime.recovery import Recovery
from tests.unit.runtime.fakes import FakeBroker, FakeConsumer, FakeProducer, FakeReader

SOURCE = "events"
SINK = "windows"
PIPELINE = f"""
pipeline: counts
source: {{topic: {SOURCE}, timestamp: ts}}
steps:
  - window: {{type: tumbling, size: 10s, grace: 0s, key: user, emit: final,
              aggregates: {{n: count(), total: sum(amount)}}}}
sink: {{topic: {SINK}}}
"""


@functools.cache
def _spec() -> PipelineSpec:
    return PipelineSpec.model_validate(yaml.safe_load(PIPELINE))


def settings(exactly_once: bool) -> Settings:
    guarantee = "exactly_once" if exactly_once else "at_least_once"
    return Settings(app_id="unit", brokers=["127.0.0.1:1"], processing={"guarantee": guarantee})


def produce(broker: FakeBroker, events: list[tuple[str, int, int]]) -> None:
    """(user, amount, ts) events, keyed by user onto partition hash(user) % partitions."""
    for user, amount, ts in events:
        key = user.encode()
        partition = sum(key) % broker.partitions
        value = orjson.dumps({"user": user, "amount": amount, "ts": ts})
        broker.append(SOURCE, partition, key, value, [], timestamp=ts)


def all_partitions(broker: FakeBroker) -> set[TopicPartition]:
    return {TopicPartition(SOURCE, p) for p in range(broker.partitions)}


class Member:
    """One worker process: an engine with its own clients on the shared broker."""

    count = 0  # members made (each has its own transactional ids)

    def __init__(self, broker: FakeBroker, *, exactly_once: bool) -> None:
        self.broker = broker
        config = settings(exactly_once)
        spec = _spec()
        self.state = WorkerState(config.app_id)
        metrics = Registry().pipeline(spec.pipeline, spec, export=False)
        self.runner = PipelineRunner(spec, config, self.state, metrics)
        self.engine = Engine(config, [self.runner])
        self.engine.recovery = Recovery(
            lambda committed: FakeReader(broker, committed),
            None,
            read_committed=exactly_once,
        )
        # no wall clock in unit tests: no idle window closing, checkpoints when `tick`
        # says (or when a poll finds nothing)
        self.engine.last_flush = float("inf")
        self.engine.commit_interval = float("inf")
        self.steps = 0
        self.consumer = FakeConsumer(broker)
        Member.count += 1
        self.name = f"unit-m{Member.count}"
        first = FakeProducer(broker, transactional=exactly_once, transactional_id=f"{self.name}-0")
        self.engine.attach(self.consumer, first, self.new_producer, first.transactional_id)

    async def new_producer(self, transactional_id: str) -> FakeProducer:
        return FakeProducer(self.broker, transactional=True, transactional_id=transactional_id)

    @property
    def producer(self) -> FakeProducer:
        """The producer the engine works with now (a new one at each assignment)."""
        producer = self.engine.checkpoints.producer
        assert isinstance(producer, FakeProducer)
        return producer

    async def join(self, partitions: set[TopicPartition] | None = None) -> None:
        await self.consumer.join(partitions or all_partitions(self.broker))

    async def tick(self, every: int) -> bool:
        """One step, and a checkpoint every `every` steps; True once every owned
        partition is processed and committed."""
        engine = self.engine
        await engine.step()
        self.steps += 1
        if engine.uncommitted and self.steps % every == 0:
            await engine.checkpoint()
        return engine.idle and not engine.uncommitted

    async def run_to_end(self, every: int = 1, limit: int = 10_000) -> None:
        for _ in range(limit):
            if await self.tick(every):
                return
        raise AssertionError("the engine did not finish")

    def values(self) -> dict[str, Any]:
        """The state of every store (owner marks aside: they name the run's epochs)."""
        return {
            store.name: {
                key: store.get(key)
                for key in store.keys()
                if not key.startswith(f"{BOOKKEEPING}owner:")
            }
            for store in self.state.stores.values()
        }


def results(broker: FakeBroker, *, committed: bool) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in broker.records(SINK, committed=committed) if r.value]
