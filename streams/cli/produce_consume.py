"""`sluice produce` and `sluice consume`: JSON Lines in and out of a topic."""

from __future__ import annotations

import asyncio
import sys
from contextlib import ExitStack
from pathlib import Path

import click

from streams.cli.app import (
    config_option,
    fail,
    main,
    settings_only,
)
from streams.core.errors import SluiceError


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
@click.option(
    "--format",
    "format_name",
    type=click.Choice(["json", "avro", "protobuf", "json_schema"]),
    default="json",
    show_default=True,
    help="avro|protobuf|json_schema: encode each line in the schema registry's wire format",
)
@click.option(
    "--schema",
    "schema_file",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="the schema (.avsc, .proto, JSON Schema), registered under TOPIC-value",
)
@config_option
def produce(
    topic: str,
    source: str,
    key_field: str | None,
    rate: float | None,
    format_name: str,
    schema_file: Path | None,
    config_dir: Path,
) -> None:
    """Send a JSON Lines file to TOPIC, one message a line, with a progress bar.

    A line longer than processing.max_message_bytes (or refused by the broker) is reported
    with its number and skipped; the rest is sent. Exit status 1 when any line was skipped.
    With --format avro|protobuf|json_schema and --schema FILE each line is encoded through
    the schema registry (schema_registry.url); a line that does not fit is skipped.
    """
    from streams.offline.progress import Progress
    from streams.offline.reading import open_input
    from streams.runtime.topic_io import produce as run_produce

    settings = settings_only(config_dir)
    encode = None
    if format_name != "json":
        if schema_file is None:
            fail(f"--format {format_name} needs --schema FILE")
        assert schema_file is not None
        from streams.runtime.formats import line_encoder

        try:
            _, encode = asyncio.run(line_encoder(settings, topic, format_name, schema_file))
        except SluiceError as exc:
            fail(str(exc))
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
                    encode=encode,
                )
            )
    except SluiceError as exc:
        fail(str(exc))
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
@click.option(
    "--decode",
    is_flag=True,
    help="decode values in the schema registry's wire format (Avro, Protobuf, JSON Schema)",
)
@config_option
def consume(
    topic: str,
    from_beginning: bool,
    limit: int | None,
    envelope: bool,
    idle_timeout: float | None,
    isolation: str | None,
    decode: bool,
    config_dir: Path,
) -> None:
    """Print TOPIC's messages as JSON Lines: each value (non-JSON as a JSON string).

    --decode prints registry-encoded values as their decoded records (schema_registry.url);
    a value that does not decode is printed as without --decode."""
    from streams.runtime.topic_io import consume as run_consume

    settings = settings_only(config_dir)
    if decode and not settings.schema_registry.url:
        fail("--decode needs schema_registry.url in sluice.yaml (or SLUICE_SCHEMA_REGISTRY__URL)")
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
                decode=decode,
            )
        )
    except KeyboardInterrupt:
        pass
    except SluiceError as exc:
        fail(str(exc))
