"""Security for real (issue 10): sluice against an Apache Kafka that checks it — SASL_SSL
with SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN, TLS with a private CA, mutual TLS. The
worker (its changelogs and lookup table included), `sluice produce` and `sluice consume`
all go through the secured listener; results equal replay's; a wrong password or an
untrusted certificate is one clear line and a non-zero exit within 30 s; the password
shows up in no log line and no endpoint."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from streams.config.loader import load_pipeline
from streams.offline import replay
from tests.brokers.apache_kafka import ApacheKafka
from tests.brokers.tls import make_tls
from tests.integration.conftest import SLUICE, unique

pytestmark = pytest.mark.integration

PIPELINE = """
pipeline: sec-{tag}
source: {{topic: in-{tag}, key: user, timestamp: ts}}
tables:
  users: {{topic: users-{tag}, key: user}}
steps:
  - enrich: {{table: users, on: user, fields: [tier], missing: keep}}
  - map: {{user: user, v: v, tier: "COALESCE(tier, 'none')"}}
  - window:
      type: tumbling
      size: 10s
      key: [user, tier]
      aggregates: {{n: count(), total: sum(v)}}
sink: {{topic: out-{tag}}}
"""
BASE_MS = 1_795_000_000_000


# (listener, SASL mechanism)
SECURED = [
    ("SASL_SSL", "SCRAM-SHA-256"),
    ("SASL_SSL", "SCRAM-SHA-512"),
    ("SASL_SSL", "PLAIN"),
    ("SSL", None),
    ("MTLS", None),
]


def config_dir(folder: Path, kafka: ApacheKafka, listener: str, mechanism: str | None) -> Path:
    """A config directory whose sluice.yaml reaches `listener` with its security."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = kafka.sluice_settings(listener, mechanism)
    settings["web"] = {"port": 0}
    (folder / "sluice.yaml").write_text(yaml.safe_dump(settings))
    (folder / "pipelines").mkdir(exist_ok=True)
    return folder


def sluice(*args: str, timeout: float = 60, stdin: bytes | None = None) -> Any:
    return subprocess.run(
        [str(SLUICE), *args],
        capture_output=True,
        input=stdin,
        timeout=timeout,
        check=False,
        env={**os.environ, "SLUICE_WEB__PORT": "0"},
    )


def lines(count: int) -> list[bytes]:
    return [
        orjson.dumps({"user": f"u{i % 5}", "v": i, "ts": BASE_MS + i * 100}) for i in range(count)
    ]


@pytest.mark.parametrize(
    ("listener", "mechanism"), SECURED, ids=[f"{name}-{how}" for name, how in SECURED]
)
async def test_a_secured_listener_gives_replays_results(
    apache_kafka: ApacheKafka, make_worker: Any, tmp_path: Path, listener: str, mechanism: str
) -> None:
    await secured_run_equals_replay(apache_kafka, make_worker, tmp_path, listener, mechanism)


# `sluice worker --engine faust` maps the same `kafka` settings to Faust's credentials
# (streams.faust.host_worker: SASLCredentials with the TLS context, or SSLCredentials with
# the client certificate); its agents, changelogs, lookup table and re-key stage all go
# through the secured listener.
FAUST_SECURED = [("SASL_SSL", "SCRAM-SHA-512"), ("MTLS", None)]


@pytest.mark.parametrize(
    ("listener", "mechanism"), FAUST_SECURED, ids=[f"{name}-{how}" for name, how in FAUST_SECURED]
)
async def test_the_faust_engine_on_a_secured_listener_gives_replays_results(
    apache_kafka: ApacheKafka, make_worker: Any, tmp_path: Path, listener: str, mechanism: str
) -> None:
    await secured_run_equals_replay(
        apache_kafka, make_worker, tmp_path, listener, mechanism, engine="faust"
    )


