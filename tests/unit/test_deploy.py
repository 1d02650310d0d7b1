"""docker-compose.yml, the Dockerfile and the Prometheus/Grafana files fit together."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from streams.cli import main
from tests.brokers.apache_kafka import BROKER_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
METRICS = {
    "sluice_events_in_total",
    "sluice_events_out_total",
    "sluice_events_dropped_total",
    "sluice_dead_letters_total",
    "sluice_step_seconds",
    "sluice_end_to_end_latency_seconds",
    "sluice_event_time_lag_seconds",
    "sluice_consumer_lag",
    "sluice_late_events_total",
    "sluice_windows_open",
    "sluice_alerts_firing",
}


def sluice_command_is_valid(args: list[str]) -> None:
    ctx = main.make_context("sluice", list(args))
    name, command, rest = main.resolve_command(ctx, list(args))
    assert command is not None, f"no sluice command {name!r}"
    command.make_context(name or "", rest, parent=ctx)  # raises on unknown options


def test_every_referenced_file_exists() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (ROOT / source).exists(), f"{name}: {source} is missing"
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").exists()


def test_kafka_is_apache_kraft_single_node() -> None:
    kafka = SERVICES["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]


# what only docker-compose's broker has: its node, roles and listeners
COMPOSE_ONLY_KAFKA = {
    "KAFKA_NODE_ID",
    "KAFKA_PROCESS_ROLES",
    "KAFKA_LISTENERS",
    "KAFKA_ADVERTISED_LISTENERS",
    "KAFKA_CONTROLLER_LISTENER_NAMES",
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
    "KAFKA_CONTROLLER_QUORUM_VOTERS",
}


def test_kafka_runs_the_test_brokers_settings() -> None:
    """docker-compose's Apache Kafka and the tests' (tests/brokers/apache_kafka.py) behave
    alike: the apache/kafka image turns KAFKA_A_B into the property a.b."""
    environment = SERVICES["kafka"]["environment"]
    expected = {
        "KAFKA_" + key.upper().replace(".", "_"): value for key, value in BROKER_SETTINGS.items()
    }
    settings = {k: str(v) for k, v in environment.items() if k not in COMPOSE_ONLY_KAFKA}
    assert settings == expected
    assert SERVICES["kafka"]["image"] == "apache/kafka:3.9.1"


def test_web_ports_are_published_on_loopback_unless_opened_with_a_token() -> None:
    published = {name: s["ports"] for name, s in SERVICES.items() if "ports" in s}
    assert set(published) == {"worker-1", "worker-2", "prometheus", "grafana"}
    for name, ports in published.items():
        for port in ports:
            assert port.startswith("${SLUICE_PUBLISH_HOST:-127.0.0.1}:"), (name, port)
    # compose stops when the host is opened without a token
    assert COMPOSE["x-publish-guard"] == (
        "${SLUICE_PUBLISH_HOST:+${SLUICE_WEB__TOKEN:?SLUICE_PUBLISH_HOST publishes the web "
        "ports beyond this machine - set SLUICE_WEB__TOKEN too}}"
    )
    for worker in ("worker-1", "worker-2"):
        assert SERVICES[worker]["environment"]["SLUICE_WEB__TOKEN"] == "${SLUICE_WEB__TOKEN:-}"


@pytest.mark.parametrize("service", ["worker-1", "worker-2"])
def test_workers_run_a_valid_sluice_command(service: str) -> None:
    worker = SERVICES[service]
    sluice_command_is_valid(worker["command"])
    config_dir = worker["command"][worker["command"].index("--config") + 1]
    assert (ROOT / config_dir / "sluice.yaml").exists()
    brokers = json.loads(worker["environment"]["SLUICE_BROKERS"])
    assert brokers == ["kafka://kafka:9092"]


def test_demo_traffic_commands_are_valid() -> None:
    script = SERVICES["demo-traffic"]["entrypoint"][-1]
    commands = [part.split() for step in script.split("&&") for part in step.split("|")]
    sluice_commands = [c for c in commands if c[0] == "sluice"]
    assert len(sluice_commands) == 2
    for command in sluice_commands:
        sluice_command_is_valid(command[1:])


def test_bad_command_would_be_caught() -> None:
    with pytest.raises(click.UsageError):
        sluice_command_is_valid(["worker", "--no-such-option"])


def test_dockerfile_is_multistage_nonroot_with_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    assert re.search(r"^USER (?!root)", text, re.M)
    assert "HEALTHCHECK" in text and "/health" in text
    for line in re.findall(r"^COPY .*$", text, re.M):
        if "--from=" in line:
            continue
        for source in line.split()[1:-1]:
            if not source.startswith("--"):
                assert (ROOT / source).exists(), source


def test_prometheus_scrapes_both_workers_and_alerts_use_real_metrics() -> None:
    scrape = yaml.safe_load((ROOT / "config/prometheus/prometheus.yml").read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert sorted(t.split(":")[0] for t in targets) == ["worker-1", "worker-2"]
    rules = yaml.safe_load((ROOT / "config/prometheus/alerts.yml").read_text())["groups"][0][
        "rules"
    ]
    severities = {r["alert"]: r["labels"]["severity"] for r in rules}
    assert severities == {
        "SluiceErrorRateHigh": "critical",
        "SluiceLatencyP99High": "warning",
        "SluiceCpuHigh": "warning",
        "SluiceConsumerLagGrowing": "warning",
    }
    used = set(re.findall(r"sluice_[a-z_]+", json.dumps(rules)))
    assert {u.removesuffix("_bucket") for u in used} <= METRICS


def test_grafana_dashboard_queries_known_metrics() -> None:
    dashboard = json.loads((ROOT / "config/grafana/dashboards/sluice.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m.removesuffix("_bucket") for e in exprs for m in re.findall(r"sluice_[a-z_]+", e)}
    assert used and used <= METRICS


def test_design_metric_names_are_what_the_worker_exports() -> None:
    from streams.runtime.prometheus import Registry

    exported = set()
    for family in Registry().registry.collect():
        for sample in family.samples:
            exported.add(
                sample.name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
            )
        exported.add(family.name)
    missing = {m for m in METRICS if m not in exported and m.removesuffix("_total") not in exported}
    assert not missing, missing
    assert "process_cpu_seconds_total" in exported
