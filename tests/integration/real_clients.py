"""librdkafka (confluent-kafka) as the peer: records produced the way most production
producers do (compressed, keyed, with headers), results read back by it; and a look at
the record batches themselves to see which codec the worker wrote."""

from __future__ import annotations

import time
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer
from confluent_kafka import TopicPartition as TopicPartition_

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
CODEC_IDS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}


def librdkafka_produce(
    address: str,
    topic: str,
    records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]],
    **config: Any,
) -> list[int]:
    """Produce (key, value, headers) with librdkafka; returns each record's partition."""
    producer = Producer({"bootstrap.servers": address, "linger.ms": 20, **config})
    partitions: list[int] = [-1] * len(records)
    errors: list[Any] = []

    def delivered(index: int) -> Any:
        def report(error: Any, message: Any) -> None:
            if error is not None:
                errors.append(error)
            else:
                partitions[index] = message.partition()

        return report

    for index, (key, value, headers) in enumerate(records):
        producer.produce(topic, value=value, key=key, headers=headers, on_delivery=delivered(index))
        producer.poll(0)
    assert producer.flush(30) == 0, "librdkafka could not deliver everything"
    assert not errors, errors[:3]
    return partitions


def librdkafka_consume(address: str, topic: str, expected: int, timeout: float = 60) -> list[Any]:
    """Every message of `topic` from the start, until `expected` arrived (then 1 s more)."""
    consumer = Consumer(
        {
            "bootstrap.servers": address,
            "group.id": f"check-{time.monotonic_ns()}",
            "enable.auto.commit": False,
        }
    )
    # partitions assigned by hand: a group join takes half the session timeout on tansu
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition_(topic, p, OFFSET_BEGINNING) for p in partitions])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    settle: float | None = None
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                messages.append(message)
            if len(messages) >= expected and settle is None:
                settle = time.monotonic() + 1.0
            if settle is not None and time.monotonic() >= settle:
                break
    finally:
        consumer.close()
    return messages


async def batch_codecs(address: str, topic: str, partitions: int) -> set[str]:
    """The compression codec of every record batch stored in `topic`, read with a raw
    Fetch request (clients decompress transparently, so only the batches tell)."""
    client = AIOKafkaClient(bootstrap_servers=address)
    await client.bootstrap()
    found: set[str] = set()
    try:
        await client._wait_on_metadata(topic)
        for partition in range(partitions):
            node = client.cluster.leader_for_partition(TopicPartition(topic, partition))
            request = FetchRequest(
                100, 1, 16 * 1024 * 1024, 0, [(topic, [(partition, 0, 16 * 1024 * 1024)])]
            )
            response = await client.send(node, request)
            for _, parts in response.topics:
                for _partition, _error, _highwater, *data in parts:
                    records = MemoryRecords(data[-1])
                    while records.has_next():
                        batch = records.next_batch()
                        found.add(CODEC_IDS.get(batch.compression_type, "?"))
    finally:
        await client.close()
    return found
