"""Reproduction: the tansu broker's fetches slow down, then stop, as a partition fills with
small record batches (what a producer pacing a few thousand records/s makes).

    .venv/bin/python -m bench.tansu_small_batches 5 8     # <= 5 records a batch, 8 x 50k

Each round produces 50,000 payments in batches of at most N records (librdkafka,
linger.ms 0), then reads 20,000 from 5,000 before the end of each partition (aiokafka,
read_committed, as the worker). Measured 2026-11-27 (tansu 0.6.0): 185k/s at 50k records,
17k/s at 300k, 47/s at 350k, 0/s at 400k, the broker busy at 75-90% of a core; with large
batches (linger 5 ms at full speed) 2.4M records read at 500k+/s. `sluice bench soak` on
tansu stalls this way after a minute or two (bench/README.md); `sluice produce --rate`
sends in 0.1 s steps for this reason.
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as AioPartition
from confluent_kafka import Consumer, Producer, TopicPartition

from bench.support import cpu_seconds, create_topics, open_broker
from streams.offline.demo_data import payments

TOPIC = "t"
PARTITIONS = range(4)


async def read_from(address: str, starts: dict[int, int], wanted: int) -> tuple[int, float]:
    """Records read from `starts` (partition → offset) until `wanted` or 60 s; and seconds."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=address,
        group_id=None,
        isolation_level="read_committed",
        fetch_max_wait_ms=10,
    )
    await consumer.start()
    try:
        consumer.assign([AioPartition(TOPIC, p) for p in starts])
        for partition, offset in starts.items():
            consumer.seek(AioPartition(TOPIC, partition), offset)
        began, got = time.time(), 0
        while got < wanted and time.time() - began < 60:
            batch = await consumer.getmany(timeout_ms=100, max_records=1000)
            got += sum(len(records) for records in batch.values())
        return got, time.time() - began
    finally:
        await consumer.stop()


def broker_cpu(pid: int | None) -> float:
    return cpu_seconds(pid) or 0.0


def main(per_batch: int, rounds: int) -> None:
    lines = [
        (orjson.loads(line)["user_id"].encode(), line)
        for line in payments(50_000, users=1000, malformed_ratio=0)
    ]
    with open_broker("tansu") as broker:
        asyncio.run(create_topics(broker.address, [TOPIC]))
        producer = Producer(
            {
                "bootstrap.servers": broker.address,
                "linger.ms": 0 if per_batch < 100 else 5,
                "batch.num.messages": per_batch,
                "queue.buffering.max.messages": 500_000,
                "log_level": 3,
            }
        )
        total = 0
        for _ in range(rounds):
            began, cpu_before = time.time(), broker_cpu(broker.pid)
            for key, value in lines:
                while True:
                    try:
                        producer.produce(TOPIC, value, key)
                        break
                    except BufferError:
                        producer.poll(0.005)
            producer.flush()
            total += len(lines)
            produce_seconds = time.time() - began
            produce_cpu = (broker_cpu(broker.pid) - cpu_before) / produce_seconds * 100
            probe = Consumer({"bootstrap.servers": broker.address, "group.id": "x", "log_level": 3})
            ends = {p: probe.get_watermark_offsets(TopicPartition(TOPIC, p))[1] for p in PARTITIONS}
            probe.close()
            cpu_before = broker_cpu(broker.pid)
            got, seconds = asyncio.run(
                read_from(broker.address, {p: max(0, end - 5000) for p, end in ends.items()}, 20000)
            )
            read_cpu = (broker_cpu(broker.pid) - cpu_before) / seconds * 100
            print(
                f"{total:>8,} records in batches of <= {per_batch}: produce "
                f"{len(lines) / produce_seconds:,.0f}/s (broker {produce_cpu:.0f}%); read 20k "
                f"from the tail: {got / seconds:,.0f}/s, broker cpu {read_cpu:.0f}%",
                flush=True,
            )


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
