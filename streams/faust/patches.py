"""The patches of Faust sluice needs, each with its reason; applied once per process by
`attach`. Nothing outside streams.faust changes Faust."""

from __future__ import annotations

from typing import Any

# Faust's worker consumer fetches with a hard-coded fetch_max_wait_ms of 1,500. tansu (the
# embedded broker) holds a fetch for its whole wait even when records arrive, and returns
# a batch or so per partition each time: 700 records took 50 s to pass a pipeline
# (measured). Apache Kafka answers as soon as data arrives, so a short wait only costs idle
# fetch requests there. sluice's own engine waits 100 ms: tansu stops listing a partition's
# batches at the wait, so at 10 ms a long-running topic's tail came back empty (issue 22,
# case 9; streams.runtime.engine_clients.FETCH_MAX_WAIT_MS) — the same bound here.
FETCH_MAX_WAIT_MS = 100


def apply() -> None:
    from faust.transport.drivers import aiokafka as driver

    thread: Any = driver.AIOKafkaConsumerThread
    if getattr(thread, "_sluice_patched", False):
        return
    create = thread._create_worker_consumer

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by its fetcher at start
        return consumer

    thread._create_worker_consumer = _create_worker_consumer
    thread._sluice_patched = True
