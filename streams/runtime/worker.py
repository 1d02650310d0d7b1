"""A worker process: the engine, lookup tables, the web endpoints, readiness, signals.

The process runs one asyncio loop. SIGTERM or Ctrl-C stops it gracefully (a last
checkpoint, then the group is left so the partitions move at once) within a deadline;
an error that escapes the data path makes the worker not ready and exits it with 70 so a
supervisor restarts it (its state is restored exactly from the changelogs).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiokafka import AIOKafkaProducer

from models.pipeline_spec import PipelineSpec
from models.settings import Settings
from streams.core.errors import SluiceError, StateLayoutError
from streams.core.watchdog import Watchdog
from streams.runtime.changelog import WorkerState, changelog_topic
from streams.runtime.engine import Engine
from streams.runtime.engine_clients import EngineError
from streams.runtime.formats import RecordFormats, uses_registry
from streams.runtime.kafka import KafkaUnreachable, connection_options, probe, start_client
from streams.runtime.lookups import TableDeadLetters, feed_lookup_table
from streams.runtime.phases import RECOVERED, Phase
from streams.runtime.pipeline_runner import PipelineRunner
from streams.runtime.prometheus import Registry
from streams.runtime.source_columns import Locator
from streams.runtime.web import Readiness, make_web_app, serve

log = logging.getLogger("sluice.worker")

EXIT_CRASHED = 70  # EX_SOFTWARE: the data path failed; a supervisor should restart the worker
STOP_DEADLINE_S = 15.0
BROKER_PROBE_S = 2.0
REPORT_INTERVAL_S = 2.0


def tune_garbage_collection() -> None:
    """Start-up objects frozen out of collection, and fewer, larger collections: a worker
    allocates many short-lived objects per record, and by default every 700 allocations
    start a collection. p99 latency at 11k records/s: 106-126 ms by default, 51-53 ms so
    (docs/decisions/0004-garbage-collection-and-heap.md)."""
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


class SluiceWorker:
    def __init__(
        self,
        settings: Settings,
        pipelines: dict[str, PipelineSpec],
        *,
        demo_rate: float | None = None,
        demo_step: float | None = None,
        before_hard_exit: Callable[[], None] | None = None,
        locate: Locator | None = None,
    ) -> None:
        self.settings = settings
        # what must not outlive the process even when a hung stop ends in os._exit (the
        # embedded broker): `finally` blocks do not run then
        self.before_hard_exit = before_hard_exit
        self.registry = Registry()
        self.readiness = Readiness()
        self.state = WorkerState(settings.app_id)
        # a sync component past its timeout blocks the loop: noticed from a thread of its own
        self.watchdog = Watchdog()
        self.runners = [
            PipelineRunner(
                spec,
                settings,
                self.state,
                self.registry.pipeline(name, spec, export=settings.telemetry),
                self.watchdog,
            )
            for name, spec in pipelines.items()
        ]
        self.engine = Engine(settings, self.runners)
        self.pipelines = pipelines
        # registry formats (Avro, Protobuf, JSON Schema): streams.runtime.formats
        self.formats = RecordFormats(settings) if uses_registry(pipelines) else None
        if self.formats is not None:
            self.formats.locate = locate  # file and line of a column the registry lacks
        for runner in self.runners:
            runner.formats = self.formats
        self.demo_rate = demo_rate
        self.demo_step = demo_step
        self.exit_code = 0
        self.broker_reachable = True  # until a probe says otherwise
        self.tables_loaded = asyncio.Event()
        self.stalled: str | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        readiness = self.readiness
        engine = self.engine
        readiness.checks = {
            "broker_reachable": lambda: self.broker_reachable,
            # the engine's phase (streams.runtime.phases): RUNNING is the only ready one
            "partitions_assigned": lambda: engine.phase is Phase.RUNNING,
            "tables_recovered": lambda: engine.phase in RECOVERED and self.tables_loaded.is_set(),
            "making_progress": lambda: self.stalled is None,
            "components_responsive": lambda: not self.watchdog.stuck,
        }
        if self.formats is not None:
            formats = self.formats
            readiness.checks["schema_registry"] = lambda: formats.ready

    # --- running ------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped (Ctrl-C, SIGTERM, a crash); returns the exit status."""
        tune_garbage_collection()
        began = time.monotonic()
        self.watchdog.start()
        try:
            asyncio.run(self._main())
        finally:
            self.watchdog.stop()
        log.info("worker stopped after %.1fs", time.monotonic() - began)
        return self.exit_code

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        web = await self._start_web()
        try:
            if self.formats is not None:
                await self._start_formats(self.formats)
            log.info("connecting to %s", ", ".join(self.settings.brokers))
            try:
                await self.engine.start()
            except KafkaUnreachable:
                raise
            except Exception as exc:  # topics that no longer fit the state, …: exit 70
                self._crashed("starting", exc)
                return
            self._spawn(self._feed_tables(), "lookup tables")
            self._spawn(self._report(), "reporting")
            self._spawn(self._probe_broker(), "broker probe")
            if self.demo_rate:
                self._spawn(self._demo(self.demo_rate), "demo traffic")
            stop_task = asyncio.create_task(self._stop.wait())
            if await self._until_tables_loaded(stop_task):
                engine_task = asyncio.create_task(self.engine.run(), name="engine")
                await self._until_stopped(engine_task, stop_task)
                self.engine.stopping.set()  # before waiting: the loop ends at its next turn
                if not engine_task.done():
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await asyncio.wait_for(engine_task, timeout=2)
            self.engine.stopping.set()
            stop_task.cancel()
        finally:
            for task in self._tasks:
                task.cancel()
            await self._shutdown()
            if web is not None:
                await web.cleanup()

    async def _until_tables_loaded(self, stop: asyncio.Task[Any]) -> bool:
        """Nothing is processed before the lookup tables are loaded (an enrich would find
        "no row" for rows not read yet), as Kafka Streams restores global tables before
        its stream threads run. False: a stop or a failed task came first (a failed
        rebalance lets the engine start, to report it as its crash)."""
        loaded = asyncio.create_task(self.tables_loaded.wait(), name="tables")
        engine_failed = asyncio.create_task(self.engine.stopping.wait())
        waits = {loaded, engine_failed, stop}
        pending: set[asyncio.Task[Any]] = {*waits, *self._tasks}
        try:
            while True:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done - waits:
                    error = None if task.cancelled() else task.exception()
                    if error is not None:
                        self._crashed(task.get_name(), error)
                        return False
                if stop in done:
                    return False
                if loaded in done or engine_failed in done:
                    return True
        finally:
            loaded.cancel()
            engine_failed.cancel()

    async def _until_stopped(self, engine: asyncio.Task[None], stop: asyncio.Task[Any]) -> None:
        """Until a stop is asked for, the engine ends, or a task fails (a task that just
        finishes, like lookup tables when there are none, is no reason to stop)."""
        pending: set[asyncio.Task[Any]] = {engine, stop, *self._tasks}
        while True:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            finished = stop in done or engine in done
            unasked = engine in done and stop not in done and not self._stop.is_set()
            if unasked and not engine.cancelled() and engine.exception() is None:
                # the loop only ends on a stop: anything else is a crash, never exit 0
                self._crashed("engine", EngineError("the engine stopped unasked"))
            for task in done:
                if task is stop or task.cancelled():
                    continue
                error = task.exception()
                if error is not None:
                    self._crashed(task.get_name(), error)
                    finished = True
            if finished:
                return

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(coroutine, name=name))

    def _on_signal(self, signum: int) -> None:
        log.info("%s: stopping", signal.Signals(signum).name)
        self._arm_deadline()
        self._stop.set()

    def _arm_deadline(self) -> None:
        """A stop that hangs (a broker gone mid-rebalance) must still end the process."""
        timer = threading.Timer(STOP_DEADLINE_S, self._hard_exit)
        timer.daemon = True
        timer.start()

    def _hard_exit(self) -> None:
        log.error("stopping took longer than %.0fs: exiting now", STOP_DEADLINE_S)
        try:
            if self.before_hard_exit is not None:
                self.before_hard_exit()
        finally:
            os._exit(self.exit_code)

    async def _start_formats(self, formats: RecordFormats) -> None:
        """The registry answers and every Avro output's schema is registered (or one
        line and exit 1: RegistryUnreachable, SchemaMismatch)."""
        log.info("schema registry %s", formats.client.shown)
        await formats.start(self.pipelines)
        for runner in self.runners:
            runner.sender.encoders = {
                topic: formats.encoders[topic]
                for topic in runner.spec.output_formats()
                if topic in formats.encoders
            }
            runner.sender.key_encoders = {
                topic: formats.key_encoders[topic]
                for topic in runner.spec.sink.topics()
                if topic in formats.key_encoders
            }

    async def _shutdown(self) -> None:
        if self.formats is not None:
            await self.formats.close()
        try:
            await self.engine.stop()
        except Exception as exc:
            if not self.exit_code:
                log.warning("stopping: %r (whatever was not committed is processed again)", exc)

    def _crashed(self, where: str, exc: BaseException) -> None:
        if self.exit_code:
            return
        if isinstance(exc, KafkaUnreachable):
            raise exc
        self.readiness.crashed = f"{where}: {type(exc).__name__}: {exc}"
        self.exit_code = EXIT_CRASHED
        if isinstance(exc, SluiceError):  # explained: the message says what to do
            said = str(exc)
            if isinstance(exc, StateLayoutError):  # the topic to delete, by its name here
                topic = changelog_topic(self.settings.app_id, exc.store)
                said += f" (the changelog topic is {topic})"
            log.critical("%s: %s; stopping the worker (exit %d)", where, said, EXIT_CRASHED)
        else:
            log.critical(
                "%s crashed: %r; stopping the worker (exit %d)",
                where,
                exc,
                EXIT_CRASHED,
                exc_info=exc,
            )
        self._arm_deadline()
        self._stop.set()

    # --- tasks beside the engine --------------------------------------------------------

    async def _start_web(self) -> Any:
        settings = self.settings
        web_app = make_web_app(
            settings, self.registry, self.readiness, {r.name: r for r in self.runners}
        )
        try:
            runner = await serve(web_app, settings.web.host, settings.web.port)
        except OSError as exc:
            raise KafkaUnreachable(
                f"cannot listen on {settings.web.host}:{settings.web.port}: {exc.strerror}; "
                "set web.port (SLUICE_WEB__PORT) to a free port"
            ) from None
        self.readiness.started = True
        addresses = runner.addresses  # the port actually bound (web.port 0: any free one)
        port = addresses[0][1] if addresses else settings.web.port
        log.info("endpoints on http://%s:%d (/health /ready /metrics)", settings.web.host, port)
        return runner

    async def _feed_tables(self) -> None:
        """Every pipeline's lookup tables, kept up to date; `tables_loaded` once each is
        read to its end offsets at start (the engine waits for it). A table row that
        cannot be a row is a dead letter of the pipeline, sent by a producer of its own
        (table rows are no input the engine's checkpoints commit)."""
        tables = [
            (runner, name, table)
            for runner in self.runners
            for name, table in runner.spec.tables.items()
        ]
        if not tables:
            self.tables_loaded.set()
            return
        connection = connection_options(self.settings)
        producer = AIOKafkaProducer(**connection, acks="all")
        await start_client(producer, self.settings)
        feeders = []
        loaded_events = []
        try:
            for runner, name, table in tables:
                loaded = asyncio.Event()
                loaded_events.append(loaded)
                letters = TableDeadLetters(producer, runner, table.topic)
                decode = None
                if self.formats is not None and table.format != "json":
                    decode = functools.partial(self.formats.decode_values, format_name=table.format)
                feeders.append(
                    feed_lookup_table(
                        connection,
                        name,
                        table.topic,
                        table.key,
                        runner.lookups[name],
                        loaded,
                        letters.send,
                        decode,
                    )
                )

            async def all_loaded() -> None:
                for loaded in loaded_events:
                    await loaded.wait()
                self.tables_loaded.set()

            await asyncio.gather(all_loaded(), *feeders)
        finally:
            await producer.stop()

    async def _probe_broker(self) -> None:
        """A Kafka connection to a broker, with the configured TLS and SASL, every couple
        of seconds: a broker that is down, or that stopped accepting our credentials, is
        `broker_reachable: false` at /ready."""
        while True:
            self.broker_reachable = await probe(self.settings, BROKER_PROBE_S) is None
            await asyncio.sleep(BROKER_PROBE_S)

    async def _report(self) -> None:
        """Consumer lag, event-time lag, and the stall check, every couple of seconds."""
        gauge = self.registry.consumer_lag
        reported: set[tuple[str, int]] = set()
        timeout = self.settings.processing.stall_timeout / 1000
        while True:
            await asyncio.sleep(REPORT_INTERVAL_S)
            try:
                current = await self.engine.lags()
            except Exception as exc:  # partitions moving under the lookup
                log.debug("lag not available now: %r", exc)
                continue
            for topic, partition in reported - set(current):
                gauge.remove(topic, str(partition))
            for (topic, partition), lag in current.items():
                gauge.labels(topic, str(partition)).set(lag)
            reported = set(current)
            now_ms = time.time() * 1000
            for runner in self.runners:
                runner.lag = sum(lag for (t, _), lag in current.items() if t == runner.stage_topic)
                lag_s = runner.event_time_lag(now_ms)
                if lag_s is not None:
                    runner.metrics.event_time_lag(lag_s)
            self._check_stall(sum(current.values()), timeout)

    def _check_stall(self, lag: int, timeout: float) -> None:
        engine = self.engine
        idle_for = time.monotonic() - engine.last_progress
        if lag > 0 and idle_for > timeout and not engine.phases.rebalancing:
            if self.stalled is None:
                self.stalled = (
                    f"no record processed for {idle_for:.0f}s while {lag} wait "
                    f"(processing.stall_timeout {timeout:g}s)"
                )
                log.error("stalled: %s", self.stalled)
        elif self.stalled is not None:
            log.info("making progress again")
            self.stalled = None

    async def _demo(self, rate: float) -> None:
        from streams.runtime.demo_traffic import (
            DEMO_STEP_SECONDS,
            produce_demo_traffic,
            produce_settlement_traffic,
        )

        while not self.readiness.state()["ready"]:
            await asyncio.sleep(0.2)
        step = self.demo_step or DEMO_STEP_SECONDS
        await asyncio.gather(
            produce_demo_traffic(self.settings, rate, step=step),
            produce_settlement_traffic(self.settings, rate, step),  # payments-settled joins them
        )
