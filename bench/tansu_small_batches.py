"""Reproduction: the tansu broker's fetches slow down, then stop, as a partition fills with
small record batches (what a producer pacing a few thousand records/s makes).

    .venv/bin/python bench/tansu_small_batches.py 5 8     # <= 5 records a batch, 8 x 50k

Each round produces 50,000 payments in batches of at most N records (librdkafka,
linger.ms 0), then reads 20,000 from 5,000 before the end of each partition (aiokafka,
read_committed, as the worker). Measured 2026-11-27 (tansu 0.6.0): 185k/s at 50k records,
17k/s at 300k, 47/s at 350k, 0/s at 400k, the broker busy at 75-90% of a core; with large
batches (linger 5 ms at full speed) 2.4M records read at 500k+/s. `sluice bench soak` on
tansu stalls this way after a minute or two (bench/README.md).
"""
import sys, time, asyncio
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from confluent_kafka import Producer, Consumer, TopicPartition
from aiokafka import AIOKafkaConsumer, TopicPartition as TP
from streams.runtime.bench_support import open_broker, create_topics, cpu_seconds
from streams.demo import payments
import orjson
lines = [(orjson.loads(l)["user_id"].encode(), l) for l in payments(50_000, users=1000, malformed_ratio=0)]
async def aio_read(addr, starts, n):
    c = AIOKafkaConsumer(bootstrap_servers=addr, group_id=None, isolation_level="read_committed", fetch_max_wait_ms=10)
    await c.start()
    c.assign([TP("t", p) for p in starts])
    for p, o in starts.items(): c.seek(TP("t", p), o)
    t = time.time(); got = 0
    while got < n and time.time() - t < 60:
        b = await c.getmany(timeout_ms=100, max_records=1000)
        got += sum(len(v) for v in b.values())
    await c.stop()
    return got, time.time() - t
per_batch = int(sys.argv[1])
with open_broker("tansu") as b:
    asyncio.run(create_topics(b.address, ["t"]))
    p = Producer({"bootstrap.servers": b.address, "linger.ms": 0 if per_batch < 100 else 5, "batch.num.messages": per_batch, "queue.buffering.max.messages": 500000, "log_level": 3})
    total = 0
    for round_ in range(int(sys.argv[2])):
        t0 = time.time(); c0 = cpu_seconds(b.pid)
        for k, v in lines:
            while True:
                try: p.produce("t", v, k); break
                except BufferError: p.poll(0.005)
        p.flush(); total += len(lines)
        prod = time.time() - t0; pc = (cpu_seconds(b.pid) - c0) / prod * 100
        # read 10k records starting at the first offset of this round (the middle of the log later)
        c = Consumer({"bootstrap.servers": b.address, "group.id": "x", "log_level": 3})
        ends = {pp: c.get_watermark_offsets(TopicPartition("t", pp))[1] for pp in range(4)}
        c.close()
        starts = {pp: max(0, e - 5000) for pp, e in ends.items()}
        c1 = cpu_seconds(b.pid)
        got, secs = asyncio.run(aio_read(b.address, starts, 20000))
        print(f"{total:>8,} records in batches of <= {per_batch}: produce {len(lines)/prod:,.0f}/s (broker {pc:.0f}%); read 20k from the tail: {got/secs:,.0f}/s, broker cpu {(cpu_seconds(b.pid)-c1)/secs*100:.0f}%", flush=True)
