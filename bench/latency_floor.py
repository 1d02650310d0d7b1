"""The latency floor of a broker: record timestamp → receipt by a plain aiokafka consumer
(no worker, no group), a producer sending at a fixed rate (linger 5 ms), one hop.

    .venv/bin/python -m bench.latency_floor tansu 1000 15
    .venv/bin/python -m bench.latency_floor apache-kafka 1000 15

Measured 2026-11-27 (quiet machine), 1,000/s for 15 s: tansu p50 8.3 / p99 15.5 ms, Apache
Kafka p50 6.1 / p99 8.2 ms. A worker's path is two such hops (bench/README.md, latency).
"""

from __future__ import annotations

import asyncio
import sys
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.support import create_topics, open_broker

TOPIC = "floor"


async def measure(kind: str, rate: float, seconds: float) -> list[float]:
    """Milliseconds from each record's send to its receipt."""
    with open_broker(kind) as broker:
        await create_topics(broker.address, [TOPIC])
        consumer = AIOKafkaConsumer(
            TOPIC,
            bootstrap_servers=broker.address,
            group_id=None,
            fetch_max_wait_ms=10,
            auto_offset_reset="latest",
        )
        producer = AIOKafkaProducer(bootstrap_servers=broker.address, linger_ms=5)
        await consumer.start()
        await producer.start()
        await asyncio.sleep(1)  # the consumer's position is set before the first record
        latencies: list[float] = []

        async def consume() -> None:
            while True:
                batches = await consumer.getmany(timeout_ms=100)
                now = time.time() * 1000
                for records in batches.values():
                    latencies.extend(now - float(record.value or b"0") for record in records)

        reader = asyncio.create_task(consume())
        try:
            began = time.monotonic()
            for number in range(int(rate * seconds)):
                value = str(time.time() * 1000).encode()
                await producer.send(TOPIC, value, key=str(number % 50).encode())
                ahead = (number + 1) / rate - (time.monotonic() - began)
                if ahead > 0.002:
                    await asyncio.sleep(ahead)
            await producer.flush()
            await asyncio.sleep(2)
        finally:
            reader.cancel()
            await producer.stop()
            await consumer.stop()
        return sorted(latencies)


def main(kind: str, rate: float, seconds: float) -> None:
    found = asyncio.run(measure(kind, rate, seconds))
    if not found:
        sys.exit(f"{kind}: no record arrived")

    def quantile(q: float) -> float:
        return found[min(len(found) - 1, int(q * len(found)))]

    print(
        f"{kind} {rate:,.0f}/s: {len(found):,} records; p50 {quantile(0.5):.1f} "
        f"p90 {quantile(0.9):.1f} p99 {quantile(0.99):.1f} max {found[-1]:.1f} ms"
    )


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]))
