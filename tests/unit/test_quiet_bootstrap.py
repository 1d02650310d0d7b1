"""aiokafka's bootstrap errors are quieted only for the brokers a client is starting against,
and only while it starts: two overlapping starts used to leave every aiokafka line silenced
for the rest of the run (each restored the level the other had raised)."""

from __future__ import annotations

import logging

import pytest

from streams.runtime.kafka import _quiet_bootstrap

BOOTSTRAP = 'Unable connect to "%s:%s": %s'


def logged(caplog: pytest.LogCaptureFixture, host: str, port: int) -> bool:
    caplog.clear()
    logging.getLogger("aiokafka.client").error(BOOTSTRAP, host, port, "refused")
    return any(r.name == "aiokafka.client" for r in caplog.records)


def test_overlapping_starts_leave_aiokafka_logging(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    first = _quiet_bootstrap(["127.0.0.1:9092"])
    second = _quiet_bootstrap(["127.0.0.1:9092", "127.0.0.1:9093"])
    first.__enter__()
    second.__enter__()
    assert not logged(caplog, "127.0.0.1", 9092)
    assert not logged(caplog, "127.0.0.1", 9093)
    assert logged(caplog, "127.0.0.1", 4), "another address is not quieted"
    first.__exit__(None, None, None)  # the first start ends while the second still runs
    assert not logged(caplog, "127.0.0.1", 9092)
    second.__exit__(None, None, None)
    assert logged(caplog, "127.0.0.1", 9092)
    assert logged(caplog, "127.0.0.1", 9093)


def test_other_aiokafka_lines_pass_while_starting(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with _quiet_bootstrap(["127.0.0.1:9092"]):
        logging.getLogger("aiokafka.client").warning("Unable to request metadata")
        logging.getLogger("aiokafka.consumer.group_coordinator").error("heartbeat failed")
    assert [r.getMessage() for r in caplog.records] == [
        "Unable to request metadata",
        "heartbeat failed",
    ]
