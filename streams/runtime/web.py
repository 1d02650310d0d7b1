"""HTTP endpoints of a worker: / (the dashboard), /health, /ready, /metrics, /api/pipelines and
/api/state/<pipeline>/<step>/<key>; with `web.token` set, /api/* needs the bearer token."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import Any, Protocol

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from models.settings import Settings
from streams.runtime.prometheus import Registry

# With web.token set only the API needs it: the dashboard page itself holds no data and
# reads the token from its URL fragment (/#token=...), which browsers never send.
PROTECTED_PREFIX = "/api/"
FAVICON = (
    b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
    b'<path d="M1 4h14M1 8h14M1 12h14" stroke="#4cc2ff" stroke-width="2"/></svg>'
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Readiness:
    """What /ready reports: every check the worker registers (broker reachable, partitions
    assigned, state and tables recovered, making progress, components responsive), started,
    and no task of the worker crashed."""

    def __init__(self) -> None:
        self.started = False
        self.crashed: str | None = None
        self.checks: dict[str, Callable[[], bool]] = {}

    def state(self) -> dict[str, Any]:
        results = {name: bool(check()) for name, check in self.checks.items()}
        results["started"] = self.started
        results["no_crash"] = self.crashed is None
        return {"ready": all(results.values()), "checks": results, "crash": self.crashed}


class PipelineView(Protocol):
    def status(self) -> dict[str, Any]: ...
    def state_of(self, step: str, key: str) -> Any: ...


DASHBOARD = resources.files("streams.runtime").joinpath("dashboard.html")


def make_web_app(
    settings: Settings,
    registry: Registry,
    readiness: Readiness,
    pipelines: Mapping[str, PipelineView] | None = None,
) -> web.Application:
    views = dict(pipelines or {})
    token = settings.web.token.get_secret_value() if settings.web.token else None

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is not None and request.path.startswith(PROTECTED_PREFIX):
            supplied = request.headers.get("Authorization", "")
            if not hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode()):
                return web.json_response(
                    {"error": "missing or wrong token: send 'Authorization: Bearer <web.token>'"},
                    status=401,
                )
        return await handler(request)

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(_: web.Request) -> web.Response:
        state = readiness.state()
        return web.json_response(state, status=200 if state["ready"] else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def api_pipelines(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "ready": readiness.state()["ready"],
                "pipelines": [view.status() for view in views.values()],
            },
            dumps=_dumps,
        )

    async def api_state(request: web.Request) -> web.Response:
        name, step, key = (request.match_info[k] for k in ("pipeline", "step", "key"))
        view = views.get(name)
        if view is None:
            return web.json_response(
                {"error": f"no pipeline {name!r}; pipelines: {sorted(views)}"}, status=404
            )
        try:
            value = view.state_of(step, key)
        except KeyError:
            steps = [s["name"] for s in view.status()["steps"]]
            return web.json_response(
                {"error": f"pipeline {name!r} has no stateful step {step!r} (steps: {steps})"},
                status=404,
            )
        if value is None:
            return web.json_response(
                {"error": f"no state for key {key!r} in {name}.{step}"}, status=404
            )
        return web.json_response(
            {"pipeline": name, "step": step, "key": key, "state": value}, dumps=_dumps
        )

    async def dashboard(_: web.Request) -> web.Response:
        return web.Response(text=DASHBOARD.read_text(encoding="utf-8"), content_type="text/html")

    async def favicon(_: web.Request) -> web.Response:
        return web.Response(body=FAVICON, content_type="image/svg+xml")

    app = web.Application(middlewares=[require_token])
    app.router.add_get("/", dashboard)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/api/pipelines", api_pipelines)
    app.router.add_get("/api/state/{pipeline}/{step}/{key}", api_state)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    return app


def _dumps(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner
