"""Which stateful pipelines can no longer keep their state co-partitioned with their input
(streams.runtime.topics.copartitioning_error): pure, over partition counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from streams.runtime.topics import copartitioning_error


@dataclass
class _Store:
    topic: str


@dataclass
class _Runner:  # the three fields copartitioning_error reads of a PipelineRunner
    name: str
    stage_topic: str
    stores: list[_Store] = field(default_factory=list)


def _error(runners: list[_Runner], counts: dict[str, int]) -> str | None:
    found = copartitioning_error(cast(Any, runners), counts, "shop")
    return None if found is None else str(found)


def test_a_stateful_pipeline_whose_input_grew_is_named_with_the_counts_and_what_to_do() -> None:
    runners = [
        _Runner("plain", "a"),  # stateless: reads whatever partitions there are
        _Runner("count", "b", [_Store("shop-count.window-changelog")]),
    ]
    assert _error(runners, {"a": 8, "b": 4, "shop-count.window-changelog": 4}) is None
    message = _error(runners, {"a": 8, "b": 6, "shop-count.window-changelog": 4})
    assert message is not None
    assert "pipeline 'count': its input b has 6 partitions" in message
    assert "shop-count.window-changelog has 4" in message
    assert "--group shop --reset-offsets" in message and "new app_id" in message


def test_topics_not_known_yet_are_not_judged() -> None:
    runners = [_Runner("count", "b", [_Store("c1"), _Store("c2")])]
    assert _error(runners, {"c1": 4}) is None  # the stage topic's count unknown
    assert _error(runners, {"b": 4, "c1": 4}) is None  # c2 just created, with b's count
    message = _error(runners, {"b": 4, "c1": 4, "c2": 2})
    assert message is not None and "c2 has 2" in message and "c1 has" not in message
