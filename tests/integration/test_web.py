"""The worker's HTTP API: pipelines, state, dashboard, token auth, trace context."""

from __future__ import annotations

from typing import Any

import pytest

from streams.runtime.broker import EmbeddedBroker
from tests.integration.conftest import (
    consume_all,
    create_topics,
    http_get,
    produce_lines,
    unique,
)
from tests.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(tansu: EmbeddedBroker) -> EmbeddedBroker:
    """The embedded broker only: what this module tests does not depend on the broker."""
    return tansu


PIPELINE = """
pipeline: web-{tag}
source: {{topic: in-{tag}, key: user}}
steps:
  - component: {{class: "tests.fixtures.components:CountPerKey"}}
sink: {{topic: out-{tag}}}
"""


async def test_api_state_dashboard_and_token(broker: EmbeddedBroker, make_worker: Any) -> None:
    tag = unique("web")
    await create_topics(broker, f"in-{tag}")
    worker = make_worker({"web": PIPELINE.format(tag=tag)})
    worker.wait_ready()
    port = worker.web_port
    traced = b'{"user": "u1", "n": 1}'
    await produce_lines(broker, f"in-{tag}", [traced, b'{"user": "u1"}', b"not json"])
    [first, *_] = await consume_all(broker, f"out-{tag}", 2, settle=0.5)
    assert dict(first.headers)["traceparent"].startswith(b"00-")
    await eventually(
        lambda: http_get(port, "/api/pipelines")[1]["pipelines"][0]["events_in"] >= 3,
        20,
        "the API counts the three records",
    )
    status, body = http_get(port, "/api/pipelines")
    view = body["pipelines"][0]
    assert status == 200 and body["ready"] is True
    assert view["pipeline"] == f"web-{tag}" and view["events_out"] == 2
    assert view["recent_dead_letters"][0]["type"] == "invalid_json"
    assert view["spec"]["steps"][0]["component"]["class"].endswith("CountPerKey")
    status, state = http_get(port, f"/api/state/web-{tag}/component/u1")
    assert status == 200 and state["state"] == {"seen": 2}
    status, missing = http_get(port, f"/api/state/web-{tag}/nope/u1")
    assert status == 404 and "no stateful step 'nope'" in missing["error"]
    status, page = http_get(port, "/")
    assert status == 200 and "<canvas" in page and "api/pipelines" in page
    assert worker.stop() == 0


async def test_token_protects_the_api_but_not_the_page_health_ready_metrics(
    broker: EmbeddedBroker, make_worker: Any
) -> None:
    tag = unique("tok")
    await create_topics(broker, f"in-{tag}")
    worker = make_worker({"web": PIPELINE.format(tag=tag)}, extra="")
    (worker.config / "sluice.yaml").write_text(
        (worker.config / "sluice.yaml")
        .read_text()
        .replace("web: {port:", "web: {token: s3cret, port:")
    )
    worker.stop()
    worker.start()
    worker.wait_ready()
    port = worker.web_port
    for path in ("/health", "/ready", "/metrics"):
        assert http_get(port, path)[0] == 200, path
    # the page holds no data: it reads the token from /#token=… and sends it to /api
    status, page = http_get(port, "/")
    assert status == 200 and "<html" in page.lower() and "s3cret" not in page
    for path in ("/api/pipelines", f"/api/state/web-{tag}/component/u1"):
        status, body = http_get(port, path)
        assert status == 401 and "Bearer" in body["error"], path
    assert http_get(port, "/api/pipelines", token="wrong")[0] == 401
    assert http_get(port, "/api/pipelines", token="s3cret")[0] == 200
    status, metrics = http_get(port, "/metrics")
    assert "s3cret" not in metrics
    assert worker.stop() == 0


async def test_every_declared_series_is_exported_at_zero_from_the_start(
    broker: EmbeddedBroker, make_worker: Any
) -> None:
    """Prometheus practice (issue 9): a series that appears only at its first change is
    not a 0 to rate() or to an alert; every declared pipeline, step and alert series is
    there before any record."""
    tag = unique("zero")
    text = f"""
pipeline: zero-{tag}
source: {{topic: in-{tag}, timestamp: ts}}
steps:
  - validate: {{schema: {{user: str, v: float}}}}
  - filter: "v > 0"
  - window: {{type: tumbling, size: 1m, key: user, aggregates: {{total: sum(v)}}}}
  - alert: {{name: big-{tag}, when: "total > 100", key: [user]}}
sink: {{route: [{{when: "total > 5", to: big-{tag}}}]}}
"""
    await create_topics(broker, f"in-{tag}")
    worker = make_worker({"zero": text})
    worker.wait_ready()
    _, metrics = worker.get("/metrics")
    pipeline = f'pipeline="zero-{tag}"'
    for series in (
        f"sluice_events_in_total{{{pipeline}}} 0.0",
        f'sluice_alerts_firing{{alert="big-{tag}",{pipeline}}} 0.0',
        f'sluice_dead_letters_total{{{pipeline},step="source",type="invalid_json"}} 0.0',
        f'sluice_dead_letters_total{{{pipeline},step="validate",type="schema"}} 0.0',
        f'sluice_dead_letters_total{{{pipeline},step="window",type="late"}} 0.0',
        f'sluice_events_dropped_total{{{pipeline},reason="filter",step="filter"}} 0.0',
        f'sluice_events_dropped_total{{{pipeline},reason="unrouted",step="sink"}} 0.0',
        f'sluice_events_out_total{{{pipeline},topic="big-{tag}"}} 0.0',
        f"sluice_late_events_total{{{pipeline}}} 0.0",
        f"sluice_windows_open{{{pipeline}}} 0.0",
    ):
        assert series in metrics, series
    assert worker.stop() == 0
