"""Connecting to Kafka: client options from the settings (TLS, mutual TLS, SASL), and a
failure to connect turned into one line that says what to check.

aiokafka retries quietly and, when bootstrap fails, raises only "Unable to bootstrap";
the reason (a wrong password, an untrusted certificate, a port that never answers) goes
to its log. `explain_connection_failure` opens one connection per broker itself, with
the same options, to find that reason and say it in one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import Counter
from collections.abc import Awaitable, Iterator
from typing import Any, Protocol

from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from models.settings import KafkaSettings, Settings
from streams.core.errors import SluiceError

_AUTHENTICATION_ERRORS = (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)


# How old a client's view of the cluster may get. aiokafka's default (Kafka's) is 5 minutes:
# partitions added to a source topic went unread, without lag, for that long (issue 22
# case 5). The group consumer compares each refresh with its subscription and rejoins when a
# partition count changed, so this bounds how soon new partitions are read (and a stateful
# pipeline's input that outgrew its changelogs stops the worker). A refresh is one small
# metadata request per client; every 5 s is noise beside a fetch every 10 ms.
METADATA_MAX_AGE_MS = 5_000


class KafkaUnreachable(SluiceError):
    """No broker could be reached, or none accepted our credentials."""


class _Client(Protocol):
    def start(self) -> Awaitable[None]: ...
    def stop(self) -> Awaitable[None]: ...


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """Server verification against `ssl_cafile` (else the system's CAs), and our own
    certificate when `ssl_certfile`/`ssl_keyfile` are set (mutual TLS)."""
    context = ssl.create_default_context(cafile=kafka.ssl_cafile)
    if kafka.ssl_certfile:
        password = kafka.ssl_password.get_secret_value() if kafka.ssl_password else None
        context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile, password)
    return context


def connection_options(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments for the configured brokers and security."""
    if not settings.brokers:
        raise KafkaUnreachable(
            "no brokers configured: set brokers: [kafka://host:9092] in sluice.yaml or "
            "SLUICE_BROKERS (`sluice run` prints the embedded broker's address)"
        )
    kafka = settings.kafka
    options: dict[str, Any] = {
        "bootstrap_servers": settings.broker_addresses(),
        "security_protocol": kafka.security_protocol,
        "client_id": f"sluice-{settings.app_id}",
        "metadata_max_age_ms": METADATA_MAX_AGE_MS,
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        try:
            options["ssl_context"] = ssl_context(kafka)
        except (OSError, ssl.SSLError) as exc:
            raise KafkaUnreachable(
                f"cannot load the TLS files ({exc}): check kafka.ssl_cafile, "
                "kafka.ssl_certfile, kafka.ssl_keyfile and kafka.ssl_password"
            ) from None
    if kafka.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = kafka.sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = kafka.username
        options["sasl_plain_password"] = (
            kafka.password.get_secret_value() if kafka.password else None
        )
    return options


def _where(settings: Settings) -> str:
    return ", ".join(f"kafka://{address}" for address in settings.broker_addresses())


def describe_error(settings: Settings, exc: BaseException) -> str:
    """One line for a connection failure: what happened and what to check."""
    where = _where(settings)
    kafka = settings.kafka
    if isinstance(exc, _AUTHENTICATION_ERRORS):
        return (
            f"authentication failed at {where} for user {kafka.username!r} "
            f"({kafka.sasl_mechanism or 'PLAIN'}): check kafka.username, kafka.password "
            "and kafka.sasl_mechanism"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"cannot reach Kafka at {where}: the broker's TLS certificate is not trusted "
            f"({exc.verify_message}); set kafka.ssl_cafile to the CA that signed it"
        )
    if isinstance(exc, ssl.SSLError):
        return (
            f"cannot reach Kafka at {where}: TLS handshake failed ({exc.reason or exc}); "
            "check kafka.security_protocol, and kafka.ssl_certfile/ssl_keyfile when the "
            "broker requires a client certificate"
        )
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        reason = f"no answer within {kafka.connect_timeout / 1000:g}s"
    return f"cannot reach Kafka at {where}: {reason}; check brokers / kafka.security_protocol"


async def probe(settings: Settings, timeout: float) -> BaseException | None:
    """Open (and close) one Kafka connection to each bootstrap broker, with the client
    options and the SASL handshake; None when one of them works, else the first error."""
    from aiokafka.conn import create_conn

    options = connection_options(settings)
    first: BaseException | None = None
    for address in options["bootstrap_servers"]:
        host, _, port = address.rpartition(":")
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host,
                    int(port),
                    client_id=options["client_id"],
                    request_timeout_ms=int(timeout * 1000),
                    ssl_context=options.get("ssl_context"),
                    security_protocol=options["security_protocol"],
                    sasl_mechanism=options.get("sasl_mechanism"),
                    sasl_plain_username=options.get("sasl_plain_username"),
                    sasl_plain_password=options.get("sasl_plain_password"),
                ),
                timeout,
            )
        except (OSError, KafkaError, TimeoutError, ValueError) as exc:
            first = first or exc
            continue
        conn.close()
        return None
    return first


