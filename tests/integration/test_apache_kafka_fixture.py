"""The Apache Kafka fixture itself: every listener, its security, transactions, restarts.

Also what aiokafka reports when security fails, which the runtime turns into its messages:

- `AIOKafkaProducer/Consumer.start()` (and AdminClient) raise only
  `aiokafka.errors.KafkaConnectionError("Unable to bootstrap from [...]")`; the cause is
  logged by the `aiokafka` logger ('Unable connect to "host:port": <error>') and not chained.
- `aiokafka.conn.create_conn(host, port, **same kwargs)` raises the cause itself:
  wrong password or unknown user -> `aiokafka.errors.SaslAuthenticationFailed` (errno 58,
  a BrokerResponseError), str "[Error 58] SaslAuthenticationFailed: Authentication failed:
  Invalid username or password" (PLAIN) or "... Authentication failed during authentication
  due to invalid credentials with SASL mechanism SCRAM-SHA-512" (SCRAM);
  untrusted server certificate -> `ssl.SSLCertVerificationError` (an OSError),
  "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer
  certificate"; no client certificate on the MTLS listener -> with TLS 1.3 the handshake
  passes and the broker then closes: `KafkaConnectionError("Connection at host:port closed")`
  (with TLS 1.2 only: `ssl.SSLError` "SSLV3_ALERT_BAD_CERTIFICATE").
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed

from tests.brokers.apache_kafka import (
    BROKER_SETTINGS,
    SASL_MECHANISMS,
    ApacheKafka,
    BrokerStartError,
)
from tests.brokers.probe import Target, broker_count
from tests.brokers.tls import make_tls

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
KEY = b"one-partition"  # records in one partition keep their order


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def produce(kwargs: dict[str, Any], topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(**kwargs)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=KEY)
    finally:
        await producer.stop()


async def consume(
    kwargs: dict[str, Any], topic: str, expected: int, timeout: float = 30, **options: Any
) -> list[bytes]:
    """Values of `topic` from the start until `expected` arrived, or `timeout`."""
    consumer = AIOKafkaConsumer(topic, auto_offset_reset="earliest", **kwargs, **options)
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout
        while len(values) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                values.extend(record.value for record in records)
    finally:
        await consumer.stop()
    return values


async def round_trip(kwargs: dict[str, Any]) -> None:
    topic = unique("fixture")
    values = [f"value-{i}".encode() for i in range(3)]
    await produce(kwargs, topic, values)
    assert await consume(kwargs, topic, len(values)) == values


async def connect_error(kwargs: dict[str, Any]) -> BaseException:
    """The exception aiokafka's connection raises for these client kwargs."""
    options = dict(kwargs)
    host, port = options.pop("bootstrap_servers").split(":")
    try:
        connection = await create_conn(host, int(port), request_timeout_ms=10_000, **options)
    except Exception as exc:
        return exc
    connection.close()
    raise AssertionError("connected")


async def start_error(kwargs: dict[str, Any]) -> BaseException:
    """The exception AIOKafkaProducer.start() raises for these client kwargs."""
    producer = AIOKafkaProducer(request_timeout_ms=10_000, **kwargs)
    try:
        await producer.start()
    except Exception as exc:
        return exc
    finally:
        await producer.stop()
    raise AssertionError("started")


async def test_plaintext(apache_kafka: ApacheKafka) -> None:
    assert apache_kafka.url == f"kafka://127.0.0.1:{apache_kafka.port}"
    assert apache_kafka.address == apache_kafka.listeners["PLAINTEXT"].address
    await round_trip({"bootstrap_servers": apache_kafka.address})


async def test_topics_are_created_with_the_settings_partition_count(
    apache_kafka: ApacheKafka,
) -> None:
    topic = unique("auto")
    await produce({"bootstrap_servers": apache_kafka.address}, topic, [b"x"])
    producer = AIOKafkaProducer(bootstrap_servers=apache_kafka.address)
    await producer.start()
    try:
        partitions = await producer.partitions_for(topic)
    finally:
        await producer.stop()
    assert len(partitions) == int(BROKER_SETTINGS["num.partitions"])


async def test_ssl_with_the_test_ca(apache_kafka: ApacheKafka) -> None:
    kwargs = apache_kafka.client_kwargs("SSL")
    assert kwargs["security_protocol"] == "SSL"
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    await round_trip(kwargs)
    # what a user writes by hand: the CA file, host names checked (the certificate has 127.0.0.1)
    context = ssl.create_default_context(cafile=str(apache_kafka.ca_file))
    await round_trip(
        {
            "bootstrap_servers": apache_kafka.listeners["SSL"].address,
            "security_protocol": "SSL",
            "ssl_context": context,
        }
    )


