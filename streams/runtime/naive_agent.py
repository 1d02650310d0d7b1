"""The naive Faust baseline for `sluice bench kafka`: the same pipeline, record by record.

`async for event in stream`, one record through the pure pipeline, one awaited send —
how a Faust app is usually written. Run as `python -m streams.runtime.naive_agent DIR`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import faust

from streams.config import load_config
from streams.pipeline import Pipeline
from streams.records import Event
from streams.runtime.agents import raw_topic
from streams.runtime.app import make_app
from streams.runtime.metrics import Registry
from streams.runtime.sender import ResultSender
from streams.runtime.web import Readiness, make_web_app, serve


def main() -> None:
    settings, pipelines = load_config(Path(sys.argv[1])).require()
    app = make_app(settings)
    registry = Registry()
    readiness = Readiness()
    spec = next(iter(pipelines.values()))
    pipeline = Pipeline(spec, metrics=registry.pipeline(spec.pipeline))
    source = raw_topic(app, spec.source.topic, settings.processing.partitions)

    async def send(*args: Any) -> Any:
        return await app.producer.send(*args)

    sender = ResultSender(send, spec.dead_letter_topic, spec.source.topic)

    @app.agent(source)
    async def naive(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            record = Event(
                None,
                key=None,
                raw=message.value,
                partition=message.partition,
                offset=message.offset,
                timestamp_ms=int(message.timestamp * 1000),
            )
            await sender.send(await pipeline.process([record]))

    @app.task  # type: ignore[untyped-decorator]
    async def web() -> None:
        await serve(make_web_app(settings, registry, readiness), "127.0.0.1", settings.web.port)
        readiness.started = True

    faust.Worker(
        app, loglevel="WARNING", quiet=True, redirect_stdouts=False, override_logging=False
    ).execute_from_commandline()


if __name__ == "__main__":
    main()
