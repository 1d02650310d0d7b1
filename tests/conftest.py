from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # models.events and tests.fixtures import from the checkout
    sys.path.insert(0, str(ROOT))

# Apache Kafka test brokers: the `apache_kafka` and `fresh_apache_kafka` fixtures
from tests.brokers.plugin import (  # noqa: E402, F401
    apache_kafka,
    fresh_apache_kafka,
    schema_registry,
)


def pytest_collection_modifyitems(items: list[Any]) -> None:
    """Longest test files first. `make test` hands whole files to two processes in the
    order collected (xdist --dist loadfile), so a long file collected late can run alone
    at the end; with the longest first, the short files fill both processes at the end.
    Measured in a fresh-clone run: 1,190 s for 2,318 s of tests (1,159 s if shared
    perfectly); the run before, unordered, took 1,217 s. Seconds per file:
    tests/durations.json (from a `--durations=0` run, `python -m tests.durations LOG`);
    files not in it keep their order, after those in it. The sort is stable, so each
    file's tests stay together and in order."""
    from tests.durations import load

    seconds = load()
    items.sort(key=lambda item: -seconds.get(item.nodeid.split("::", 1)[0], 0))


def pytest_configure(config: object) -> None:
    """A stray `SLUICE_*` variable in the caller's shell would override (or, unknown, refuse)
    the settings every test writes for itself: the suite runs without them."""
    import os

    for name in [name for name in os.environ if name.startswith("SLUICE_")]:
        del os.environ[name]
