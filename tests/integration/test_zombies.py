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


async def test_an_exactly_once_zombie_is_fenced_and_commits_nothing(
    apache_kafka: ApacheKafka,
) -> None:
    # stopped inside its checkpoint, just before send_offsets_to_transaction (past its
    # generation check), and resumed as soon as the survivor holds every partition —
    # within the 15 s transaction timeout, so the broker has not aborted its transaction
    # itself: only the survivor's fence stops its commit (without it, results twice)
    report = await zombie_round(
        apache_kafka.url,
        point="checkpoint.inside_send_offsets",
        exactly_once=True,
        resume_at_takeover=True,
    )
    print(report.line())
    assert report.exact and not report.resent, report.line()
    assert report.fenced, "the zombie was not fenced: the round proved nothing"
