"""The `sluice` command line."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import click

from streams.config import load_pipeline, load_settings, make_importable
from streams.errors import ConfigErrors, SluiceError

CONFIG_HELP = "directory holding sluice.yaml (and pipelines/); default: config"


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="sluice")
def main() -> None:
    """sluice: declarative, stateful stream processing on Kafka.

    Declare pipelines in YAML (config/pipelines/*.yaml), check them with `sluice check`,
    try them offline with `sluice replay`, run them with `sluice run`.
    """


@main.command()
@click.argument("path", default="config", type=click.Path(path_type=Path))
def check(path: Path) -> None:
    """Validate settings and pipeline files.

    PATH is a config directory (sluice.yaml + pipelines/), a folder of pipeline files, one
    pipeline file, or a sluice.yaml. Every error is reported as FILE:LINE: FIELD: REASON.
    Exit status 1 when anything is wrong.
    """
    from streams.check import check as run_check

    report = run_check(path)
    for error in report.errors:
        click.echo(error.describe())
    if not report.ok:
        click.echo(f"{len(report.errors)} error(s) in {path}", err=True)
        sys.exit(1)
    names = ", ".join(report.pipelines) or "no pipelines"
    click.echo(f"ok: {len(report.files)} file(s), {names}")


def _parse_tables(values: tuple[str, ...]) -> dict[str, Path]:
    tables: dict[str, Path] = {}
    for value in values:
        name, sep, file = value.partition("=")
        if not sep or not name or not file:
            raise click.BadParameter(f"{value!r}: expected NAME=FILE", param_hint="--table")
        tables[name] = Path(file)
    return tables


@main.command()
@click.argument("pipeline_file", metavar="PIPELINE.yaml", type=click.Path(path_type=Path))
@click.option(
    "--input",
    "-i",
    "source",
    required=True,
    metavar="FILE",
    help="JSON Lines input, one message a line; '-' reads stdin",
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
def replay(
    pipeline_file: Path,
    source: str,
    tables: tuple[str, ...],
    output_dir: Path,
    config_dir: Path | None,
    progress: bool | None,
) -> None:
    """Run one pipeline offline over a JSON Lines file.

    Writes OUTPUT/<topic>.jsonl for every topic the pipeline emits to: the sink or routes,
    alerts, and dead letters as {"error": {step, type, message}, "payload": original line}.
    Event time is the pipeline's source.timestamp field, else the time a line is read.
    The whole file is one partition; at its end every open window closes.

    \b
    Example:
      sluice replay config/pipelines/payments-clean.yaml --input payments.jsonl
    """
    from streams.replay import replay as run_replay

    make_importable(pipeline_file.parent.parent)
    try:
        spec = load_pipeline(pipeline_file)
        settings = load_settings(config_dir) if config_dir is not None else None
    except ConfigErrors as exc:
        for error in exc.errors:
            click.echo(error.describe(), err=True)
        sys.exit(1)
    batch = settings.processing.batch_max if settings else 1000
    limit = settings.processing.max_message_bytes if settings else 1_048_576
    try:
        summary = asyncio.run(
            run_replay(
                spec,
                source,
                output_dir,
                tables=_parse_tables(tables),
                batch_size=batch,
                max_message_bytes=limit,
                progress=sys.stderr.isatty() if progress is None else progress,
            )
        )
    except SluiceError as exc:
        _fail(str(exc))
    click.echo(summary.line(), err=True)
    for file in summary.files:
        click.echo(str(file))


@main.group(invoke_without_command=True)
@click.option("--events", default=200_000, show_default=True, help="events per run")
@click.option("--runs", default=3, show_default=True, help="runs per measurement (best is kept)")
@click.option(
    "--results",
    "results_dir",
    default="bench/results",
    show_default=True,
    type=click.Path(path_type=Path),
    help="where JSON results are saved",
)
@click.pass_context
def bench(ctx: click.Context, events: int, runs: int, results_dir: Path) -> None:
    """Benchmarks, each against a reference measured in the same run.

    Without a subcommand, runs them all. Results are printed and saved as JSON.
    """
    ctx.obj = {"events": events, "runs": runs, "results": results_dir}
    if ctx.invoked_subcommand is None:
        ctx.invoke(bench_replay_command)


@bench.command("replay")
@click.pass_context
def bench_replay_command(ctx: click.Context) -> None:
    """Replay events/s of validate+filter+map vs a hand-written orjson loop."""
    from streams.bench import bench_replay

    options = ctx.obj
    click.echo(
        f"replay benchmark: {options['events']:,} events, best of {options['runs']}…", err=True
    )
    result = bench_replay(options["events"], options["runs"], options["results"])
    click.echo(
        f"sluice replay   {result['sluice_events_per_second']:>12,} events/s\n"
        f"reference loop  {result['reference_events_per_second']:>12,} events/s\n"
        f"ratio           {result['ratio']:>12.3f}  (sluice / reference)"
    )


@main.command()
@click.option(
    "--config",
    "config_dir",
    default="config",
    show_default=True,
    type=click.Path(path_type=Path),
    help=CONFIG_HELP,
)
@click.option("--demo", is_flag=True, help="also produce sample payments traffic")
@click.option("--events", default=20_000, show_default=True, help="demo events to generate")
def run(config_dir: Path, demo: bool, events: int) -> None:
    """Run every pipeline of the config directory on one machine.

    Until the Kafka runtime lands this replays generated demo traffic through each
    pipeline (`--demo`) and writes the results to replay-out/<pipeline>/.
    """
    from streams.check import check as run_check
    from streams.config import load_config
    from streams.demo import payments, write_lines
    from streams.replay import replay as run_replay

    report = run_check(config_dir)
    for error in report.errors:
        click.echo(error.describe(), err=True)
    if not report.ok:
        sys.exit(1)
    if not demo:
        _fail("the Kafka runtime is not built yet: use `sluice run --demo` or `sluice replay`")
    _, pipelines = load_config(config_dir).require()
    with tempfile.TemporaryDirectory(prefix="sluice-demo-") as tmp:
        source = Path(tmp) / "payments.jsonl"
        write_lines(source, payments(events))
        for name, spec in pipelines.items():
            summary = asyncio.run(
                run_replay(
                    spec, str(source), Path("replay-out") / name, progress=sys.stderr.isatty()
                )
            )
            click.echo(summary.line())
            for file in summary.files:
                click.echo(f"  {file}")


if __name__ == "__main__":  # pragma: no cover
    main()
