"""A Faust app with its own agent and a sluice pipeline attached.

The pipeline (config/pipelines/payments-clean.yaml) validates the raw payments, converts
them to EUR and routes large ones to `payments-large`; the app's own agent counts the
large payments per merchant in a Faust table. One worker runs both:

    faust -A examples.faust_app worker -l info          # from the repository root
    python -m streams.offline.demo_data 2000 > payments.jsonl
    sluice produce payments --input payments.jsonl --key user_id
    curl localhost:6066/sluice/api/pipelines            # also /sluice/metrics, /sluice/ready

EXAMPLE_BROKER (default kafka://localhost:9092), EXAMPLE_PIPELINES (a file, .sql file or
folder; default the one above) and EXAMPLE_WEB_PORT (6066) change what it connects to.
"""

from __future__ import annotations

import os
from typing import Any

import faust

from streams.faust import attach

app = faust.App(
    "shop",
    broker=os.environ.get("EXAMPLE_BROKER", "kafka://localhost:9092"),
    web_port=int(os.environ.get("EXAMPLE_WEB_PORT", "6066")),
    # a worker joins the group in about half the session timeout on the embedded broker
    broker_session_timeout=10,
    broker_heartbeat_interval=1,
    topic_partitions=4,
)

# the sluice pipeline: its agents, its tables (`payments-clean` keeps none), its metrics
agents = attach(app, os.environ.get("EXAMPLE_PIPELINES", "config/pipelines/payments-clean.yaml"))

# the team's own agent beside it, reading what the pipeline writes
large_payments = app.topic("payments-large", value_serializer="json")
per_merchant = app.Table("large-payments-per-merchant", default=int, partitions=4)


@app.agent(large_payments)
async def audit(stream: Any) -> None:
    async for payment in stream.group_by(lambda p: p["merchant"], name="merchant"):
        per_merchant[payment["merchant"]] += 1


if __name__ == "__main__":
    app.main()
