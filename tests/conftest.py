from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # models.events and tests.fixtures import from the checkout
    sys.path.insert(0, str(ROOT))

# Apache Kafka test brokers: the `apache_kafka` and `fresh_apache_kafka` fixtures
from tests.brokers.plugin import (  # noqa: E402, F401
    apache_kafka,
    fresh_apache_kafka,
    schema_registry,
)


def pytest_configure(config: object) -> None:
    """A stray `SLUICE_*` variable in the caller's shell would override (or, unknown, refuse)
    the settings every test writes for itself: the suite runs without them."""
    import os

    for name in [name for name in os.environ if name.startswith("SLUICE_")]:
        del os.environ[name]
