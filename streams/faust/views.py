"""sluice's views on a Faust app's web server: `/sluice/metrics` (Prometheus text: the
`sluice_*` series, so the shipped alert rules and Grafana dashboard work unchanged),
`/sluice/ready` (200 or 503 with the checks) and `/sluice/api/pipelines`.

`sluice worker --engine faust` also serves them where `sluice worker` does (`/metrics`,
`/ready`, `/health`, `/api/pipelines`): probes and scrape configs stay the same.
"""

from __future__ import annotations

from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .host import Host

# aiohttp refuses a charset inside content_type (the body is bytes; Prometheus reads UTF-8)
_METRICS_TYPE = "; ".join(p for p in CONTENT_TYPE_LATEST.split("; ") if not p.startswith("charset"))


def add_views(app: Any, host: Host, prefix: str = "/sluice") -> None:
    async def metrics(view: Any, request: Any) -> Any:
        return view.bytes(generate_latest(host.registry.registry), content_type=_METRICS_TYPE)

    async def ready(view: Any, request: Any) -> Any:
        state = host.readiness()
        return view.json(state, status=200 if state["ready"] else 503)

    async def health(view: Any, request: Any) -> Any:
        return view.json({"status": "ok"})

    async def pipelines(view: Any, request: Any) -> Any:
        body = {
            "ready": host.readiness()["ready"],
            "pipelines": [agent.status() for agent in host.agents.values()],
        }
        # values the view's own json() cannot encode (sets of seconds, …) as text
        return view.bytes(orjson.dumps(body, default=str), content_type="application/json")

    tag = prefix.strip("/").replace("/", "_") or "root"
    for path, handler in (
        ("metrics", metrics),
        ("ready", ready),
        ("health", health),
        ("api/pipelines", pipelines),
    ):
        handler.__name__ = f"sluice_{tag}_{path.replace('/', '_')}"
        app.page(f"{prefix}/{path}")(handler)
