"""What sluice adds to a Faust app once, whatever number of pipelines it attaches: the
Prometheus registry with the `sluice_*` metrics, lookup tables, readiness, the web views
under `/sluice/`, lag reporting, and the crash rule.

The crash rule: Faust logs an exception that escapes an agent and leaves the worker
running without it — idle, its partitions held (robinhood/faust#301,
faust-streaming/faust#523; measured here too). A pipeline that raises instead logs one
line naming it and crashes the worker's root service, so `faust worker` stops after a
graceful shutdown (the failed batch is not acked, so not committed) and exits non-zero.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from models.settings import Settings
from streams.core.state import lookup_store_name
from streams.runtime.kafka import connection_options
from streams.runtime.lookups import TableDeadLetters, feed_lookup_table
from streams.runtime.prometheus import Registry
from streams.runtime.topics import not_copartitioned, partition_counts

from .agents import PipelineAgent

log = logging.getLogger("sluice.faust")

REPORT_INTERVAL_S = 2.0


class Host:
    """sluice's part of one Faust app (see the module docstring)."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.registry = Registry()
        self.agents: dict[str, PipelineAgent] = {}
        self.crashed: str | None = None
        self.tables_loaded = asyncio.Event()
        self._feeders: list[tuple[PipelineAgent, str]] = []
        app.task(self._feed_lookup_tables)
        # awaited by Faust inside a rebalance and at stop: no batch is in flight past them
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_partitions_assigned.connect(self._on_assigned)
        app.on_before_shutdown.connect(self._on_shutdown)
        app.timer(interval=REPORT_INTERVAL_S, name="sluice.report")(self._report)

    def add(self, spec: Any) -> PipelineAgent:
        agent = PipelineAgent(
            self.app,
            spec,
            self.settings,
            self.registry.pipeline(spec.pipeline, spec, export=self.settings.telemetry),
            self.crash,
            self.tables_loaded,
        )
        self.agents[spec.pipeline] = agent
        for table in spec.tables:
            self._feeders.append((agent, table))
        return agent

    # --- the crash rule -------------------------------------------------------------------

    def crash(self, where: str, exc: BaseException) -> None:
        """A pipeline raised: one line naming it, then the worker stops, non-zero."""
        if self.crashed is not None:
            return
        self.crashed = f"{where}: {type(exc).__name__}: {exc}"
        if self.app.should_stop:  # stopping already: the batch is simply not acked
            log.info("pipeline %s: stopped during a batch (%r)", where, exc)
            return
        log.critical(
            "pipeline %s crashed: %r; stopping the worker",
            where,
            exc,
            exc_info=exc,
            extra={"pipeline": where.split(" ", maxsplit=1)[0]},
        )
        root = self.app.beacon.root
        service = root.data if root is not None else None
        # Patch: crashing the worker (the beacon's root service) is what makes mode's
        # Worker stop and re-raise at exit (status 1); `app.crash()` would first try the
        # agent's supervisor, which restarts nothing useful and leaves the worker idle.
        target = service if service is not None and hasattr(service, "_crash") else self.app
        target._crash(exc)

    async def _on_revoked(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        """Every agent checkpoints what it holds, then the acked offsets are committed:
        without stream_wait_empty Faust does not commit here, and after the assignment it
        seeks the partitions it keeps back to the committed offsets — a stateless pipeline
        sent its last records twice after a rebalance on Apache Kafka (measured)."""
        for agent in self.agents.values():
            await agent.on_revoked()
        await self._commit("rebalance")

    async def _on_assigned(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        for agent in self.agents.values():
            await agent.on_assigned()

    async def _on_shutdown(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        """The worker stops: no batch in flight, then what is acked committed now (Faust's
        own commit at stop came too late or not at all: a clean stop re-read records)."""
        for agent in self.agents.values():
            await agent.idle()
        await self._commit("stop")

    async def _commit(self, when: str) -> None:
        """Commit what is acked now. Faust's `commit()` returns without committing when a
        commit is in flight (`maybe_wait_for_commit_to_finish`): that one took the acked
        offsets before these acks, so wait for it, then commit."""
        consumer = self.app.consumer
        try:
            while await consumer.maybe_wait_for_commit_to_finish():
                log.info("commit at %s: waited for a commit in flight", when)
            # no await between the check above and commit() taking the commit: it commits
            await consumer.commit()
        except Exception as exc:  # the records are read again by whoever reads them next
            log.warning("commit at %s failed (%r): uncommitted records are read again", when, exc)

    # --- the state's partitions -------------------------------------------------------------

    async def fit_state_to_inputs(self) -> None:
        """Before Faust starts the tables (streams.faust.patches.before_tables_start): each
        pipeline's tables and their changelogs get the partition count of the topic it keeps
        state by (its source, or its repartition topic), as `sluice worker` sizes its
        changelogs (streams.runtime.topics). Made at `attach`, they have
        `processing.partitions` (4); the README's app on a source of 8 partitions crashed
        at the first checkpoint ("Unrecognized partition": a changelog partition 5 of 4).
        A stage topic not there yet is created with `processing.partitions`, as the tables.
        A changelog already made with another count than its input is `NotCoPartitioned`,
        the native engine's error: the worker stops with it. Brokers not answering here
        leave the counts as they are (Faust's recovery then waits for them anyway)."""
        try:
            admin = AIOKafkaAdminClient(**connection_options(self.settings))
            await admin.start()
            try:
                counts = await partition_counts(admin)
            finally:
                await admin.close()
        except Exception as exc:
            log.warning("partition counts not read (%r): state keeps processing.partitions", exc)
            return
        for agent in self.agents.values():
            changelogs = agent.state.changelog_topics()
            error = not_copartitioned(
                agent.name, agent.stage_topic, changelogs, counts, self.app.conf.id
            )
            if error is not None:
                self.crash(agent.name, error)
                return
            have = counts.get(agent.stage_topic)
            if have is not None and have != agent.partitions:
                log.info(
                    "pipeline %s: its state has %d partitions, as %s",
                    agent.name,
                    have,
                    agent.stage_topic,
                )
                agent.resize(have)

    # --- beside the agents ----------------------------------------------------------------

    async def _feed_lookup_tables(self) -> None:
        """Every lookup table (`tables:` for enrich) read whole from its topic by every
        worker, as sluice's own engine does."""
        if not self._feeders:
            self.tables_loaded.set()
            return
        connection = connection_options(self.settings)
        # table rows that cannot be rows: dead letters through the aiokafka producer
        # inside Faust's (private `_ensure_producer`, as the agents' outputs)
        producer = (await self.app.maybe_start_producer())._ensure_producer()
        loaded = []
        feeders = []
        for agent, name in self._feeders:
            table = agent.spec.tables[name]
            store_name = lookup_store_name(agent.name, name)
            agent.state.lookup(store_name)
            done = asyncio.Event()
            loaded.append(done)
            feeders.append(
                feed_lookup_table(
                    connection,
                    name,
                    table.topic,
                    table.key,
                    agent.state.lookups[store_name],
                    done,
                    TableDeadLetters(producer, agent, table.topic).send,
                )
            )

        async def all_loaded() -> None:
            for done in loaded:
                await done.wait()
            self.tables_loaded.set()

        await asyncio.gather(all_loaded(), *feeders)

    async def _report(self) -> None:
        """Consumer lag and event-time lag, every couple of seconds."""
        gauge = self.registry.consumer_lag
        now_ms = time.time() * 1000
        try:
            for agent in self.agents.values():
                lags = agent.lags()
                agent.lag = sum(lags.values())
                for (topic, partition), lag in lags.items():
                    gauge.labels(topic, str(partition)).set(lag)
                lag_s = agent.event_time_lag(now_ms)
                if lag_s is not None:
                    agent.metrics.event_time_lag(lag_s)
        except Exception as exc:  # partitions moving under the lookup
            log.debug("lag not available now: %r", exc)

    # --- readiness --------------------------------------------------------------------------

    def readiness(self) -> dict[str, Any]:
        app = self.app
        try:
            assigned = bool(app.consumer.assignment())
        except Exception:
            assigned = False
        recovery = app.tables.recovery
        checks = {
            "started": bool(app.started),
            "partitions_assigned": assigned and not app.rebalancing,
            "tables_recovered": recovery.completed.is_set()
            and not app.in_recovery
            and self.tables_loaded.is_set(),
            "no_crash": self.crashed is None,
        }
        return {"ready": all(checks.values()), "checks": checks, "crash": self.crashed}
