"""processing.guarantee: exactly_once on Apache Kafka (issue 10): one of two workers
killed with SIGKILL mid-stream, and a read_committed consumer sees every result exactly
once — none twice, none missing — equal to replay's; on a broker without transactions
the worker refuses to start, with one clear line."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from streams.runtime.broker import EmbeddedBroker
from tests.brokers.apache_kafka import ApacheKafka
from tests.integration.conftest import SLUICE
from tests.stress.takeover import Plan, run_round

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("seed", "keyed", "stateless"),
    [(7, True, False), (8, False, True), (105, True, False)],
    ids=["windows-keyed", "stateless", "windows-mid-rebalance"],
)
async def test_takeover_after_sigkill_gives_every_result_exactly_once(
    apache_kafka: ApacheKafka, seed: int, keyed: bool, stateless: bool
) -> None:
    plan = Plan.from_seed(seed, keyed, events=20_000, stateless=stateless, exactly_once=True)
    report = await run_round(apache_kafka.url, plan)
    print(report.line())
    assert report.exact and report.resent == 0, report.line()


def test_exactly_once_is_refused_on_a_broker_without_transactions(
    tansu: EmbeddedBroker, tmp_path: Any
) -> None:
    config = tmp_path / "config"
    (config / "pipelines").mkdir(parents=True)
    (config / "sluice.yaml").write_text(
        f"brokers: ['{tansu.url}']\nprocessing: {{guarantee: exactly_once}}\n"
        "web: {port: 0}\nkafka: {connect_timeout: 10s}\n"
    )
    (config / "pipelines" / "p.yaml").write_text(
        "pipeline: p\nsource: {topic: eos-in}\nsink: {topic: eos-out}\n"
    )
    done = subprocess.run(
        [str(SLUICE), "worker", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "exactly_once needs Kafka transactions" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