async def test_mutual_tls_needs_the_client_certificate(apache_kafka: ApacheKafka) -> None:
    context = ssl.create_default_context(cafile=str(apache_kafka.ca_file))
    context.load_cert_chain(str(apache_kafka.client_cert_file), str(apache_kafka.client_key_file))
    mtls = apache_kafka.listeners["MTLS"]
    await round_trip(
        {"bootstrap_servers": mtls.address, "security_protocol": "SSL", "ssl_context": context}
    )

    without = apache_kafka.client_kwargs("MTLS", client_cert=False)
    error = await connect_error(without)
    assert isinstance(error, KafkaConnectionError)  # TLS 1.3: the broker closes after the handshake
    assert f"Connection at {mtls.address} closed" in str(error)
    assert isinstance(await start_error(without), KafkaConnectionError)
    # the SSL listener does not ask for one
    await round_trip(apache_kafka.client_kwargs("SSL", client_cert=False))


@pytest.mark.parametrize("mechanism", SASL_MECHANISMS)
async def test_sasl_ssl(apache_kafka: ApacheKafka, mechanism: str) -> None:
    kwargs = apache_kafka.client_kwargs("SASL_SSL", mechanism)
    assert kwargs["sasl_mechanism"] == mechanism
    assert kwargs["sasl_plain_username"] == apache_kafka.username == "alice"
    await round_trip(kwargs)

    wrong = apache_kafka.client_kwargs("SASL_SSL", mechanism, password="wrong-password")
    error = await connect_error(wrong)
    assert isinstance(error, SaslAuthenticationFailed)
    assert str(error).startswith("[Error 58] SaslAuthenticationFailed: Authentication failed")
    if mechanism == "PLAIN":
        assert "Invalid username or password" in str(error)
    else:
        assert f"invalid credentials with SASL mechanism {mechanism}" in str(error)
    failed = await start_error(wrong)
    assert isinstance(failed, KafkaConnectionError)
    assert "Unable to bootstrap from" in str(failed)

    unknown = apache_kafka.client_kwargs("SASL_SSL", mechanism, username="mallory", password="x")
    assert isinstance(await connect_error(unknown), SaslAuthenticationFailed)


async def test_sasl_plaintext(apache_kafka: ApacheKafka) -> None:
    await round_trip(apache_kafka.client_kwargs("SASL_PLAINTEXT", "SCRAM-SHA-256"))


async def test_an_untrusted_ca_is_refused(apache_kafka: ApacheKafka, tmp_path: Path) -> None:
    other = make_tls(tmp_path / "other", ca_name="some other CA")
    for listener in ("SSL", "SASL_SSL"):
        kwargs = apache_kafka.client_kwargs(listener)
        kwargs["ssl_context"] = ssl.create_default_context(cafile=str(other.ca_file))
        error = await connect_error(kwargs)
        assert isinstance(error, ssl.SSLCertVerificationError)
        assert "CERTIFICATE_VERIFY_FAILED" in str(error)
        assert isinstance(await start_error(kwargs), KafkaConnectionError)


async def test_transactions_and_read_committed(apache_kafka: ApacheKafka) -> None:
    kwargs = apache_kafka.client_kwargs()
    source, sink, group = unique("tx-in"), unique("tx-out"), unique("tx-group")
    await produce(kwargs, source, [b"input"])  # the topic must exist for its offsets

    producer = AIOKafkaProducer(transactional_id=unique("tx"), **kwargs)
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(sink, b"committed-1", key=KEY)
        await producer.begin_transaction()
        await producer.send(sink, b"aborted", key=KEY)
        await producer.abort_transaction()
        await producer.begin_transaction()
        await producer.send(sink, b"committed-2", key=KEY)
        await producer.send_offsets_to_transaction({TopicPartition(source, 0): 1}, group)
        await producer.commit_transaction()
    finally:
        await producer.stop()

    committed = await consume(kwargs, sink, 2, isolation_level="read_committed")
    assert committed == [b"committed-1", b"committed-2"]
    everything = await consume(kwargs, sink, 3, isolation_level="read_uncommitted")
    assert everything == [b"committed-1", b"aborted", b"committed-2"]

    consumer = AIOKafkaConsumer(group_id=group, enable_auto_commit=False, **kwargs)
    await consumer.start()
    try:
        assert await consumer.committed(TopicPartition(source, 0)) == 1
    finally:
        await consumer.stop()


