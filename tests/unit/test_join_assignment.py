"""A join's two stage topics are co-partitioned in every member of the group: the engine
asks for the range assignor when a pipeline joins (round robin breaks it for 3 members)."""

from __future__ import annotations

from typing import Any

from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from streams.runtime.engine import assignors

TOPICS = ["orders", "pay", "t-j-join-repartition", "t-j-repartition"]


class _Cluster:
    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}


class _Runner:
    def __init__(self, join_topic: str | None) -> None:
        self.join_topic = join_topic


def _owners(assignor: Any, members: int) -> dict[str, dict[int, str]]:
    metadata = {f"m{i}": ConsumerProtocolMemberMetadata(0, TOPICS, b"") for i in range(members)}
    owners: dict[str, dict[int, str]] = {}
    for member, assignment in assignor.assign(_Cluster(), metadata).items():
        for topic, partitions in assignment.assignment:
            for partition in partitions:
                owners.setdefault(topic, {})[partition] = member
    return owners


def test_a_join_gets_co_partitioned_stage_topics_for_any_group_size() -> None:
    chosen = assignors([_Runner("t-j-join-repartition")])  # type: ignore[list-item]
    assert len(chosen) == 1
    for members in (1, 2, 3):
        owners = _owners(chosen[0], members)
        assert owners["t-j-join-repartition"] == owners["t-j-repartition"], members
    # what the default did: three members, four partitions
    owners = _owners(RoundRobinPartitionAssignor, 3)
    assert owners["t-j-join-repartition"] != owners["t-j-repartition"]


def test_without_a_join_the_default_stays() -> None:
    assert assignors([_Runner(None)]) == (RoundRobinPartitionAssignor,)  # type: ignore[list-item]
