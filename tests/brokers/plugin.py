"""pytest fixtures for the Apache Kafka test broker (imported by tests/conftest.py).

`apache_kafka` is one broker for the whole session; `fresh_apache_kafka` a broker of a
test's own, for tests that stop, kill or pause it. Both skip the test, naming what is
missing, on a machine without java, or without the jars and mvn to fetch them; with
TESTS_REQUIRE_APACHE_KAFKA=1 (as .ci/run sets) they fail instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.brokers.apache_kafka import ApacheKafka, MissingPrerequisite
from tests.brokers.registry import ApicurioRegistry

REQUIRE_VARIABLE = "TESTS_REQUIRE_APACHE_KAFKA"


def apache_kafka_required() -> bool:
    return os.environ.get(REQUIRE_VARIABLE, "").strip().lower() in ("1", "true", "yes")


def _started(kafka: ApacheKafka) -> ApacheKafka:
    try:
        return kafka.__enter__()
    except MissingPrerequisite as exc:
        message = f"Apache Kafka is not available: {exc}"
        if apache_kafka_required():
            pytest.fail(f"{message} ({REQUIRE_VARIABLE} is set)", pytrace=False)
        pytest.skip(f"{message} (set {REQUIRE_VARIABLE}=1 to fail instead)")


@pytest.fixture(scope="session")
def apache_kafka() -> Iterator[ApacheKafka]:
    """The session's Apache Kafka broker. A test that stops it must start it again."""
    kafka = _started(ApacheKafka())
    try:
        yield kafka
    finally:
        kafka.close()


@pytest.fixture
def fresh_apache_kafka() -> Iterator[ApacheKafka]:
    """An Apache Kafka broker for one test alone (about 3 s to start)."""
    kafka = _started(ApacheKafka())
    try:
        yield kafka
    finally:
        kafka.close()


REQUIRE_REGISTRY_VARIABLE = "TESTS_REQUIRE_REGISTRY"


@pytest.fixture(scope="session")
def schema_registry() -> Iterator[ApicurioRegistry]:
    """Apicurio Registry 3.3.3 for the whole session (in memory: empty at start; tests use
    subjects of their own). Skips without Java 21+ or Maven, fails instead with
    TESTS_REQUIRE_REGISTRY=1 (as .ci/run sets)."""
    registry = ApicurioRegistry()
    try:
        registry.start()
    except MissingPrerequisite as exc:
        message = f"the schema registry is not available: {exc}"
        if os.environ.get(REQUIRE_REGISTRY_VARIABLE, "").strip().lower() in ("1", "true"):
            pytest.fail(f"{message} ({REQUIRE_REGISTRY_VARIABLE} is set)", pytrace=False)
        pytest.skip(f"{message} (set {REQUIRE_REGISTRY_VARIABLE}=1 to fail instead)")
    try:
        yield registry
    finally:
        registry.stop()
