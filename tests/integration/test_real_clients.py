"""sluice between librdkafka producers and consumers (issue 15): every codec read,
outputs compressed as configured, keys, null keys, headers (non-UTF-8 bytes, a
producer's traceparent), tombstones, Java-compatible partitioning, large records; and a
batch the worker cannot decode stops it with one clear line."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from streams.config.loader import load_pipeline
from streams.core.tracing import trace_id_of
from streams.offline import replay
from streams.runtime.output import Output
from tests.integration.conftest import Broker, consume_all, create_topics, unique
from tests.integration.real_clients import (
    CODECS,
    batch_codecs,
    librdkafka_consume,
    librdkafka_produce,
)

pytestmark = pytest.mark.integration

PIPELINE = """
pipeline: rk-{tag}
source: {{topic: in-{tag}}}
steps:
  - validate: {{schema: {{n: int, note: "str?"}}}}
  - filter: "n % 3 <> 0"
  - map: {{n: n, tripled: "n * 3", note: "COALESCE(note, 'none')"}}
sink: {{topic: out-{tag}}}
dlq: {{topic: dlq-{tag}}}
"""
TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def inputs() -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    """100 records (some without key, some with a producer's traceparent, all with a
    header that is not UTF-8), 3 that are not JSON and 2 tombstones."""
    records: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
    for i in range(100):
        key = None if i % 7 == 0 else f"k{i % 10}".encode()
        headers = [("raw", bytes([0xFF, i % 256, 0x00]))]
        if i % 2:
            headers.append(("traceparent", TRACEPARENT))
        value = {"n": i} if i % 5 else {"n": str(i), "note": "from text"}
        records.append((key, orjson.dumps(value), headers))
    records += [(b"bad", b'{"n": ', []), (None, b"\xff\xfe", []), (b"bad", b"[1, 2]", [])]
    records += [(b"gone", None, []), (b"gone-too", None, [("raw", b"\x80")])]
    return records


async def expected_outputs(tag: str, tmp_path: Path) -> tuple[list[Any], int]:
    """Replay's sink records for the JSON inputs, and its dead-letter count."""
    (tmp_path / "p.yaml").write_text(PIPELINE.format(tag=tag))
    lines = [value for _, value, _ in inputs() if value is not None]
    (tmp_path / "in.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))
    summary = await replay(
        load_pipeline(tmp_path / "p.yaml"), str(tmp_path / "in.jsonl"), tmp_path / "out"
    )
    out = (tmp_path / "out" / f"out-{tag}.jsonl").read_bytes().splitlines()
    return [orjson.loads(line) for line in out], summary.only.dead_letters


# every codec on tansu; on Apache Kafka (which keeps the producer's codec) none (the
# default) and zstd: the codecs are the clients' work, not the broker's (33 s of the
# suite saved)
@pytest.mark.parametrize(
    ("broker", "codec"),
    [("tansu", codec) for codec in CODECS] + [("kafka", "none"), ("kafka", "zstd")],
    indirect=["broker"],
)
async def test_librdkafka_in_and_out_with_each_codec(
    broker: Broker, make_worker: Any, tmp_path: Path, codec: str
) -> None:
    tag = unique(codec)
    await create_topics(broker, f"in-{tag}", f"out-{tag}", f"dlq-{tag}")
    worker = make_worker({"rk": PIPELINE.format(tag=tag)}, processing=f", compression: {codec}")
    worker.wait_ready()
    records = inputs()
    librdkafka_produce(broker.address, f"in-{tag}", records, **{"compression.type": codec})
    assert await batch_codecs(broker.address, f"in-{tag}", 4) == {codec}

    expected, dead = await expected_outputs(tag, tmp_path)
    out = librdkafka_consume(broker.address, f"out-{tag}", len(expected))
    assert Counter(orjson.dumps(orjson.loads(m.value())) for m in out) == Counter(
        orjson.dumps(v) for v in expected
    )
    # keys kept (None stays None), headers kept byte for byte, the trace continued
    by_n = {orjson.loads(m.value())["n"]: m for m in out}
    for i, (key, _, headers) in enumerate(records[:100]):
        if i not in by_n:
            continue
        message = by_n[i]
        assert message.key() == key, (i, message.key())
        got = dict(message.headers() or [])
        assert got["raw"] == dict(headers)["raw"]
        if i % 2:
            assert trace_id_of(got["traceparent"]) == TRACEPARENT[3:35].decode()
            assert got["traceparent"] != TRACEPARENT  # sluice's own span
    assert await batch_codecs(broker.address, f"out-{tag}", 4) == {codec}

    letters = librdkafka_consume(broker.address, f"dlq-{tag}", dead + 2)
    assert len(letters) == dead + 2
    tombstones = [m for m in letters if m.value() is None]
    assert sorted(m.key() for m in tombstones) == [b"gone", b"gone-too"]
    for message in tombstones:
        letter_headers = dict(message.headers())
        assert letter_headers["sluice.error.type"] == b"invalid_json"
        assert b"tombstone" in letter_headers["sluice.error.message"]
    assert {m.value() for m in letters} >= {b'{"n": ', b"\xff\xfe", b"[1, 2]"}
    assert worker.metric("sluice_events_in_total") == len(records)
    status, body = worker.get("/ready")
    assert status == 200, body
    assert worker.stop() == 0


async def test_keyed_outputs_land_where_the_java_partitioner_puts_them(
    broker: Broker,
) -> None:
    """librdkafka's murmur2_random is the Java client's default partitioner for keyed
    records; sluice's Output must choose the same partition for 1,000 keys."""
    topic = unique("part")
    await create_topics(broker, topic, partitions=6)
    keys = [f"user-{i}-{'x' * (i % 13)}".encode() for i in range(1000)]
    partitions = librdkafka_produce(
        broker.address, topic, [(k, b"{}", []) for k in keys], partitioner="murmur2_random"
    )
    output = Output(producer=None)
    ours = [output._partition_of_key(key, 6) for key in keys]
    assert ours == partitions


async def test_a_record_of_900_kib_goes_in_and_out(broker: Broker, make_worker: Any) -> None:
    tag = unique("big")
    await create_topics(broker, f"in-{tag}", f"out-{tag}")
    worker = make_worker({"big": PIPELINE.format(tag=tag)})
    worker.wait_ready()
    note = "x" * (900 * 1024)
    librdkafka_produce(
        broker.address,
        f"in-{tag}",
        [(b"k", orjson.dumps({"n": 1, "note": note}), [])],
        **{"message.max.bytes": 2_000_000},
    )
    got = await consume_all(broker, f"out-{tag}", 1)
    assert len(got) == 1 and orjson.loads(got[0].value)["note"] == note
    assert worker.stop() == 0


async def test_a_batch_it_cannot_decode_stops_the_worker_with_one_clear_line(
    broker: Broker, make_worker: Any, tmp_path: Path
) -> None:
    """Without the zstd library (a stand-in `cramjam` that cannot be imported), a zstd
    batch cannot be read: the worker says which partition and offset, and what to do,
    turns not ready and exits non-zero, instead of dying silently or skipping."""
    blocker = tmp_path / "no-codecs"
    blocker.mkdir()
    (blocker / "cramjam.py").write_text("raise ImportError('codecs hidden by the test')\n")
    tag = unique("nocodec")
    await create_topics(broker, f"in-{tag}", partitions=1)
    worker = make_worker({"nc": PIPELINE.format(tag=tag)}, start=False)
    worker.extra_path = str(blocker)
    worker.start()
    worker.wait_ready()
    compressible: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = [
        (b"k", orjson.dumps({"n": i, "note": "z" * 2000}), []) for i in range(20)
    ]
    librdkafka_produce(broker.address, f"in-{tag}", compressible, **{"compression.type": "zstd"})
    assert await batch_codecs(broker.address, f"in-{tag}", 1) == {"zstd"}
    assert worker.process is not None
    code = worker.process.wait(60)
    output = worker.output()
    assert code == 70, output
    assert f"cannot decode the records of in-{tag}[0] at offset 0" in output, output
    assert "aiokafka[lz4,snappy,zstd]" in output
    assert "Traceback" not in output
