"""A few rounds of the takeover stress (tests/stress) in the suite: two workers, one
killed with SIGKILL at a seeded random moment while events stream in; the final windows
equal replay's. `make stress` runs many more rounds."""

from __future__ import annotations

import pytest

from tests.integration.conftest import Broker
from tests.stress.takeover import Plan, run_round

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("seed", "keyed"), [(2, True), (1, False), (105, True)], ids=["keyed", "unkeyed", "rebalance"]
)
async def test_takeover_after_sigkill_is_exact(broker: Broker, seed: int, keyed: bool) -> None:
    plan = Plan.from_seed(seed, keyed, events=20_000)
    report = await run_round(broker.url, plan)
    print(report.line())
    assert report.exact, report.line()
