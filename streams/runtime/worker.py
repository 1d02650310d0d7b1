"""A worker process: the engine, lookup tables, the web endpoints, readiness, signals.

The process runs one asyncio loop. SIGTERM or Ctrl-C stops it gracefully (a last
checkpoint, then the group is left so the partitions move at once) within a deadline;
an error that escapes the data path makes the worker not ready and exits it with 70 so a
supervisor restarts it (its state is restored exactly from the changelogs).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from models.pipeline import PipelineSpec
from models.settings import Settings
from streams.errors import SluiceError
from streams.runtime.changelog import WorkerState
from streams.runtime.engine import Engine
from streams.runtime.kafka import KafkaUnreachable, connection_options, probe
from streams.runtime.lookups import feed_lookup_table
from streams.runtime.metrics import Registry
from streams.runtime.pipelines import PipelineRunner
from streams.runtime.web import Readiness, make_web_app, serve
from streams.watchdog import Watchdog

log = logging.getLogger("sluice.worker")

EXIT_CRASHED = 70  # EX_SOFTWARE: the data path failed; a supervisor should restart the worker
STOP_DEADLINE_S = 15.0
BROKER_PROBE_S = 2.0
REPORT_INTERVAL_S = 2.0


def tune_garbage_collection() -> None:
    """A worker allocates many short-lived objects per record (decoded records, events);
    with CPython's default thresholds the collector runs every 700 allocations and a full
    collection walks every live object, the modules included. Measured at 11k records/s:
    p99 latency 106-126 ms by default, 51-53 ms with start-up objects frozen out of
    collection and fewer, larger collections."""
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
            "partitions_assigned": lambda: engine.assigned_once and not engine.rebalancing,
            "tables_recovered": lambda: engine.restored and self.tables_loaded.is_set(),
            "making_progress": lambda: self.stalled is None,
            "components_responsive": lambda: not self.watchdog.stuck,
        }

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
            log.info("connecting to %s", ", ".join(self.settings.brokers))
            await self.engine.start()
            self._spawn(self._feed_tables(), "lookup tables")
            self._spawn(self._report(), "reporting")
            self._spawn(self._probe_broker(), "broker probe")
            if self.demo_rate:
                self._spawn(self._demo(self.demo_rate), "demo traffic")
            engine_task = asyncio.create_task(self.engine.run(), name="engine")
            stop_task = asyncio.create_task(self._stop.wait())
            await self._until_stopped(engine_task, stop_task)
            self.engine.stopping.set()
            if not engine_task.done():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(engine_task, timeout=2)
            stop_task.cancel()
        finally:
            for task in self._tasks:
                task.cancel()
            await self._shutdown()
            if web is not None:
                await web.cleanup()

    async def _until_stopped(self, engine: asyncio.Task[None], stop: asyncio.Task[Any]) -> None:
        """Until a stop is asked for, the engine ends, or a task fails (a task that just
        finishes, like lookup tables when there are none, is no reason to stop)."""
        pending: set[asyncio.Task[Any]] = {engine, stop, *self._tasks}
        while True:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            finished = stop in done or engine in done
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

    async def _shutdown(self) -> None:
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
            log.critical("%s: %s; stopping the worker (exit %d)", where, exc, EXIT_CRASHED)
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
        feeders = []
        loaded_events = []
        connection = connection_options(self.settings)
        for runner in self.runners:
            for name, table in runner.spec.tables.items():
                loaded = asyncio.Event()
                loaded_events.append(loaded)
                feeders.append(
                    feed_lookup_table(
                        connection, table.topic, table.key, runner.lookups[name], loaded
                    )
                )

        async def all_loaded() -> None:
            for loaded in loaded_events:
                await loaded.wait()
            self.tables_loaded.set()

        await asyncio.gather(all_loaded(), *feeders)

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
        if lag > 0 and idle_for > timeout and not engine.rebalancing:
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
        from streams.runtime.demo_traffic import DEMO_STEP_SECONDS, produce_demo_traffic

        while not self.readiness.state()["ready"]:
            await asyncio.sleep(0.2)
        await produce_demo_traffic(self.settings, rate, step=self.demo_step or DEMO_STEP_SECONDS)
