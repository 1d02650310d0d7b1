"""A worker process: the Faust app, its agents, the web endpoints, optional demo traffic."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import faust

from models.pipeline import PipelineSpec
from models.settings import Settings
from streams.runtime.agents import PipelineRunner
from streams.runtime.app import make_app
from streams.runtime.metrics import Registry
from streams.runtime.web import Readiness, make_web_app, serve

log = logging.getLogger("sluice.worker")

STOP_GRACE_S = 30.0
EXIT_CRASHED = 70  # EX_SOFTWARE: an agent crashed; a supervisor should restart the worker


SIGNAL_STOP_GRACE_S = 15.0
BROKER_PROBE_S = 2.0


def tune_garbage_collection() -> None:
    """A worker allocates many short-lived objects per record (Faust's messages and
    events, decoded records); with CPython's default thresholds the collector runs every
    700 allocations and a full collection walks every live object, the modules and the
    app included. Measured at 11k records/s: p99 latency 106-126 ms by default, 51-53 ms
    with start-up objects frozen out of collection and fewer, larger collections."""
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


async def any_broker_accepts(addresses: list[str], timeout: float = 1.0) -> bool:
    """Whether a TCP connection to one of the brokers opens: what /ready reports as
    `broker_reachable` (the Kafka clients retry quietly; readiness must not)."""
    for address in addresses:
        host, _, port = address.rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
        except (OSError, TimeoutError, ValueError):
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


class _Worker(faust.Worker):
    """Faust's worker, with a deadline on the graceful stop after Ctrl-C or SIGTERM: Faust
    can hang stopping during a rebalance, and a stopped worker must go away (its offsets
    are committed as it goes; anything after is redelivered, at-least-once)."""

    exit_code: Callable[[], int] = staticmethod(lambda: 0)
    hard_exit: Callable[[int], None] = staticmethod(os._exit)

    def _arm_deadline(self) -> None:
        timer = threading.Timer(SIGNAL_STOP_GRACE_S, lambda: self.hard_exit(self.exit_code()))
        timer.daemon = True
        timer.start()

    def _on_sigint(self) -> None:
        self._arm_deadline()
        super()._on_sigint()

    def _on_sigterm(self) -> None:
        self._arm_deadline()
        super()._on_sigterm()


class SluiceWorker:
    def __init__(
        self,
        settings: Settings,
        pipelines: dict[str, PipelineSpec],
        *,
        demo_rate: float | None = None,
        before_hard_exit: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        # what must not outlive the process even when a hung stop ends in os._exit (the
        # embedded broker): `finally` blocks do not run then
        self.before_hard_exit = before_hard_exit
        self.app = make_app(settings)
        self.registry = Registry()
        self.readiness = Readiness()
        self.exit_code = 0
        self.assigned = False
        self.broker_reachable = True  # until a probe says otherwise (the group join proves it)
        self.runners = [
            PipelineRunner(
                self.app,
                spec,
                settings,
                self.registry.pipeline(name, export=settings.telemetry),
                self._crashed,
            )
            for name, spec in pipelines.items()
        ]
        self.demo_rate = demo_rate
        self._install_hooks()

    def _install_hooks(self) -> None:
        app = self.app
        readiness = self.readiness
        readiness.checks = {
            "broker_reachable": lambda: self.broker_reachable,
            "partitions_assigned": lambda: self.assigned and not app.rebalancing,
            "tables_recovered": lambda: bool(app.tables.recovery.completed.is_set()),  # type: ignore[attr-defined]
        }

        async def _assigned(
            sender: Any, assigned: Any = (), *args: Any, signal: Any = None, **kwargs: Any
        ) -> None:
            self.assigned = True
            for runner in self.runners:
                runner.on_assigned(assigned)

        app.on_partitions_assigned.connect(_assigned)  # type: ignore[arg-type]

        async def _revoked(sender: Any, *args: Any, signal: Any = None, **kwargs: Any) -> None:
            for runner in self.runners:
                runner.on_revoked()

        app.on_partitions_revoked.connect(_revoked)  # type: ignore[arg-type]

        @app.task  # type: ignore[untyped-decorator]
        async def _web() -> None:
            web_app = make_web_app(
                self.settings, self.registry, readiness, {r.name: r for r in self.runners}
            )
            try:
                await serve(web_app, self.settings.web.host, self.settings.web.port)
            except OSError as exc:
                self._crashed(
                    "web",
                    OSError(
                        f"cannot listen on {self.settings.web.host}:{self.settings.web.port}: "
                        f"{exc.strerror}; set web.port (SLUICE_WEB__PORT) to a free port"
                    ),
                )
                return
            readiness.started = True
            log.info(
                "endpoints on http://%s:%d (/health /ready /metrics)",
                self.settings.web.host,
                self.settings.web.port,
            )

        @app.timer(interval=BROKER_PROBE_S)  # type: ignore[untyped-decorator]
        async def _probe_broker() -> None:
            self.broker_reachable = await any_broker_accepts(self.settings.broker_addresses())

        reported: set[tuple[str, int]] = set()

        @app.timer(interval=2.0)  # type: ignore[untyped-decorator]
        async def _lag() -> None:
            """sluice_consumer_lag of the partitions this worker holds now; a partition
            that moved to another worker is no longer reported here (no stale gauge)."""
            gauge = self.registry.consumer_lag
            current: dict[tuple[str, int], int] = {}
            for runner in self.runners:
                current.update(runner.lags())
            for topic, partition in reported - set(current):
                gauge.remove(topic, str(partition))
            for (topic, partition), lag in current.items():
                gauge.labels(topic, str(partition)).set(lag)
            reported.clear()
            reported.update(current)

        if self.demo_rate:
            from streams.runtime.demo_traffic import produce_demo_traffic

            @app.task  # type: ignore[untyped-decorator]
            async def _demo() -> None:
                # the producer is started with the consumer: wait until the worker is ready
                while not readiness.state()["ready"]:
                    await asyncio.sleep(0.2)
                await produce_demo_traffic(app, self.demo_rate or 0.0)

    def _crashed(self, where: str, exc: BaseException) -> None:
        if self.exit_code:
            return
        self.readiness.crashed = f"{where}: {type(exc).__name__}: {exc}"
        self.exit_code = EXIT_CRASHED
        log.critical(
            "%s crashed: %r; stopping the worker (exit %d)", where, exc, EXIT_CRASHED, exc_info=exc
        )
        os.kill(os.getpid(), signal.SIGTERM)
        # if a graceful stop hangs, a supervisor must still see the failure
        watchdog = threading.Timer(STOP_GRACE_S, self._hard_exit, [EXIT_CRASHED])
        watchdog.daemon = True
        watchdog.start()

    def _hard_exit(self, code: int) -> None:
        try:
            if self.before_hard_exit is not None:
                self.before_hard_exit()
        finally:
            os._exit(code)

    def run(self) -> int:
        """Run until stopped (Ctrl-C, SIGTERM, a crash); returns the exit status."""
        tune_garbage_collection()
        worker = _Worker(
            self.app,
            loglevel=self.settings.log.level,
            quiet=True,
            redirect_stdouts=False,
            override_logging=False,
        )
        worker.exit_code = lambda: self.exit_code
        worker.hard_exit = self._hard_exit
        began = time.monotonic()
        try:
            worker.execute_from_commandline()
        except SystemExit as exit_:
            if not self.exit_code and isinstance(exit_.code, int):
                self.exit_code = exit_.code
        log.info("worker stopped after %.1fs", time.monotonic() - began)
        return self.exit_code
