"""`sluice worker --engine faust`: the configured pipelines as agents of a Faust app that
sluice makes from the settings (app id, brokers, security, web port), run by Faust's
worker. Exits 0 after SIGTERM or Ctrl-C, 70 when a pipeline crashed (as `sluice worker`).

The app serves sluice's views both under `/sluice/` and where `sluice worker` serves
them (`/metrics`, `/ready`, `/health`, `/api/pipelines`), so probes, the Prometheus scrape
config and `sluice bench` work unchanged.
"""

from __future__ import annotations

from typing import Any

from models.pipeline_spec import PipelineSpec
from models.settings import Settings
from streams.runtime.kafka import ssl_context

from .attach import attach_specs, host_of
from .views import add_views

EXIT_CRASHED = 70
# A worker joins the group in about half the session timeout on the embedded broker
# (measured: 30 s with Faust's default 60 s, 5 s with 10 s).
SESSION_TIMEOUT_S = 10
HEARTBEAT_S = 1


def make_app(settings: Settings, pipelines: dict[str, PipelineSpec]) -> Any:
    import faust

    app = faust.App(
        settings.app_id,
        broker=list(settings.brokers),
        broker_credentials=_credentials(settings),
        web_port=settings.web.port,
        web_bind=settings.web.host,
        web_host=settings.web.host,
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=HEARTBEAT_S,
        topic_partitions=settings.processing.partitions,
    )
    attach_specs(app, list(pipelines.values()), settings)
    host = host_of(app)
    assert host is not None
    add_views(app, host, prefix="")
    return app


def run_worker(settings: Settings, pipelines: dict[str, PipelineSpec]) -> int:
    """Run until stopped; returns the exit status."""
    import faust

    app = make_app(settings, pipelines)

    class Worker(faust.Worker):
        def _setup_logging(self) -> None:
            """Patch: mode adds a plain handler of its own to the root logger; sluice's
            (JSON lines by default, set up by the CLI) stay the only ones."""
            from streams.runtime.logs import configure_logging

            configure_logging(settings.log)

    # redirect_stdouts off: sluice logs to stderr, which mode would turn into a logger
    worker = Worker(app, loglevel=settings.log.level, quiet=True, redirect_stdouts=False)
    code = 0
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    host = host_of(app)
    if host is not None and host.crashed is not None:
        return EXIT_CRASHED
    return code


def _credentials(settings: Settings) -> Any:
    """Faust's credentials for the configured security (None for PLAINTEXT)."""
    import faust

    kafka = settings.kafka
    protocol = kafka.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(kafka) if protocol in ("SSL", "SASL_SSL") else None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=kafka.username,
        password=kafka.password.get_secret_value() if kafka.password else None,
        mechanism=kafka.sasl_mechanism or "PLAIN",
        ssl_context=context,
    )
