"""The contenders of `sluice bench peers` other than sluice, each run in a process of its
own (as the sluice worker is), and the component sluice runs for the running count.

    python -m bench.contenders KIND --job JOB --broker HOST:PORT \
        --source TOPIC --sink TOPIC --group GROUP --events N [--state-dir DIR]

KIND is `raw-send` (aiokafka: orjson decode, filter, encode, one `send` per record),
`raw-batch` (the same, records appended to per-partition record batches and sent with
`send_batch`, as sluice's output does) or `quix` (Quix Streams). With `--format avro
--registry URL` the values are Confluent wire-format Avro: the raw loops decode with
fastavro (one parsed schema per id, fetched from the registry) and encode under the
schema they register for `<sink>-value`; Quix uses its `AvroDeserializer` and
`AvroSerializer` with a `SchemaRegistryClientConfig` (confluent-kafka's serializers).
The process prints JSON lines on stdout: `{"ready": t}` once its partitions are
assigned, and for the windowed job `{"processed": n, "at": t}` at the first record and when
`--events` records have been processed (window results come out as windows close, so
the input is what is counted).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime, timedelta
from typing import Any

import orjson

JOBS = ("filter", "count", "window")
WINDOW_SIZE = timedelta(minutes=1)
WINDOW_GRACE = timedelta(seconds=10)  # the generator sends 3% of events up to 5 s late


class RunningCount:
    """sluice's side of the per-key running count: the component a user would write."""

    def process(self, record: dict[str, Any], ctx: Any) -> dict[str, Any]:
        state = ctx.state
        count = state.get("n", 0) + 1
        state["n"] = count
        return {**record, "n": count}


def _say(**fields: Any) -> None:
    sys.stdout.write(orjson.dumps(fields).decode() + "\n")
    sys.stdout.flush()


class _Milestones:
    """Counts processed input records; says when the first and the last arrived."""

    def __init__(self, events: int) -> None:
        self.events = events
        self.seen = 0

    def __call__(self, *_: Any) -> None:
        self.seen += 1
        if self.seen in (1, self.events):
            _say(processed=self.seen, at=time.time())


# --- raw aiokafka ------------------------------------------------------------------------