class _QuietBootstrapFilter(logging.Filter):
    """Drops aiokafka's "Unable connect to HOST:PORT" for the brokers a client is being
    started against (`_quiet_bootstrap`); every other aiokafka line passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _starting or not str(record.msg).startswith("Unable connect to"):
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        return len(args) < 2 or f"{args[0]}:{args[1]}" not in _starting


# broker address -> how many client starts against it are under way
_starting: Counter[str] = Counter()
logging.getLogger("aiokafka.client").addFilter(_QuietBootstrapFilter())


@contextlib.contextmanager
def _quiet_bootstrap(addresses: list[str]) -> Iterator[None]:
    """aiokafka logs an error per failed bootstrap attempt; the one line a failed start
    gives (KafkaUnreachable) says it better.

    Only those lines, and only for the brokers being started against: this used to raise
    the whole `aiokafka` logger's level for the duration, and two clients starting at once
    (the engine starts a pipeline's clients together) restored each other's raised level,
    which left every aiokafka line silenced for the rest of the run — a broker error later
    on was never logged (test_log_lines found it). A context variable would not do either:
    the tasks a client creates while starting (metadata sync, fetcher, coordinator) would
    inherit the quiet for their lifetime.
    """
    _starting.update(addresses)
    try:
        yield
    finally:
        _starting.subtract(addresses)
        for address in addresses:
            if _starting[address] <= 0:
                del _starting[address]


async def start_client(client: _Client, settings: Settings) -> None:
    """Start an aiokafka client within `kafka.connect_timeout`; a failure becomes a
    KafkaUnreachable whose message names the brokers and the reason."""
    timeout = settings.kafka.connect_timeout / 1000
    try:
        with _quiet_bootstrap(settings.broker_addresses()):
            await asyncio.wait_for(client.start(), timeout=timeout)
    except (TimeoutError, KafkaConnectionError, KafkaError, OSError) as exc:
        await _stop_quietly(client)
        raise await unreachable(settings, exc) from None


async def unreachable(settings: Settings, exc: BaseException) -> KafkaUnreachable:
    """The reason behind a failed start, found by probing the brokers ourselves."""
    timeout = min(settings.kafka.connect_timeout / 1000, 10.0)
    cause = exc
    # a timeout already says it all (probing would wait that long again)
    if not isinstance(exc, (*_AUTHENTICATION_ERRORS, TimeoutError)):
        found = await probe(settings, timeout)
        if found is not None:
            cause = found
    return KafkaUnreachable(describe_error(settings, cause))


async def _stop_quietly(client: _Client) -> None:
    with contextlib.suppress(Exception):  # a client that failed to start may fail to stop
        await asyncio.wait_for(client.stop(), 5)
