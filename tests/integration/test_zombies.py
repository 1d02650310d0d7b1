"""Zombies (issue 22 cases 1 and 2), on Apache Kafka: a worker stops itself at a named
point inside a checkpoint (streams.runtime.faults), stays stopped beyond the session
timeout while the other worker takes its partitions and records flow, then resumes. Its
late writes must change nothing: every result equals replay's (tests/stress/zombie.py)."""

from __future__ import annotations

import pytest

from tests.brokers.apache_kafka import ApacheKafka
from tests.stress.zombie import zombie_round

pytestmark = pytest.mark.integration


async def test_an_at_least_once_zombie_resurrects_no_state(apache_kafka: ApacheKafka) -> None:
    # stopped after its outputs are acknowledged, with its state changes not yet written:
    # on waking it writes them after the survivor's, which a restore must not apply
    report = await zombie_round(apache_kafka.url, point="checkpoint.after_outputs")
    print(report.line())
    assert report.exact, report.line()