async def raw(args: argparse.Namespace, batched: bool) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    if args.job != "filter":
        raise SystemExit("the raw loops run the filter job only")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.broker,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=10,  # as the sluice worker
    )
    producer = AIOKafkaProducer(bootstrap_servers=args.broker, linger_ms=5, max_batch_size=262_144)
    await consumer.start()
    await producer.start()
    # partitions assigned by hand from the start: no group to join, no offsets committed
    partitions = [TopicPartition(args.source, p) for p in range(args.partitions)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    _say(ready=time.time())
    loads, dumps, sink = orjson.loads, orjson.dumps, args.sink
    if args.format == "avro":
        loads, dumps = _avro_codec(args.registry, sink)
    try:
        while True:
            fetched = await consumer.getmany(timeout_ms=100, max_records=10_000)
            pending = []
            for tp, messages in fetched.items():
                if batched:
                    batch = producer.create_batch()
                    for m in messages:
                        value = loads(m.value)
                        if value["amount"] > 0:
                            encoded = dumps(value)
                            if batch.append(key=m.key, value=encoded, timestamp=None) is None:
                                pending.append(
                                    await producer.send_batch(batch, sink, partition=tp.partition)
                                )
                                batch = producer.create_batch()
                                batch.append(key=m.key, value=encoded, timestamp=None)
                    if batch.record_count():
                        pending.append(
                            await producer.send_batch(batch, sink, partition=tp.partition)
                        )
                else:
                    for m in messages:
                        value = loads(m.value)
                        if value["amount"] > 0:
                            pending.append(await producer.send(sink, dumps(value), key=m.key))
            if pending:
                await asyncio.gather(*pending)
    finally:
        await producer.stop()
        await consumer.stop()


def _registry(url: str, method: str, path: str, body: Any = None) -> Any:
    import urllib.request

    request = urllib.request.Request(  # noqa: S310 - the bench's own registry
        url.rstrip("/") + path,
        data=orjson.dumps(body) if body is not None else None,
        method=method,
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return orjson.loads(response.read())


def _avro_codec(url: str, sink: str) -> tuple[Any, Any]:
    """(decode, encode) of wire-format Avro: the reference loop over fastavro, a reader
    per schema id parsed once; results written under the schema registered for the sink."""
    import io
    import struct

    from fastavro import parse_schema, schemaless_reader, schemaless_writer

    from bench.avro_payments import PAYMENT_SCHEMA, schema_text

    readers: dict[int, Any] = {}
    out_id = _registry(
        url, "POST", f"/subjects/{sink}-value/versions", {"schema": schema_text(PAYMENT_SCHEMA)}
    )["id"]
    out_schema = parse_schema(PAYMENT_SCHEMA)
    header = b"\x00" + struct.pack(">I", out_id)

    def decode(raw: bytes) -> Any:
        schema_id = int.from_bytes(raw[1:5], "big")
        schema = readers.get(schema_id)
        if schema is None:
            text = _registry(url, "GET", f"/schemas/ids/{schema_id}")["schema"]
            schema = readers[schema_id] = parse_schema(orjson.loads(text))
        return schemaless_reader(io.BytesIO(raw[5:]), schema, None)

    def encode(value: Any) -> bytes:
        out = io.BytesIO()
        out.write(header)
        schemaless_writer(out, out_schema, value)
        return out.getvalue()

    return decode, encode


# --- Quix Streams ------------------------------------------------------------------------


def _event_time(value: Any, headers: Any, timestamp: float, timestamp_type: Any) -> int:
    return int(datetime.fromisoformat(value["ts"]).timestamp() * 1000)


def _running_count(value: dict[str, Any], state: Any) -> dict[str, Any]:
    count = state.get("n", 0) + 1
    state.set("n", count)
    return {**value, "n": count}


def quix(args: argparse.Namespace) -> None:
    from quixstreams import Application
    from quixstreams.dataframe.windows import Count, Sum

    class ReadyApplication(Application):
        def _on_assign(self, consumer: Any, topic_partitions: Any) -> None:
            super()._on_assign(consumer, topic_partitions)
            if topic_partitions:
                _say(ready=time.time())

    app = ReadyApplication(
        broker_address=args.broker,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        loglevel="WARNING",
        # joins the group sooner on tansu (about half the session timeout); not a
        # throughput setting
        consumer_extra_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
    )
    deserializer: Any = "json"
    serializer: Any = "json"
    if args.format == "avro":
        from quixstreams.models.serializers.avro import AvroDeserializer, AvroSerializer
        from quixstreams.models.serializers.schema_registry import SchemaRegistryClientConfig

        from bench.avro_payments import RESULT_SCHEMAS

        registry = SchemaRegistryClientConfig(url=args.registry)
        deserializer = AvroDeserializer(schema_registry_client_config=registry)
        serializer = AvroSerializer(
            RESULT_SCHEMAS[args.job], schema_registry_client_config=registry
        )
    if args.job == "window":
        source = app.topic(
            args.source, value_deserializer=deserializer, timestamp_extractor=_event_time
        )
    else:
        source = app.topic(args.source, value_deserializer=deserializer)
    sink = app.topic(args.sink, value_serializer=serializer)
    sdf = app.dataframe(source)
    if args.job == "filter":
        sdf = sdf.filter(lambda value: value["amount"] > 0)
    elif args.job == "count":
        sdf = sdf.apply(_running_count, stateful=True)
    else:
        sdf = sdf.update(_Milestones(args.events))
        # windows close per partition, as sluice's watermark does (Quix's default is per key)
        sdf = (
            sdf.tumbling_window(WINDOW_SIZE, grace_ms=WINDOW_GRACE)
            .agg(n=Count(), total=Sum("amount"))
            .final(closing_strategy="partition")
        )
    sdf.to_topic(sink)
    app.run()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("raw-send", "raw-batch", "quix"))
    parser.add_argument("--job", choices=JOBS, required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--group", default="bench-peers")
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--state-dir", default="state")
    parser.add_argument("--format", choices=("json", "avro"), default="json")
    parser.add_argument("--registry", default="", help="the schema registry (--format avro)")
    args = parser.parse_args(argv)
    if args.kind == "quix":
        quix(args)
    else:
        asyncio.run(raw(args, batched=args.kind == "raw-batch"))


if __name__ == "__main__":
    main()
