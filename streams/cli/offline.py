"""Offline commands: `sluice check`, `sluice replay`, `sluice explain`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import NoReturn

import click

from streams.cli.app import (
    fail,
    log_options,
    main,
    settings_only,
    start_logging,
)
from streams.config.loader import LoadedConfig, load_pipelines, make_importable
from streams.core.errors import ConfigError, ConfigErrors, SluiceError


@main.command()
@click.argument("path", default="config", type=click.Path(path_type=Path))
@click.option(
    "--registry",
    is_flag=True,
    help="also check each Avro output's schema against the schema registry (compatibility)",
)
def check(path: Path, registry: bool) -> None:
    """Validate settings and pipeline files.

    PATH is a config directory (sluice.yaml + pipelines/), a folder of pipeline files, one
    pipeline file (.yaml or .sql), or a sluice.yaml. Every error is reported as
    FILE:LINE: FIELD: REASON (in .sql files FILE:LINE:COL: statement NAME: REASON).
    Exit status 1 when anything is wrong.
    """
    from streams.config.check import check as run_check

    report = run_check(path)
    problems: list[str] = []
    fetched: set[str] = set()  # pipelines whose source columns came from the registry
    if registry and report.ok:
        problems, fetched = _check_registry(path)
    for error in report.errors:
        click.echo(error.describe())
    for warning in report.warnings:
        if not _columns_fetched(warning, fetched):
            click.echo(warning.describe())
    if not report.ok:
        click.echo(f"{len(report.errors)} error(s) in {path}", err=True)
        sys.exit(1)
    for problem in problems:
        click.echo(problem)
    if problems:
        click.echo(f"{len(problems)} registry error(s) in {path}", err=True)
        sys.exit(1)
    names = ", ".join(report.pipelines) or "no pipelines"
    shown = [w for w in report.warnings if not _columns_fetched(w, fetched)]
    warned = f"; {len(shown)} warning(s)" if shown else ""
    click.echo(f"ok: {len(report.files)} file(s), {names}{warned}")


def _columns_fetched(warning: ConfigError, fetched: set[str]) -> bool:
    """The "fields come from the registry at run time" warning of a pipeline whose
    columns `--registry` did fetch and check."""
    return warning.field == "source.format" and any(
        warning.reason.startswith(f"warning: pipeline {name}: ") for name in fetched
    )


def _check_registry(path: Path) -> tuple[list[str], set[str]]:
    """`sluice check --registry`: each Avro output schema may be registered under its
    subject (compatible with what is there), and each source without declared columns
    reads only fields of its subject's latest schema; a registry that does not answer is
    one line. Returns the problems and the pipelines whose columns were checked."""
    from streams.config.loader import load_config

    if not (path / "sluice.yaml").is_file():
        fail(f"--registry needs a config directory with sluice.yaml (schema_registry.url): {path}")
    loaded = load_config(path)
    assert loaded.settings is not None
    if not loaded.settings.schema_registry.url:
        fail("--registry: schema_registry.url is not set in sluice.yaml")
    return asyncio.run(_registry_checks(loaded))


async def _registry_checks(loaded: LoadedConfig) -> tuple[list[str], set[str]]:
    from streams.runtime.formats import registry_problems
    from streams.runtime.schema_registry import RegistryClient, RegistryUnavailable
    from streams.runtime.source_columns import locator, registry_column_problems

    assert loaded.settings is not None
    client = RegistryClient(loaded.settings.schema_registry)
    try:
        columns, fetched = await registry_column_problems(
            client, loaded.pipelines, locator(loaded.pipeline_files, loaded.documents)
        )
    except RegistryUnavailable as exc:
        return [str(exc)], set()  # said once, not per pipeline
    finally:
        await client.close()
    return columns + await registry_problems(loaded.settings, loaded.pipelines), fetched


def _exit_with(errors: ConfigErrors) -> NoReturn:
    """Each configuration error on its own line (FILE:LINE: FIELD: REASON), exit status 1."""
    for error in errors.errors:
        click.echo(error.describe(), err=True)
    sys.exit(1)


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
    "sources",
    required=True,
    multiple=True,
    metavar="[STREAM=]FILE",
    help="JSON Lines input, one message a line; '-' reads stdin. For a .sql file declaring "
    "several streams, STREAM=FILE names the one it feeds; a pipeline with a join takes one "
    "--input STREAM=FILE per stream (merged in event-time order)",
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
    sources: tuple[str, ...],
    tables: tuple[str, ...],
    output_dir: Path,
    config_dir: Path | None,
    progress: bool | None,
    max_skew: str | None,
    log_format: str | None,
    log_level: str | None,
) -> None:
    """Run a pipeline, or a .sql file's pipelines as one graph, offline over JSON Lines.

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
    from models.durations import parse_duration_ms
    from streams.cli.replay_inputs import replay_inputs
    from streams.offline import replay as run_replay

    make_importable(pipeline_file.parent.parent)
    try:
        specs = load_pipelines(pipeline_file)
    except ConfigErrors as exc:
        _exit_with(exc)
    settings = settings_only(config_dir)
    skew = settings.processing.max_event_time_skew
    if max_skew is not None:
        try:
            skew = parse_duration_ms(max_skew)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--max-event-time-skew") from None
    start_logging(settings, log_format, log_level)
    try:
        inputs = replay_inputs(pipeline_file, specs, sources)
        summary = asyncio.run(
            run_replay(
                specs,
                inputs,
                output_dir,
                tables=_parse_tables(tables),
                batch_size=settings.processing.batch_max,
                max_message_bytes=settings.processing.max_message_bytes,
                max_event_time_skew_ms=skew,
                progress=sys.stderr.isatty() if progress is None else progress,
            )
        )
    except ConfigErrors as exc:
        _exit_with(exc)
    except SluiceError as exc:
        fail(str(exc))
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
        _exit_with(exc)
    click.echo("---\n".join(text for _, text in documents), nl=False)
    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        for name, text in documents:
            (output_dir / f"{name}.yaml").write_text(text, encoding="utf-8")