async def secured_run_equals_replay(
    kafka: ApacheKafka,
    make_worker: Any,
    tmp_path: Path,
    listener: str,
    mechanism: str | None,
    engine: str = "native",
) -> None:
    """A worker of `engine` through `listener`: its windows equal replay's, and the
    password shows in no endpoint and no log line."""
    tag = unique("sec")
    text = PIPELINE.format(tag=tag)
    config = config_dir(tmp_path / "cli", kafka, listener, mechanism)
    settings = kafka.sluice_settings(listener, mechanism)
    security = f"kafka: {orjson.dumps(settings['kafka']).decode()}\nengine: {engine}\n"
    data = lines(500)
    users = [
        orjson.dumps({"user": f"u{i}", "tier": "gold" if i % 2 else "silver"}) for i in range(4)
    ]
    (tmp_path / "in.jsonl").write_bytes(b"".join(x + b"\n" for x in data))
    (tmp_path / "users.jsonl").write_bytes(b"".join(x + b"\n" for x in users))

    # the lookup table first, with sluice produce over the secured listener
    done = sluice("produce", f"users-{tag}", "--input", str(tmp_path / "users.jsonl"),
                  "--key", "user", "--config", str(config))  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    worker = make_worker({"sec": text}, broker_url=settings["brokers"][0], extra=security)
    worker.wait_ready(90)
    done = sluice("produce", f"in-{tag}", "--input", str(tmp_path / "in.jsonl"),
                  "--key", "user", "--config", str(config))  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()

    (tmp_path / "p.yaml").write_text(text)
    await replay(
        load_pipeline(tmp_path / "p.yaml"),
        str(tmp_path / "in.jsonl"),
        tmp_path / "replay",
        tables={"users": tmp_path / "users.jsonl"},
    )
    # the last windows close by wall clock on the worker, at the end of the input in replay
    expected = (tmp_path / "replay" / f"out-{tag}.jsonl").read_bytes().splitlines()
    deadline = time.monotonic() + 60
    got: list[bytes] = []
    while time.monotonic() < deadline:
        done = sluice("consume", f"out-{tag}", "--from-beginning", "--idle-timeout", "3",
                      "--config", str(config))  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        got = sorted(set(done.stdout.splitlines()))
        if len(got) >= len(expected):
            break
    assert {orjson.dumps(orjson.loads(x)) for x in got} == {
        orjson.dumps(orjson.loads(x)) for x in expected
    }
    # the secret shows nowhere
    for path in ("/metrics", "/api/pipelines", "/ready"):
        _, body = worker.get(path)
        assert kafka.password not in str(body)
    assert worker.stop() == 0
    assert kafka.password not in worker.log_path.read_text()


@pytest.mark.parametrize("command", ["worker", "produce", "consume"])
def test_a_wrong_password_is_one_clear_line_and_a_quick_exit(
    apache_kafka: ApacheKafka, tmp_path: Path, command: str
) -> None:
    config = config_dir(tmp_path, apache_kafka, "SASL_SSL", "SCRAM-SHA-512")
    settings = yaml.safe_load((config / "sluice.yaml").read_text())
    settings["kafka"]["password"] = "not-the-password"
    (config / "sluice.yaml").write_text(yaml.safe_dump(settings))
    (config / "pipelines" / "p.yaml").write_text(
        "pipeline: p\nsource: {topic: sec-in}\nsink: {topic: sec-out}\n"
    )
    (tmp_path / "in.jsonl").write_bytes(b'{"a": 1}\n')
    args = {
        "worker": ["worker"],
        "produce": ["produce", "sec-in", "--input", str(tmp_path / "in.jsonl")],
        "consume": ["consume", "sec-out", "--idle-timeout", "5"],
    }[command]
    began = time.monotonic()
    done = sluice(*args, "--config", str(config), timeout=60)
    took = time.monotonic() - began
    stderr = done.stderr.decode()
    assert done.returncode != 0, stderr
    assert took < 30, f"{took:.0f}s"
    assert "authentication failed" in stderr, stderr
    assert apache_kafka.listeners["SASL_SSL"].address in stderr, stderr
    assert "Traceback" not in stderr, stderr
    assert "not-the-password" not in stderr + done.stdout.decode()


def test_an_untrusted_server_certificate_is_one_clear_line(
    apache_kafka: ApacheKafka, tmp_path: Path
) -> None:
    config = config_dir(tmp_path, apache_kafka, "SSL", None)
    other = make_tls(tmp_path / "other-ca")  # a CA that did not sign the broker's cert
    settings = yaml.safe_load((config / "sluice.yaml").read_text())
    settings["kafka"]["ssl_cafile"] = str(other.ca_file)
    (config / "sluice.yaml").write_text(yaml.safe_dump(settings))
    (config / "pipelines" / "p.yaml").write_text(
        "pipeline: p\nsource: {topic: sec-in}\nsink: {topic: sec-out}\n"
    )
    began = time.monotonic()
    done = sluice("worker", "--config", str(config), timeout=60)
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert time.monotonic() - began < 30
    assert "certificate is not trusted" in stderr and "ssl_cafile" in stderr, stderr
    assert "Traceback" not in stderr
