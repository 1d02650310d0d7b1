"""The `sluice` command line."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click

from models.pipeline import PipelineSpec
from models.settings import Settings
from streams.config import load_pipelines, load_settings, make_importable
from streams.errors import ConfigErrors, SluiceError

CONFIG_HELP = "directory holding sluice.yaml (and pipelines/); default: config"


def _fail(message: str) -> None:
    if _logging_json():  # a worker's stderr is a log stream: no plain line in it
        logging.getLogger("sluice.cli").critical("error: %s", message)
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _logging_json() -> bool:
    """Whether `_start_logging` set up JSON lines on stderr (never before settings load)."""
    handlers = logging.getLogger().handlers
    if not handlers:
        return False
    from streams.runtime.logs import JsonFormatter

    return any(isinstance(handler.formatter, JsonFormatter) for handler in handlers)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="sluice")
def main() -> None:
    """sluice: declarative, stateful stream processing on Kafka.

    Declare pipelines in YAML (config/pipelines/*.yaml) or SQL (*.sql), check them with
    `sluice check`, try them offline with `sluice replay`, run them with `sluice run`.
    """


@main.command()
@click.argument("path", default="config", type=click.Path(path_type=Path))
def check(path: Path) -> None:
    """Validate settings and pipeline files.

    PATH is a config directory (sluice.yaml + pipelines/), a folder of pipeline files, one
    pipeline file (.yaml or .sql), or a sluice.yaml. Every error is reported as
    FILE:LINE: FIELD: REASON (in .sql files FILE:LINE:COL: statement NAME: REASON).
    Exit status 1 when anything is wrong.
    """
    from streams.check import check as run_check

    report = run_check(path)
    for error in report.errors:
        click.echo(error.describe())
    for warning in report.warnings:
        click.echo(warning.describe())
    if not report.ok:
        click.echo(f"{len(report.errors)} error(s) in {path}", err=True)
        sys.exit(1)
    names = ", ".join(report.pipelines) or "no pipelines"
    warned = f"; {len(report.warnings)} warning(s)" if report.warnings else ""
    click.echo(f"ok: {len(report.files)} file(s), {names}{warned}")


def log_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--log-format / --log-level: override `log:` in sluice.yaml for this run."""
    command = click.option(
        "--log-level",
        type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
        help="log level (default: log.level in sluice.yaml, INFO)",
    )(command)
    return click.option(
        "--log-format",
        type=click.Choice(["json", "console"]),
        help="json: one object per line with timestamp, level, component, trace_id, message, "
        "metadata (default, for log collectors); console: readable lines for a terminal",
    )(command)


def _start_logging(settings: Settings, log_format: str | None, log_level: str | None) -> Settings:
    from streams.runtime.logs import configure_logging

    update = {
        name: value
        for name, value in (("format", log_format), ("level", log_level and log_level.upper()))
        if value
    }
    if update:
        settings = settings.model_copy(update={"log": settings.log.model_copy(update=update)})
    configure_logging(settings.log)
    return settings


def _parse_tables(values: tuple[str, ...]) -> dict[str, Path]:
    tables: dict[str, Path] = {}
    for value in values:
        name, sep, file = value.partition("=")
        if not sep or not name or not file:
            raise click.BadParameter(f"{value!r}: expected NAME=FILE", param_hint="--table")
        tables[name] = Path(file)
    return tables


@main.command()
@click.argument("pipeline_file", metavar="PIPELINE.yaml|FILE.sql", type=click.Path(path_type=Path))
@click.option(
    "--input",
    "-i",
    "source",
    required=True,
    metavar="[STREAM=]FILE",
    help="JSON Lines input, one message a line; '-' reads stdin. For a .sql file declaring "
    "several streams, STREAM=FILE names the one it feeds",
)
@click.option(
    "--table",
    "tables",
    multiple=True,
    metavar="NAME=FILE",
    help="fill lookup table NAME (for enrich) from a JSON Lines file; repeatable",
)
@click.option(
    "--output",
    "-o",
    "output_dir",
    default="replay-out",
    show_default=True,
    type=click.Path(path_type=Path),
    help="directory for <topic>.jsonl outputs",
)
@click.option(
    "--config",
    "config_dir",
    default=None,
    type=click.Path(path_type=Path),
    help="settings for batch size and max_message_bytes; default: built-in defaults",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="progress bar on stderr; default: when stderr is a terminal",
)
@click.option(
    "--max-event-time-skew",
    "max_skew",
    metavar="DURATION",
    help="event times further ahead of the clock are `timestamp` dead letters (default: "
    "processing.max_event_time_skew, 7d); raise it for future-dated test data, e.g. 100d",
)
@log_options
def replay(
    pipeline_file: Path,
    source: str,
    tables: tuple[str, ...],
    output_dir: Path,
    config_dir: Path | None,
    progress: bool | None,
    max_skew: str | None,
    log_format: str | None,
    log_level: str | None,
) -> None:
    """Run one pipeline offline over a JSON Lines file.

    Writes OUTPUT/<topic>.jsonl for every topic the pipeline emits to: the sink or routes,
    alerts, and dead letters as {"error": {step, type, message}, "payload": original line}
    (base64, with "payload_encoding": "base64", when the line is not UTF-8). Event time is
    the pipeline's source.timestamp field, else the time a line is read. The whole file is
    one partition; at its end every open window closes. A component stuck past its
    timeout in a sync process() stops the replay with a message and exit status 3.

    A .sql file (or a YAML stream of pipelines) runs as one graph: the input feeds the
    declared stream (STREAM=FILE names it among several), each derived stream feeds the
    statements that read it.

    \b
    Examples:
      sluice replay config/pipelines/payments-clean.yaml --input payments.jsonl
      sluice replay config/pipelines/payments-sql.sql --input payments=payments.jsonl
    """
    from streams.durations import parse_duration_ms
    from streams.replay import replay as run_replay

    make_importable(pipeline_file.parent.parent)
    try:
        specs = load_pipelines(pipeline_file)
    except ConfigErrors as exc:
        for error in exc.errors:
            click.echo(error.describe(), err=True)
        sys.exit(1)
    settings = _settings_only(config_dir)
    skew = settings.processing.max_event_time_skew
    if max_skew is not None:
        try:
            skew = parse_duration_ms(max_skew)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--max-event-time-skew") from None
    _start_logging(settings, log_format, log_level)
    if pipeline_file.suffix.lower() == ".sql" or len(specs) > 1:
        _replay_graph(pipeline_file, specs, source, tables, output_dir, settings, skew, progress)
        return
    spec = specs[0]
    try:
        summary = asyncio.run(
            run_replay(
                spec,
                source,
                output_dir,
                tables=_parse_tables(tables),
                batch_size=settings.processing.batch_max,
                max_message_bytes=settings.processing.max_message_bytes,
                max_event_time_skew_ms=skew,
                progress=sys.stderr.isatty() if progress is None else progress,
            )
        )
    except SluiceError as exc:
        _fail(str(exc))
    click.echo(summary.line(), err=True)
    for file in summary.files:
        click.echo(str(file))


def _replay_graph(
    pipeline_file: Path,
    specs: list[PipelineSpec],
    source: str,
    tables: tuple[str, ...],
    output_dir: Path,
    settings: Settings,
    max_event_time_skew_ms: int,
    progress: bool | None,
) -> None:
    """A .sql file, or a YAML stream of pipelines, replayed as one graph."""
    from streams.sql.compiler import load_sql_program
    from streams.sql.graph import replay_graph, sql_input, topic_input

    try:
        if pipeline_file.suffix.lower() == ".sql":
            topic, path = sql_input(load_sql_program(pipeline_file), source)
        else:
            topic, path = topic_input(specs, source)
        summary = asyncio.run(
            replay_graph(
                specs,
                topic,
                path,
                output_dir,
                tables=_parse_tables(tables),
                batch_size=settings.processing.batch_max,
                max_message_bytes=settings.processing.max_message_bytes,
                max_event_time_skew_ms=max_event_time_skew_ms,
                progress=sys.stderr.isatty() if progress is None else progress,
            )
        )
    except ConfigErrors as exc:
        for error in exc.errors:
            click.echo(error.describe(), err=True)
        sys.exit(1)
    except SluiceError as exc:
        _fail(str(exc))
    for line in summary.lines():
        click.echo(line, err=True)
    for file in summary.files:
        click.echo(str(file))


@main.command()
@click.argument("sql_file", metavar="FILE.sql", type=click.Path(path_type=Path))
@click.option(
    "--output",
    "-o",
    "output_dir",
    type=click.Path(path_type=Path),
    help="also write each pipeline to DIR/<pipeline>.yaml",
)
def explain(sql_file: Path, output_dir: Path | None) -> None:
    """Print the pipelines a SQL file compiles to, as pipeline YAML.

    Several pipelines print as one YAML stream (`---` between them), which `sluice check`
    and `sluice replay` accept like the .sql file itself.
    """
    from streams.sql.explain import explain as explain_sql

    make_importable(sql_file.parent.parent)
    try:
        documents = explain_sql(sql_file)
    except ConfigErrors as exc:
        for error in exc.errors:
            click.echo(error.describe(), err=True)
        sys.exit(1)
    click.echo("---\n".join(text for _, text in documents), nl=False)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        for name, text in documents:
            (output_dir / f"{name}.yaml").write_text(text, encoding="utf-8")


@main.group(invoke_without_command=True)
@click.option(
    "--events", type=int, default=None, help="events per run (each benchmark has its default)"
)
@click.option(
    "--runs", type=int, default=None, help="runs per measurement (each benchmark has its default)"
)
@click.option(
    "--results",
    "results_dir",
    default="bench/results",
    show_default=True,
    type=click.Path(path_type=Path),
    help="where JSON results are saved",
)
@click.pass_context
def bench(ctx: click.Context, events: int | None, runs: int | None, results_dir: Path) -> None:
    """Benchmarks, each against a reference measured in the same run.

    Without a subcommand, runs replay, windows and kafka. `peers`, `latency` and `soak`
    run on their own (minutes each). Results are printed and saved as JSON; progress
    lines go to stderr.
    """
    ctx.obj = {"events": events, "runs": runs, "results": results_dir}
    if ctx.invoked_subcommand is None:
        ctx.invoke(bench_replay_command)
        ctx.invoke(bench_windows_command)
        ctx.invoke(bench_kafka_command)


def _option(ctx: click.Context, name: str, default: int) -> int:
    value = ctx.obj[name]
    return default if value is None else int(value)


@bench.command("replay")
@click.pass_context
def bench_replay_command(ctx: click.Context) -> None:
    """Replay events/s of validate+filter+map vs a hand-written orjson loop."""
    from bench.replay import bench_replay

    events, runs = _option(ctx, "events", 200_000), _option(ctx, "runs", 3)
    click.echo(f"replay benchmark: {events:,} events, best of {runs}…", err=True)
    result = bench_replay(events, runs, ctx.obj["results"])
    click.echo(
        f"sluice replay   {result['sluice_events_per_second']:>12,} events/s\n"
        f"reference loop  {result['reference_events_per_second']:>12,} events/s\n"
        f"ratio           {result['ratio']:>12.3f}  (sluice / reference)"
    )


def _load(config_dir: Path) -> tuple[Settings, dict[str, PipelineSpec]]:
    from streams.config import load_config

    loaded = load_config(config_dir)
    if loaded.errors:
        for error in loaded.errors:
            click.echo(error.describe(), err=True)
        click.echo(f"fix the errors above (`sluice check {config_dir}`)", err=True)
        sys.exit(1)
    return loaded.require()


def _settings_only(config_dir: Path | None) -> Settings:
    from streams.config import default_settings

    try:
        if config_dir is None or (config_dir == Path("config") and not config_dir.exists()):
            return default_settings()  # outside a project: defaults and SLUICE_* variables
        return load_settings(config_dir)
    except ConfigErrors as exc:
        for error in exc.errors:
            click.echo(error.describe(), err=True)
        sys.exit(1)


config_option = click.option(
    "--config",
    "config_dir",
    default="config",
    show_default=True,
    type=click.Path(path_type=Path),
    help=CONFIG_HELP,
)


@bench.command("windows")
@click.pass_context
def bench_windows_command(ctx: click.Context) -> None:
    """A windowed pipeline in replay vs DuckDB's GROUP BY over the same file."""
    from bench.windows import bench_windows

    events, runs = _option(ctx, "events", 200_000), _option(ctx, "runs", 3)
    click.echo(f"windows benchmark: {events:,} events, best of {runs}…", err=True)
    result = bench_windows(events, runs, ctx.obj["results"])
    click.echo(
        f"sluice replay (windows) {result['sluice_seconds']:>8.3f} s  "
        f"({result['sluice_events_per_second']:,} events/s)\n"
        f"duckdb GROUP BY         {result['duckdb_seconds']:>8.3f} s\n"
        f"ratio                   {result['ratio_duckdb_time_to_sluice_time']:>8.3f}  "
        f"(duckdb time / sluice time); windows that differ: {result['mismatching_windows']}"
    )


@bench.command("kafka")
@click.option(
    "--latency-seconds",
    default=10.0,
    show_default=True,
    help="length of the latency run at half the measured throughput",
)
@click.pass_context
def bench_kafka_command(ctx: click.Context, latency_seconds: float) -> None:
    """End-to-end events/s and latency on the embedded broker, vs raw aiokafka (same run,
    same input). Uses --events (default 50,000 here)."""
    from bench.kafka import bench_kafka, describe

    events = _option(ctx, "events", 50_000)
    click.echo(f"kafka benchmark: {events:,} events on the embedded broker…", err=True)
    result = bench_kafka(events, latency_seconds, ctx.obj["results"])
    click.echo(describe(result))


broker_option = click.option(
    "--broker",
    type=click.Choice(["tansu", "apache-kafka", "both"]),
    default="tansu",
    show_default=True,
    help="the embedded tansu broker, Apache Kafka 3.9.1 (needs `make kafka-jars`), or both",
)


def _names(value: str, allowed: tuple[str, ...]) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    for name in names:
        if name not in allowed:
            raise click.BadParameter(f"{name!r}: one of {', '.join(allowed)}")
    return names


@bench.command("peers")
@broker_option
@click.option(
    "--jobs",
    default="filter,count,window",
    show_default=True,
    help="comma-separated: filter, count, window",
)
@click.option(
    "--regimes",
    default="catch-up,live",
    show_default=True,
    help="catch-up (pre-filled topic), live (contender ready, then produced)",
)
@click.pass_context
def bench_peers_command(ctx: click.Context, broker: str, jobs: str, regimes: str) -> None:
    """sluice vs Quix Streams vs raw aiokafka loops on three jobs (filter, per-key count,
    1-minute tumbling window), same broker, same events. Uses --events (default 200,000)
    and --runs (default 1, interleaved). Needs the `bench` extra (quixstreams)."""
    from bench.contenders import JOBS
    from bench.peers import REGIMES, bench_peers, describe

    events, runs = _option(ctx, "events", 200_000), _option(ctx, "runs", 1)
    click.echo(f"peers benchmark: {events:,} events, {runs} run(s), broker {broker}…", err=True)
    result = bench_peers(
        events,
        runs,
        broker,
        _names(jobs, JOBS),
        _names(regimes, REGIMES),
        ctx.obj["results"],
    )
    click.echo(describe(result))


@bench.command("latency")
@broker_option
@click.option(
    "--rates",
    default="1000,4000,half",
    show_default=True,
    help="comma-separated events/s; `half` = half of the worker's measured maximum",
)
@click.option("--seconds", default=20.0, show_default=True, help="length of each rate's run")
@click.option(
    "--max-rate", type=float, default=None, help="the worker's maximum, instead of measuring it"
)
@click.pass_context
def bench_latency_command(
    ctx: click.Context, broker: str, rates: str, seconds: float, max_rate: float | None
) -> None:
    """Processing latency of a worker with the shipped settings at fixed rates (p50 to
    max, from outside and from its own histogram), results counted exactly once."""
    from bench.latency import bench_latency, describe

    names = [r.strip() for r in rates.split(",") if r.strip()]
    for name in names:
        if name != "half" and not name.replace(".", "", 1).isdigit():
            raise click.BadParameter(f"{name!r}: a number or `half`", param_hint="--rates")
    click.echo(f"latency benchmark: rates {', '.join(names)}, broker {broker}…", err=True)
    result = bench_latency(broker, names, seconds, max_rate, ctx.obj["results"])
    click.echo(describe(result))


@bench.command("soak")
@click.option(
    "--broker",
    type=click.Choice(["tansu", "apache-kafka", "both"]),
    default="apache-kafka",
    show_default=True,
    help="Apache Kafka 3.9.1 (`make kafka-jars`) by default: tansu's fetches slow down as a "
    "partition fills with small batches, so a long soak on it measures the broker",
)
@click.option("--minutes", default=10.0, show_default=True, help="length of each phase")
@click.option(
    "--phases",
    default="50,120",
    show_default=True,
    help="comma-separated percentages of the worker's maximum, one phase each",
)
@click.option(
    "--max-rate", type=float, default=None, help="the worker's maximum, instead of measuring it"
)
@click.option("--interval", default=10.0, show_default=True, help="seconds between samples")
@click.pass_context
def bench_soak_command(
    ctx: click.Context,
    broker: str,
    minutes: float,
    phases: str,
    max_rate: float | None,
    interval: float,
) -> None:
    """A worker running the demo pipelines and a benchmark pipeline at fixed rates for
    minutes: rate, lag, RSS and latency sampled; keep-up and no-collapse checks."""
    from bench.soak import bench_soak, describe

    try:
        percents = [int(p) for p in phases.split(",") if p.strip()]
    except ValueError:
        raise click.BadParameter(f"{phases!r}: percentages like 50,120") from None
    click.echo(f"soak benchmark: {minutes:g} min at {phases}% of the maximum…", err=True)
    result = bench_soak(broker, minutes, percents, max_rate, interval, ctx.obj["results"])
    click.echo(describe(result))


@main.command()
@config_option
@log_options
def worker(config_dir: Path, log_format: str | None, log_level: str | None) -> None:
    """Run one worker against the configured brokers.

    Start as many as you like with the same app_id: they share the partitions of every
    source topic, and take over each other's when one stops. Exits 70 when an agent
    crashes, so a supervisor restarts it.
    """
    from streams.runtime.worker import SluiceWorker

    settings, pipelines = _load(config_dir)
    if not settings.brokers:
        _fail(
            "no brokers configured: set brokers in sluice.yaml or SLUICE_BROKERS, "
            "or use `sluice run` to start the embedded broker"
        )
    settings = _start_logging(settings, log_format, log_level)
    try:
        code = SluiceWorker(settings, pipelines).run()
    except SluiceError as exc:
        _fail(str(exc))
    sys.exit(code)


@main.command()
@config_option
@click.option("--demo", is_flag=True, help="also produce sample payments to the 'payments' topic")
@click.option("--rate", default=200.0, show_default=True, help="demo payments per second")
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

    settings, pipelines = _load(config_dir)
    settings = _start_logging(settings, log_format, log_level)
    broker = None
    if not settings.brokers:
        if broker_port is not None and not _port_free(broker_port):
            _fail(f"--broker-port {broker_port}: the port is in use")
        port = broker_port or (9092 if _port_free(9092) else free_port())
        broker = EmbeddedBroker(port)
        try:
            broker.start()
        except SluiceError as exc:
            _fail(str(exc))
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
        lines.append(f"  {spec.pipeline}: {spec.source.topic} -> {', '.join(spec.output_topics())}")
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
        lines.append("  demo traffic: sample payments to topic 'payments'")
    lines.append("  Ctrl-C stops everything")
    if settings.log.format == "json":  # stderr stays one JSON object per line
        banner = logging.getLogger("sluice.cli")
        for line in lines:
            banner.info(line.strip())
    else:
        click.echo("\n".join(lines), err=True)


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
        _fail(str(exc))
    click.echo(f"embedded broker on {embedded.url} (in memory); Ctrl-C stops it", err=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while embedded.process is not None and embedded.process.poll() is None:
            time.sleep(0.2)
        _fail("the embedded broker exited")
    except KeyboardInterrupt:
        pass
    finally:
        embedded.stop()


@main.command()
@click.argument("topic")
@click.option(
    "--input", "-i", "source", required=True, metavar="FILE", help="JSON Lines; '-' = stdin"
)
@click.option("--key", "key_field", metavar="FIELD", help="message key from this field")
@click.option(
    "--rate",
    type=float,
    metavar="N",
    help="messages per second, sent in 0.1 s steps (default: all at once)",
)
@config_option
def produce(
    topic: str, source: str, key_field: str | None, rate: float | None, config_dir: Path
) -> None:
    """Send a JSON Lines file to TOPIC, one message a line, with a progress bar.

    A line longer than processing.max_message_bytes (or refused by the broker) is reported
    with its number and skipped; the rest is sent. Exit status 1 when any line was skipped.
    """
    from streams.replay import Progress, open_input
    from streams.runtime.clients import produce as run_produce

    settings = _settings_only(config_dir)
    total = Path(source).stat().st_size if source != "-" and Path(source).is_file() else None
    bar: Progress | None = None

    def report(number: int, reason: str) -> None:
        message = f"line {number}: {reason}"
        if bar is not None:
            bar.progress.console.print(message, markup=False, highlight=False)
        else:
            click.echo(message, err=True)

    try:
        with open_input(source) as lines, ExitStack() as stack:
            if sys.stderr.isatty():
                bar = stack.enter_context(Progress(total, label="produce"))
            summary = asyncio.run(
                run_produce(
                    settings,
                    topic,
                    lines,
                    key_field=key_field,
                    rate=rate,
                    on_sent=bar.advance if bar is not None else None,
                    on_skipped=report,
                )
            )
    except SluiceError as exc:
        _fail(str(exc))
    click.echo(
        f"sent {summary.sent:,} messages, skipped {summary.skipped:,} (topic {topic})", err=True
    )
    if summary.skipped:
        sys.exit(1)


@main.command()
@click.argument("topic")
@click.option("--from-beginning", is_flag=True, help="start at the oldest message, not the newest")
@click.option("--limit", type=int, metavar="N", help="stop after N messages")
@click.option(
    "--envelope", is_flag=True, help="print {topic, partition, offset, key, headers, value}"
)
@click.option(
    "--idle-timeout", type=float, metavar="SECONDS", help="stop after this long without messages"
)
@click.option(
    "--isolation",
    type=click.Choice(["read_committed", "read_uncommitted"]),
    help="read_committed hides records of unfinished or aborted transactions; default: "
    "read_committed when processing.guarantee is exactly_once, else read_uncommitted",
)
@config_option
def consume(
    topic: str,
    from_beginning: bool,
    limit: int | None,
    envelope: bool,
    idle_timeout: float | None,
    isolation: str | None,
    config_dir: Path,
) -> None:
    """Print TOPIC's messages as JSON Lines: each value (non-JSON as a JSON string)."""
    from streams.runtime.clients import consume as run_consume

    settings = _settings_only(config_dir)
    try:
        asyncio.run(
            run_consume(
                settings,
                topic,
                sys.stdout.buffer,
                from_beginning=from_beginning,
                limit=limit,
                envelope=envelope,
                idle_timeout=idle_timeout,
                isolation=isolation,
            )
        )
    except KeyboardInterrupt:
        pass
    except SluiceError as exc:
        _fail(str(exc))


if __name__ == "__main__":  # pragma: no cover
    main()