async def test_stop_start_and_kill_keep_the_data(fresh_apache_kafka: ApacheKafka) -> None:
    kafka = fresh_apache_kafka
    kwargs = kafka.client_kwargs()
    topic = unique("durable")
    ports = {name: item.port for name, item in kafka.listeners.items()}
    await produce(kwargs, topic, [b"before-stop"])

    await asyncio.to_thread(kafka.stop)
    assert not kafka.running
    with pytest.raises(OSError):
        broker_count(Target(kafka.host, kafka.port), timeout=1)
    await asyncio.to_thread(kafka.start)
    assert {name: item.port for name, item in kafka.listeners.items()} == ports
    await produce(kwargs, topic, [b"after-restart"])

    kafka.kill()
    await asyncio.to_thread(kafka.start)
    assert await consume(kwargs, topic, 2) == [b"before-stop", b"after-restart"]
    # the users made at format time survive the restarts
    await round_trip(kafka.client_kwargs("SASL_SSL", "SCRAM-SHA-256"))


def test_a_port_taken_before_the_broker_binds_it_is_replaced(tmp_path: Path) -> None:
    """The condition of a CI failure: a port chosen free is taken (there by an outgoing
    connection, here by a listening socket) before the JVM binds it. The broker, which no
    client knows yet, starts on other ports; its error says why, not only how it shut down."""
    kafka = ApacheKafka(workdir=tmp_path / "kafka")
    taken = kafka.listeners["SASL_SSL"].port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((kafka.host, taken))
        squatter.listen()
        try:
            kafka.start()
            assert taken not in {item.port for item in kafka.listeners.values()}
            assert broker_count(Target(kafka.host, kafka.port), timeout=10) == 1
            failed = (kafka.log_dir / "server.log.bind-failed-1").read_text()
            assert f"{taken}" in failed
            assert "already in use" in failed.lower()
        finally:
            kafka.close()


def test_a_broker_that_cannot_bind_says_why(tmp_path: Path) -> None:
    """With its ports given (a restart must keep them) there is no second try, and the
    error names the cause from the log's first errors."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        base = squatter.getsockname()[1]
        kafka = ApacheKafka(workdir=tmp_path / "kafka", base_port=base)
        try:
            with pytest.raises(BrokerStartError, match=r"(?s)first errors:.*already in use"):
                kafka.start()
        finally:
            kafka.close()


async def test_pause_freezes_the_broker(fresh_apache_kafka: ApacheKafka) -> None:
    kafka = fresh_apache_kafka
    kafka.pause()
    with pytest.raises(OSError):  # accepted by the kernel, never answered
        broker_count(Target(kafka.host, kafka.port), timeout=1)
    kafka.resume()
    assert broker_count(Target(kafka.host, kafka.port), timeout=10) == 1


def test_start_time_and_memory(apache_kafka: ApacheKafka) -> None:
    """Measured on the session's broker: how long until every listener served, and the
    JVM's resident memory once it has served the tests before this one."""
    assert apache_kafka.started_in is not None
    rss_mib = apache_kafka.rss_bytes() / 2**20
    print(f"Apache Kafka started in {apache_kafka.started_in:.2f} s, RSS {rss_mib:.0f} MiB")
    assert apache_kafka.started_in < 60
    assert 50 < rss_mib < 1024


def test_no_jvm_outlives_a_killed_test_process(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from tests.brokers.apache_kafka import ApacheKafka\n"
        "kafka = ApacheKafka().start()\n"
        "print(kafka.pid, kafka.workdir, flush=True)\n"
        "time.sleep(600)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "child.err").open("wb"),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    line: list[str] = []
    try:
        assert child.stdout is not None
        line = child.stdout.readline().decode().split()
        assert line, f"no broker: {(tmp_path / 'child.err').read_text()[-3000:]}"
        jvm, workdir = int(line[0]), Path(line[1])
        os.kill(jvm, 0)  # running
        child.send_signal(signal.SIGKILL)  # no atexit, no finally
        child.wait(10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and Path(f"/proc/{jvm}").exists():
            status = Path(f"/proc/{jvm}/status").read_text(errors="replace")
            if "State:\tZ" in status:
                break
            time.sleep(0.1)
        else:
            assert not Path(f"/proc/{jvm}").exists(), "the JVM outlived the test process"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if line:
            shutil.rmtree(workdir, ignore_errors=True)  # the killed child could not
