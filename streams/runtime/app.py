"""The Faust app for a set of pipelines: settings → faust.App, one agent per pipeline."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import faust

from models.pipeline import PipelineSpec
from models.settings import Settings

# Short group timeouts: the embedded broker admits a member after about half the session
# timeout, and a killed worker's partitions move after it (RUNTIME-NOTES.md).
SESSION_TIMEOUT_S = 6.0
HEARTBEAT_S = 0.5


# Faust hard-codes fetch_max_wait_ms=1500. The embedded broker (tansu) holds a fetch for
# the whole wait even when records arrive meanwhile, so every hop costs up to 1.5 s
# (measured: p50 323 ms at 1500, 7 ms at 20). Kafka answers as soon as data arrives, so
# a short wait costs only idle fetch requests there.
FETCH_MAX_WAIT_MS = 20


def _shorten_fetch_wait() -> None:
    from faust.transport.drivers import aiokafka as driver

    thread = driver.AIOKafkaConsumerThread
    if getattr(thread, "_sluice_fetch_wait", False):
        return
    create = thread._create_worker_consumer

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by the fetcher at start()
        return consumer

    thread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]
    thread._sluice_fetch_wait = True  # type: ignore[attr-defined]


def _deliver_directly() -> None:
    """Faust's fetch loop hands each message to the conductor through
    `wait_first(callback(message), suspend_flow.wait())`: four new tasks and an
    `asyncio.wait` per message, so that a rebalance (flow suspended) cannot hold the loop
    up. While the flow is open the callback is awaited directly; when it is suspended,
    Faust's path runs. With the batch channels this took the consumption ceiling from
    24k to 71k records/s (bench/README.md)."""
    from faust.transport.consumer import Consumer
    from mode.services import WaitResults

    if getattr(Consumer, "_sluice_direct_delivery", False):
        return
    wait_first = Consumer.wait_first

    async def deliver_or_wait_first(self: Any, *coros: Any, timeout: Any = None) -> Any:
        if (
            len(coros) == 2
            and timeout is None
            and self.flow_active
            and not self.suspend_flow.is_set()
            and asyncio.iscoroutine(coros[0])
            and asyncio.iscoroutine(coros[1])
        ):
            callback, suspended = coros
            suspended.close()  # never started: nothing waits on it
            return WaitResults([callback], [await callback], False)
        return await wait_first(self, *coros, timeout=timeout)

    Consumer.wait_first = deliver_or_wait_first  # type: ignore[method-assign]
    Consumer._sluice_direct_delivery = True  # type: ignore[attr-defined]


def faust_credentials(settings: Settings) -> Any:
    kafka = settings.kafka
    if kafka.security_protocol == "PLAINTEXT":
        return None
    ssl_context = None
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        import ssl

        ssl_context = ssl.create_default_context(cafile=kafka.ssl_cafile)
    if kafka.security_protocol == "SSL":
        return faust.SSLCredentials(ssl_context)
    password = kafka.password.get_secret_value() if kafka.password else None
    return faust.SASLCredentials(
        username=kafka.username,
        password=password,
        ssl_context=ssl_context,
        mechanism=kafka.sasl_mechanism or "PLAIN",
    )


def data_directory(settings: Settings) -> Path:
    if settings.store == "rocksdb://":
        return Path(".sluice-data") / settings.app_id
    return Path(tempfile.gettempdir()) / f"sluice-{settings.app_id}"


def make_app(settings: Settings) -> faust.App:
    _shorten_fetch_wait()
    _deliver_directly()
    processing = settings.processing
    return faust.App(
        settings.app_id,
        broker=settings.brokers,
        broker_credentials=faust_credentials(settings),
        store=settings.store,
        datadir=str(data_directory(settings)),
        topic_partitions=processing.partitions,
        topic_replication_factor=1,
        processing_guarantee=processing.guarantee,
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=HEARTBEAT_S,
        broker_rebalance_timeout=SESSION_TIMEOUT_S * 2,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=0.5,  # fewer redeliveries after a rebalance or a crash
        broker_max_poll_records=max(processing.batch_max * 2, 500),
        stream_buffer_maxsize=max(processing.batch_max * 4, 4096),
        producer_linger=0.002,
        producer_max_batch_size=262_144,
        producer_max_request_size=max(processing.max_message_bytes * 2, 1_048_576),
        consumer_max_fetch_size=max(processing.max_message_bytes * 2, 1_048_576),
        key_serializer="json",  # table keys are text; sluice's own topics are raw bytes
        value_serializer="json",
        web_enabled=False,  # sluice serves its own endpoints (streams.runtime.web)
        table_standby_replicas=0,
    )


def source_topics(pipelines: dict[str, PipelineSpec]) -> list[str]:
    return sorted({spec.source.topic for spec in pipelines.values()})
