"""The `sluice` group and what its commands share: loading settings, the logging options,
one way to fail."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from models.pipeline_spec import PipelineSpec
from models.settings import Settings
from streams.config.loader import load_settings
from streams.core.errors import ConfigErrors

CONFIG_HELP = "directory holding sluice.yaml (and pipelines/); default: config"


def fail(message: str) -> None:
    if logging_json():  # a worker's stderr is a log stream: no plain line in it
        logging.getLogger("sluice.cli").critical("error: %s", message)
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(1)


def logging_json() -> bool:
    """Whether `start_logging` set up JSON lines on stderr (never before settings load)."""
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


def start_logging(settings: Settings, log_format: str | None, log_level: str | None) -> Settings:
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


def load_config(config_dir: Path) -> tuple[Settings, dict[str, PipelineSpec]]:
    from streams.config.loader import load_config

    loaded = load_config(config_dir)
    if loaded.errors:
        for error in loaded.errors:
            click.echo(error.describe(), err=True)
        click.echo(f"fix the errors above (`sluice check {config_dir}`)", err=True)
        sys.exit(1)
    return loaded.require()


def settings_only(config_dir: Path | None) -> Settings:
    from streams.config.loader import default_settings

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
