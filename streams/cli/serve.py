"""Commands that run sluice: `sluice run`, `sluice worker`, `sluice broker`."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from models.pipeline_spec import PipelineSpec
from models.settings import Settings
from streams.cli.app import (
    config_option,
    fail,
    load_config,
    log_options,
    main,
    start_logging,
)
from streams.core.errors import SluiceError

if TYPE_CHECKING:
    from streams.runtime.source_columns import Locator


@main.command()
@config_option
@click.option(
    "--engine",
    type=click.Choice(["native", "faust"]),
    help="native: sluice's own engine; faust: the pipelines as Faust agents with state in "
    "Faust tables (docs/faust.md); default: engine in sluice.yaml (native)",
)
@log_options
def worker(
    config_dir: Path, engine: str | None, log_format: str | None, log_level: str | None
) -> None:
    """Run one worker against the configured brokers.

    Start as many as you like with the same app_id: they share the partitions of every
    source topic, and take over each other's when one stops. Exits 70 when its data path
    fails, so a supervisor restarts it (state is restored from the changelogs).
    """
    settings, pipelines = load_config(config_dir)
    if not settings.brokers:
        fail(
            "no brokers configured: set brokers in sluice.yaml or SLUICE_BROKERS, "
            "or use `sluice run` to start the embedded broker"
        )
    settings = start_logging(settings, log_format, log_level)
    try:
        if (engine or settings.engine) == "faust":
            from streams.faust.host_worker import run_worker  # the only path that imports faust

            code = run_worker(settings, pipelines)
        else:
            from streams.runtime.worker import SluiceWorker

            code = SluiceWorker(settings, pipelines, locate=_locator(config_dir, pipelines)).run()
    except SluiceError as exc:
        fail(str(exc))
    sys.exit(code)


@main.command()
@config_option
@click.option("--demo", is_flag=True, help="also produce sample payments to the 'payments' topic")
@click.option("--rate", default=200.0, show_default=True, help="demo payments per second")
@click.option(
    "--demo-step",
    type=click.FloatRange(min=0.001),
    hidden=True,  # for tests: --rate 2000 --demo-step 0.1 is the demo at 10x its speed
    help="seconds between the demo's record batches (default 1)",
)
@click.option(
    "--broker-port",
    type=click.IntRange(1, 65535),
    metavar="N",
    help="port of the embedded broker (default: 9092 when free, else any free port)",
)
@log_options
def run(
    config_dir: Path,
    demo: bool,
    rate: float,
    demo_step: float | None,
    broker_port: int | None,
    log_format: str | None,
    log_level: str | None,
) -> None:
    """Everything on one machine: broker, worker, endpoints (and demo traffic).

    With no brokers configured, starts the embedded broker (tansu, in memory) first, on
    --broker-port, else on port 9092 when it is free. Ctrl-C stops everything.
    """
    from streams.runtime.broker import EmbeddedBroker, free_port
    from streams.runtime.worker import SluiceWorker

    settings, pipelines = load_config(config_dir)
    settings = start_logging(settings, log_format, log_level)
    broker = None
    if not settings.brokers:
        if broker_port is not None and not _port_free(broker_port):
            fail(f"--broker-port {broker_port}: the port is in use")
        port = broker_port or (9092 if _port_free(9092) else free_port())
        broker = EmbeddedBroker(port)
        try:
            broker.start()
        except SluiceError as exc:
            fail(str(exc))
        settings = settings.model_copy(update={"brokers": [broker.url]})
    code = 1
    try:
        _print_banner(
            settings, pipelines, embedded=broker is not None, demo=demo, config_dir=config_dir
        )
        worker = SluiceWorker(
            settings,
            pipelines,
            demo_rate=rate if demo else None,
            demo_step=demo_step,
            before_hard_exit=broker.kill if broker is not None else None,
        )
        code = worker.run()
    except SluiceError as exc:
        click.echo(f"error: {exc}", err=True)
    finally:
        if broker is not None:
            broker.stop()
    sys.exit(code)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _print_banner(
    settings: Settings,
    pipelines: dict[str, PipelineSpec],
    *,
    embedded: bool,
    demo: bool,
    config_dir: Path = Path("config"),
) -> None:
    web = f"http://{settings.web.host}:{settings.web.port}"
    brokers = ",".join(settings.brokers)
    lines = [
        f"sluice: {len(pipelines)} pipeline(s) on {brokers}"
        + (" (embedded broker)" if embedded else ""),
        f"  dashboard  {web}/    metrics {web}/metrics    ready {web}/ready",
    ]
    for spec in pipelines.values():
        inputs = spec.source.topic + (f" + {spec.join.stream}" if spec.join is not None else "")
        lines.append(f"  {spec.pipeline}: {inputs} -> {', '.join(spec.output_topics())}")
    if pipelines:
        first = next(iter(pipelines.values()))
        env = f"SLUICE_BROKERS={brokers} " if embedded else ""
        # the consume commands need the same security settings: name a config dir that
        # is not the default
        config = "" if config_dir == Path("config") else f" --config {config_dir}"
        lines.append(f"  watch results:  {env}sluice consume {first.sink.topics()[-1]}{config}")
        lines.append(
            f"  dead letters:   {env}sluice consume {first.dead_letter_topic} --envelope{config}"
        )
    if demo:
        lines.append(
            "  demo traffic: sample payments to topic 'payments', settlements to 'settlements'"
        )
    lines.append("  Ctrl-C stops everything")
    if settings.log.format == "json":  # stderr stays one JSON object per line
        banner = logging.getLogger("sluice.cli")
        for line in lines:
            banner.info(line.strip())
    else:
        click.echo("\n".join(lines), err=True)


def _locator(config_dir: Path, pipelines: dict[str, PipelineSpec]) -> Locator | None:
    """Files and lines for columns checked against the registry at start (only when a
    pipeline takes its source's columns from the registry: loading twice costs little)."""
    from streams.config.loader import load_config as load_files
    from streams.runtime.source_columns import locator, needs_columns

    if not any(needs_columns(spec) for spec in pipelines.values()):
        return None
    loaded = load_files(config_dir)
    return locator(loaded.pipeline_files, loaded.documents)


@main.command()
@click.option("--port", default=9092, show_default=True, help="port on 127.0.0.1")
def broker(port: int) -> None:
    """Run the embedded broker (tansu, in memory) alone, until Ctrl-C."""
    import signal
    import time

    from streams.runtime.broker import EmbeddedBroker

    try:
        embedded = EmbeddedBroker(port).start()
    except SluiceError as exc:
        fail(str(exc))
    click.echo(f"embedded broker on {embedded.url} (in memory); Ctrl-C stops it", err=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while embedded.process is not None and embedded.process.poll() is None:
            time.sleep(0.2)
        fail("the embedded broker exited")
    except KeyboardInterrupt:
        pass
    finally:
        embedded.stop()
