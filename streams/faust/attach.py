"""`attach(app, *paths, settings=None)`: sluice pipelines as agents of a Faust app.

    app = faust.App("shop", broker="kafka://localhost:9092")
    agents = attach(app, "config/pipelines/payments-clean.yaml")   # files, .sql files, folders

`faust -A shop worker` then runs them beside the app's own agents (see docs/faust.md).
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

from models.pipeline_spec import PipelineSpec
from models.settings import Settings
from streams.config.loader import default_settings, load_pipelines, make_importable, pipeline_files
from streams.core.errors import SluiceError
from streams.runtime.kafka import connection_options

from . import patches
from .host import Host
from .views import add_views

_HOSTS: weakref.WeakKeyDictionary[Any, Host] = weakref.WeakKeyDictionary()


class FaustHostError(SluiceError):
    """A pipeline cannot run as a Faust agent the way it is configured."""


def attach(app: Any, *paths: str | Path, settings: Settings | None = None) -> list[Any]:
    """Run the pipelines of `paths` (pipeline files, .sql files, or folders of them) as
    agents of `app`; returns the agents (a re-keying pipeline has two: the re-key stage
    and the pipeline). `settings`: sluice's (processing, kafka security, telemetry);
    default: the defaults with `SLUICE_*` variables, brokers from the app."""
    settings = _settings_for(app, settings)
    return attach_specs(app, load_specs(paths), settings)


def attach_specs(app: Any, specs: list[PipelineSpec], settings: Settings) -> list[Any]:
    """`attach` for pipelines already loaded (`sluice worker --engine faust`)."""
    patches.apply()
    patches.true_changelog_ends(_connection_of)
    host = _HOSTS.get(app)
    if host is None:
        # Patch: with stream_wait_empty (Faust's default) a stop or rebalance waits for every
        # fetched record to be acked, and one fanned out to several agents that a rebalance
        # cleared from a queue never is: the worker hung at SIGTERM (measured, a topic read
        # by three pipelines). sluice's agents finish their batch at a revocation and at
        # stop themselves; Faust commits only acked records either way (at-least-once).
        app.conf.stream_wait_empty = False
        patches.keep_queued_records(app)
        host = _HOSTS[app] = Host(app, settings)
        patches.before_tables_start(app, host.fit_state_to_inputs)
        add_views(app, host)
    agents: list[Any] = []
    for spec in specs:
        if spec.pipeline in host.agents:
            raise FaustHostError(f"pipeline {spec.pipeline!r} is attached to this app already")
        if spec.join is not None:
            # an agent reads one topic; a join's second stream would need a second agent
            # feeding the same runner and tables co-partitioned across both: not built yet,
            # and running it without its second stream would give wrong results silently
            raise FaustHostError(
                f"pipeline {spec.pipeline!r} joins the stream {spec.join.stream!r}: joins are "
                "not hosted by Faust yet; run this pipeline with `sluice worker` (the native "
                "engine), or attach the other pipelines only"
            )
        agents += host.add(spec).agents
    return agents


def _connection_of(app: Any) -> dict[str, Any] | None:
    host = _HOSTS.get(app)
    return None if host is None else connection_options(host.settings)


def host_of(app: Any) -> Host | None:
    """sluice's part of `app`, once `attach` was called on it."""
    return _HOSTS.get(app)


def load_specs(paths: tuple[str | Path, ...]) -> list[PipelineSpec]:
    specs: list[PipelineSpec] = []
    for raw in paths:
        path = Path(raw)
        make_importable(path.parent if path.is_file() else path)
        files = pipeline_files(path) if path.is_dir() else [path]
        if not files:
            raise FaustHostError(f"{path}: no pipeline files (*.yaml, *.yml, *.sql) in it")
        for file in files:
            specs += load_pipelines(file)
    return specs


def _settings_for(app: Any, settings: Settings | None) -> Settings:
    settings = settings if settings is not None else default_settings()
    if settings.processing.guarantee == "exactly_once" or (
        str(app.conf.processing_guarantee).endswith("exactly_once")
    ):
        raise FaustHostError(
            "processing.guarantee exactly_once is sluice's own engine's (`sluice worker`); "
            "pipelines in a Faust app are at-least-once"
        )
    if not settings.brokers:
        brokers = [str(url) for url in app.conf.broker]
        settings = settings.model_copy(update={"brokers": brokers})
    return settings
