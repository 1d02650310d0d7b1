"""`sluice bench`: the benchmark harness (the `bench` package) behind a command group."""

from __future__ import annotations

from pathlib import Path

import click

from streams.cli.app import (
    main,
)


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
@click.option(
    "--formats",
    default="json,avro",
    show_default=True,
    help="comma-separated: json, avro (the same records in Avro through an Apicurio "
    "Registry the bench starts; `make registry-jar`)",
)
@click.pass_context
def bench_peers_command(
    ctx: click.Context, broker: str, jobs: str, regimes: str, formats: str
) -> None:
    """sluice vs Quix Streams vs raw aiokafka loops on three jobs (filter, per-key count,
    1-minute tumbling window), same broker, same events, in JSON and in Avro. Uses
    --events (default 200,000) and --runs (default 1, interleaved). Needs the `bench` extra
    (quixstreams)."""
    from bench.contenders import JOBS
    from bench.peers import FORMATS, REGIMES, bench_peers, describe

    events, runs = _option(ctx, "events", 200_000), _option(ctx, "runs", 1)
    click.echo(f"peers benchmark: {events:,} events, {runs} run(s), broker {broker}…", err=True)
    result = bench_peers(
        events,
        runs,
        broker,
        _names(jobs, JOBS),
        _names(regimes, REGIMES),
        ctx.obj["results"],
        _names(formats, FORMATS),
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
