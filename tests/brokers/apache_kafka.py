"""A real Apache Kafka 3.9.1 broker for tests and developers: KRaft, one node, plain `java`.

    with ApacheKafka() as kafka:
        producer = AIOKafkaProducer(**kafka.client_kwargs())                    # PLAINTEXT
        producer = AIOKafkaProducer(**kafka.client_kwargs("SASL_SSL", "SCRAM-SHA-512"))
        producer = AIOKafkaProducer(**kafka.client_kwargs("MTLS"))              # client cert

One process is broker and controller at once. Its listeners, all on 127.0.0.1 and free ports
(or consecutive ports from `base_port`):

    PLAINTEXT       no TLS, no authentication; also the broker's own inter-broker listener
    SSL             TLS with the test CA's server certificate
    MTLS            TLS that requires a client certificate signed by the test CA
    SASL_SSL        TLS + SASL: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
    SASL_PLAINTEXT  SASL without TLS, same mechanisms
    (CONTROLLER     KRaft's own, PLAINTEXT, not for clients)

Every user in `users` can log in with every mechanism: SCRAM credentials are written into
the metadata log at format time (`StorageTool format --add-scram`), PLAIN users are listed
in the listener's JAAS configuration. The CA and certificates are made at first start
(tests/brokers/tls.py), PEM only.

`stop()` + `start()` restarts on the same log directory and ports (data kept); `kill()` is
SIGKILL; `pause()`/`resume()` freeze the JVM (SIGSTOP/SIGCONT): a broker that hangs instead
of dying. No JVM outlives the Python process that started it, however that process ends:
see `_Watchdog`.

The broker settings that make it a test broker are `BROKER_SETTINGS`; docker-compose.yml
runs the same (tests/unit/test_deploy.py compares them). Run by hand: `make kafka`.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from streams.runtime.broker import free_port
from tests.brokers.kafka_jars import (
    KAFKA_VERSION,
    MissingPrerequisite,
    ensure_jars,
    java_binary,
    missing_prerequisites,
)
from tests.brokers.probe import ProbeError, Target, broker_count
from tests.brokers.tls import TlsFiles, make_tls

__all__ = [
    "BROKER_SETTINGS",
    "KAFKA_VERSION",
    "LISTENERS",
    "SASL_MECHANISMS",
    "ApacheKafka",
    "BrokerStartError",
    "Listener",
    "MissingPrerequisite",
]

LISTENERS: dict[str, str] = {
    "PLAINTEXT": "PLAINTEXT",
    "SSL": "SSL",
    "MTLS": "SSL",
    "SASL_SSL": "SASL_SSL",
    "SASL_PLAINTEXT": "SASL_PLAINTEXT",
}
"""Client listener name -> its security protocol, in port order from `base_port`."""

SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_SCRAM = ("SCRAM-SHA-256", "SCRAM-SHA-512")
_CONTROLLER = "CONTROLLER"

ONE_MIB = 1_048_576
BROKER_SETTINGS: dict[str, str] = {
    # one node: internal topics cannot have more replicas than brokers
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    # topics a client names before anyone created them, with sluice's default partition count
    "auto.create.topics.enable": "true",
    "num.partitions": "4",
    # a new consumer group gets its partitions at once, not after the default 3 s wait
    "group.initial.rebalance.delay.ms": "0",
    # tests may use session timeouts shorter than the default minimum (6 s), so a killed
    # worker's partitions move in a second or two
    "group.min.session.timeout.ms": "1000",
    # a broker killed (not stopped) and started again cannot register while the controller
    # still counts its old session (default 9 s); one node is both, so a restart after a
    # crash waited that long. Heartbeats every 0.5 s leave a busy test machine 6 misses.
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "3000",
    # retention and the abort of timed-out transactions act within about a second, so tests
    # with short retention.ms / transaction_timeout_ms need not wait minutes
    "log.initial.task.delay.ms": "1000",
    "log.retention.check.interval.ms": "1000",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
    # sluice dead-letters records over processing.max_message_bytes (1 MiB by default) and
    # its producers send up to twice that (a dead letter carries the oversize record):
    # the broker takes a batch of 2 MiB plus 64 KiB for keys, headers and batch overhead
    "message.max.bytes": str(2 * ONE_MIB + 64 * 1024),
    # the log cleaner (compacted topics: offsets, changelogs) fills its whole key map at
    # start, 128 MiB by default: 16 MiB (~700k keys a pass) takes the JVM from ~300 to
    # ~170 MiB resident
    "log.cleaner.dedupe.buffer.size": str(16 * ONE_MIB),
}
"""The settings that make this a test broker, beyond listeners, node id and log dirs.

docker-compose.yml sets the same as KAFKA_* variables (compared by tests/unit/test_deploy.py)."""

JVM_OPTIONS = (
    "-Xms128m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:ReservedCodeCacheSize=64m",
    "-Djava.awt.headless=true",
)
"""Small and quick to start on 2 shared cores. Measured (median of 3 starts, launch to every
listener serving): C1 only (TieredStopAtLevel=1) starts as fast as the full tiered compiler and
keeps ~30 MiB less resident. A class-data-sharing archive of Kafka's classes (see
`_class_data_sharing`) cuts the start from ~2.0 s to ~1.4 s."""

_USER_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def _class_data_sharing(java: Path, libs: Path) -> tuple[list[str], Path | None]:
    """JVM options to use, or else to make, an AppCDS archive of the classes the broker
    loads, kept next to the jars: (options, the file the JVM will write at exit or None).

    The archive is only valid for the JVM build and the jars it was made with, so its name
    carries both; a stale one is never opened. Each JVM writes its own file, renamed into
    place after a clean stop, so two sessions making one at once cannot mix theirs."""
    real = java.resolve()
    jvm_library = next(real.parent.parent.glob("lib/server/libjvm.so"), real)
    stamp = libs.parent / "libs.sha256"
    jars = stamp.read_text() if stamp.exists() else ""
    key = hashlib.sha256(f"{real}:{jvm_library.stat().st_mtime_ns}:{jars}".encode()).hexdigest()
    archive = libs.parent / f"classes-{key[:16]}.jsa"
    if archive.is_file():
        return [f"-XX:SharedArchiveFile={archive}"], None
    making = libs.parent / f"classes-{key[:16]}.{os.getpid()}-{secrets.token_hex(4)}.jsa.tmp"
    return [f"-XX:ArchiveClassesAtExit={making}"], making


class BrokerStartError(RuntimeError):
    """The broker was started but did not serve clients; the message has its log's tail."""


@dataclass(frozen=True)
class Listener:
    """One client listener of the broker."""

    name: str
    """PLAINTEXT, SSL, MTLS, SASL_SSL or SASL_PLAINTEXT."""
    protocol: str
    """The security protocol a client sets: PLAINTEXT, SSL, SASL_SSL or SASL_PLAINTEXT."""
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.address}"

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")


_running: weakref.WeakSet[ApacheKafka] = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:
    for kafka in list(_running):
        kafka.stop(timeout=10)


def _cluster_id() -> str:
    """A Kafka Uuid in its string form: 16 random bytes, URL-safe base64 without padding.
    Not one starting with '-': kafka-storage's argument parser takes that for an option
    (one fresh broker in 64 failed to format)."""
    while True:
        found = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not found.startswith("-"):
            return found


def _free_ports(host: str, count: int) -> list[int]:
    """`count` different free ports (below the ephemeral range: see `free_port`)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port(host)
        if port not in ports:
            ports.append(port)
    return ports


class _Watchdog:
    """Kills a process when this Python process dies, by any death, SIGKILL included.

    A tiny child Python holds the read end of a pipe whose only write end stays in this
    process; when this process ends, the kernel closes the write end, the child's read
    returns, and it SIGKILLs the broker. `prctl(PR_SET_PDEATHSIG)` would be simpler but fires
    when the *thread* that started the child exits: a broker restarted from
    `asyncio.to_thread` would die with that worker thread.
    """

    _CODE = (
        "import os, signal, sys\n"
        "sys.stdin.buffer.read()\n"
        "try:\n"
        "    os.kill(int(sys.argv[1]), signal.SIGKILL)\n"
        "except OSError:\n"
        "    pass\n"
    )

    def __init__(self, pid: int) -> None:
        read_end, self._write_end = os.pipe()  # not inherited by other children (PEP 446)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", self._CODE, str(pid)],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in a terminal must not kill it first
            )
        finally:
            os.close(read_end)

    def dismiss(self) -> None:
        """The broker has been reaped: end the watchdog before its pid could be reused."""
        self._process.kill()
        self._process.wait()
        os.close(self._write_end)


class ApacheKafka:
    """A single-node Apache Kafka broker (KRaft, broker+controller) in a temporary folder.

    Construction does nothing on disk; `start()` (or `with`) fetches the jars if needed,
    makes the certificates, formats the log directory (first start only), starts the JVM and
    returns once every listener answers a Metadata request. `close()` stops the broker and
    deletes the folder (unless `workdir` was given).
    """

    def __init__(
        self,
        *,
        users: Mapping[str, str] | None = None,
        settings: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        base_port: int | None = None,
        workdir: Path | None = None,
        home: Path | None = None,
        heap: str = "512m",
        start_timeout: float = 90.0,
    ) -> None:
        """users: username -> password, each valid for every SASL mechanism (default: one
        user `alice` with a random password). settings: broker properties that override
        the defaults (e.g. an authorizer). base_port: PLAINTEXT on it, the other listeners
        and the controller on the next ports; default free ports. workdir: where data, logs
        and certificates go; default a new temporary folder. home: the jar cache (see
        kafka_jars.kafka_home)."""
        self.users: dict[str, str] = dict(users or {"alice": secrets.token_urlsafe(12)})
        for name, password in self.users.items():
            if not name or not set(name + password) <= _USER_CHARACTERS or not password:
                raise ValueError(
                    f"user {name!r}: names and passwords are [A-Za-z0-9_.-]+ (they go into "
                    "JAAS and --add-scram arguments unquoted)"
                )
        self.overrides = dict(settings or {})
        self.host = host
        self.heap = heap
        self.start_timeout = start_timeout
        self.home = home
        self._ports_chosen = base_port is not None
        self._use_ports(
            [base_port + i for i in range(len(LISTENERS) + 1)]
            if base_port is not None
            else _free_ports(host, len(LISTENERS) + 1)
        )
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="sluice-kafka-"))
        self.data_dir = self.workdir / "data"
        self.log_dir = self.workdir / "logs"
        self.log_file = self.log_dir / "server.log"
        """The broker's log4j output (rolled at 20 MB, two old files kept)."""
        self.properties_file = self.workdir / "server.properties"
        self.cluster_id = _cluster_id()
        self.tls: TlsFiles | None = None
        self.started_in: float | None = None
        """Seconds from launching the JVM until every listener answered, at the last start."""
        self._process: subprocess.Popen[bytes] | None = None
        self._watchdog: _Watchdog | None = None
        self._paused = False
        self._closed = False
        self._archive_in_making: Path | None = None

    def _use_ports(self, ports: list[int]) -> None:
        self.listeners: dict[str, Listener] = {
            name: Listener(name, protocol, self.host, port)
            for (name, protocol), port in zip(LISTENERS.items(), ports, strict=False)
        }
        self.controller_port = ports[-1]

    # --- addresses and credentials -----------------------------------------------------

    @property
    def port(self) -> int:
        """The PLAINTEXT port."""
        return self.listeners["PLAINTEXT"].port

    @property
    def address(self) -> str:
        """PLAINTEXT `127.0.0.1:port`: the same attribute as the embedded broker's."""
        return self.listeners["PLAINTEXT"].address

    @property
    def url(self) -> str:
        """PLAINTEXT `kafka://127.0.0.1:port`, the form sluice.yaml's `brokers` takes."""
        return self.listeners["PLAINTEXT"].url

    @property
    def username(self) -> str:
        """The first user's name (`alice` by default)."""
        return next(iter(self.users))

    @property
    def password(self) -> str:
        return self.users[self.username]

    def _tls(self) -> TlsFiles:
        if self.tls is None:
            self.tls = make_tls(self.workdir / "tls")
        return self.tls

    @property
    def ca_file(self) -> Path:
        """The test CA (PEM): what a client trusts to reach SSL, MTLS and SASL_SSL."""
        return self._tls().ca_file

    @property
    def client_cert_file(self) -> Path:
        """A client certificate (PEM, CN=client) the MTLS listener accepts."""
        return self._tls().client_cert_file

    @property
    def client_key_file(self) -> Path:
        """The client certificate's private key (PEM, PKCS#8, not encrypted)."""
        return self._tls().client_key_file

    def ssl_context(self, client_cert: bool = False) -> ssl.SSLContext:
        """A client SSL context trusting the test CA (host names checked), with the client
        certificate loaded when `client_cert`."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if client_cert:
            context.load_cert_chain(str(self.client_cert_file), str(self.client_key_file))
        return context

    def client_kwargs(
        self,
        listener: str = "PLAINTEXT",
        mechanism: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        client_cert: bool | None = None,
    ) -> dict[str, Any]:
        """Keyword arguments for AIOKafkaProducer/Consumer/AdminClient to reach `listener`:
        bootstrap_servers, security_protocol, and as needed ssl_context, sasl_mechanism,
        sasl_plain_username, sasl_plain_password. SASL listeners default to SCRAM-SHA-512
        and the first user; `client_cert` defaults to True on MTLS only."""
        chosen = self.listeners[listener]
        kwargs: dict[str, Any] = {
            "bootstrap_servers": chosen.address,
            "security_protocol": chosen.protocol,
        }
        if chosen.tls:
            wants_cert = listener == "MTLS" if client_cert is None else client_cert
            kwargs["ssl_context"] = self.ssl_context(client_cert=wants_cert)
        if chosen.sasl:
            user = username or self.username
            kwargs["sasl_mechanism"] = mechanism or "SCRAM-SHA-512"
            kwargs["sasl_plain_username"] = user
            kwargs["sasl_plain_password"] = password if password is not None else self.users[user]
        elif mechanism is not None:
            raise ValueError(f"listener {listener} has no SASL: mechanism {mechanism!r} unused")
        return kwargs

    def sluice_settings(
        self, listener: str = "PLAINTEXT", mechanism: str | None = None
    ) -> dict[str, Any]:
        """`brokers` and `kafka` for a sluice.yaml reaching `listener` (as JSON-able data)."""
        chosen = self.listeners[listener]
        kafka: dict[str, Any] = {"security_protocol": chosen.protocol}
        if chosen.tls:
            kafka["ssl_cafile"] = str(self.ca_file)
            if listener == "MTLS":
                kafka["ssl_certfile"] = str(self.client_cert_file)
                kafka["ssl_keyfile"] = str(self.client_key_file)
        if chosen.sasl:
            kafka["sasl_mechanism"] = mechanism or "SCRAM-SHA-512"
            kafka["username"] = self.username
            kafka["password"] = self.password
        return {"brokers": [chosen.url], "kafka": kafka}

    # --- configuration -----------------------------------------------------------------

    def server_properties(self) -> dict[str, str]:
        """Everything the broker is started with (written to `properties_file`)."""
        tls = self._tls()
        client = list(self.listeners.values())
        listeners = [f"{item.name}://{item.address}" for item in client]
        jaas_plain = "org.apache.kafka.common.security.plain.PlainLoginModule required " + " ".join(
            f'user_{name}="{password}"' for name, password in self.users.items()
        )
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "controller.listener.names": _CONTROLLER,
            "inter.broker.listener.name": "PLAINTEXT",
            "listeners": ",".join(
                [*listeners, f"{_CONTROLLER}://{self.host}:{self.controller_port}"]
            ),
            "advertised.listeners": ",".join(listeners),
            "listener.security.protocol.map": ",".join(
                [f"{item.name}:{item.protocol}" for item in client] + [f"{_CONTROLLER}:PLAINTEXT"]
            ),
            "log.dirs": str(self.data_dir),
            **BROKER_SETTINGS,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(tls.server_file),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(tls.ca_file),
            "ssl.client.auth": "none",
            "listener.name.mtls.ssl.client.auth": "required",
            "sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
        }
        for item in client:
            if not item.sasl:
                continue
            prefix = f"listener.name.{item.name.lower()}"
            properties[f"{prefix}.plain.sasl.jaas.config"] = jaas_plain + ";"
            for mechanism in _SCRAM:
                properties[f"{prefix}.{mechanism.lower()}.sasl.jaas.config"] = (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                )
        properties.update(self.overrides)
        return properties

    def _write_config(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(
            "".join(f"{key}={value}\n" for key, value in self.server_properties().items())
        )
        self.properties_file.chmod(0o600)  # passwords
        (self.workdir / "log4j.properties").write_text(
            "log4j.rootLogger=INFO, file\n"
            "log4j.appender.file=org.apache.log4j.RollingFileAppender\n"
            f"log4j.appender.file.File={self.log_file}\n"
            "log4j.appender.file.MaxFileSize=20MB\n"
            "log4j.appender.file.MaxBackupIndex=2\n"
            "log4j.appender.file.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka.request.logger=WARN\n"
            "log4j.logger.kafka.authorizer.logger=WARN\n"
        )

    def _java(
        self, libs: Path, main: str, *args: str, heap: str, extra: tuple[str, ...] = ()
    ) -> list[str]:
        return [
            str(java_binary()),
            f"-Xmx{heap}",
            *JVM_OPTIONS,
            *extra,
            f"-Dlog4j.configuration=file:{self.workdir / 'log4j.properties'}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def _format(self, libs: Path) -> None:
        scram = [
            arg
            for name, password in self.users.items()
            for mechanism in _SCRAM
            for arg in ("--add-scram", f"{mechanism}=[name={name},password={password}]")
        ]
        command = self._java(
            libs,
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            self.cluster_id,
            "--config",
            str(self.properties_file),
            "--ignore-formatted",
            *scram,
            heap="256m",
        )
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
        if result.returncode != 0:
            raise BrokerStartError(
                f"formatting {self.data_dir} failed ({result.returncode}):\n"
                + (result.stdout + result.stderr).strip()[-3000:]
            )

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process is not None else None

    def start(self, timeout: float | None = None) -> ApacheKafka:
        """Start the broker (format the log dir on the first start) and wait until every
        listener serves a Metadata request. A no-op when it runs. Blocks for seconds: from
        async code call it as `await asyncio.to_thread(kafka.start)`.

        Raises MissingPrerequisite (no java, no jars and no mvn), BrokerStartError."""
        if self._closed:
            raise RuntimeError("this ApacheKafka was closed; make a new one")
        if self.running:
            return self
        if self._process is not None:  # it exited by itself
            self._reaped(clean=False)
        missing = missing_prerequisites(self.home)
        if missing:
            raise MissingPrerequisite("; ".join(missing))
        libs = ensure_jars(self.home)
        for attempt in range(1, 4):
            try:
                return self._start_once(libs, timeout)
            except BrokerStartError:
                # A port picked free can still be taken before the JVM binds it. A broker
                # that never served anyone (no client knows its ports) starts afresh on
                # other ports; a restarted one must keep its address.
                logged = self._logged()
                if attempt == 3 or self._ports_chosen or "already in use" not in logged.lower():
                    raise
                for path in (self.log_file, self.log_dir / "jvm.out"):
                    if path.exists():
                        path.rename(path.with_name(f"{path.name}.bind-failed-{attempt}"))
                shutil.rmtree(self.data_dir, ignore_errors=True)
                self._use_ports(_free_ports(self.host, len(LISTENERS) + 1))
        raise AssertionError("unreachable")

    def _start_once(self, libs: Path, timeout: float | None) -> ApacheKafka:
        self._write_config()
        if not (self.data_dir / "meta.properties").exists():
            self._format(libs)
        sharing, self._archive_in_making = _class_data_sharing(java_binary(), libs)
        launched = time.monotonic()
        with (self.log_dir / "jvm.out").open("ab") as jvm_out:
            self._process = subprocess.Popen(
                self._java(
                    libs,
                    "kafka.Kafka",
                    str(self.properties_file),
                    heap=self.heap,
                    extra=tuple(sharing),
                ),
                stdin=subprocess.DEVNULL,
                stdout=jvm_out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # Ctrl-C reaches Python, which stops the broker in order
            )
        self._watchdog = _Watchdog(self._process.pid)
        self._paused = False
        _running.add(self)
        try:
            self._wait_ready(launched + (timeout or self.start_timeout))
        except BaseException:
            self.kill()
            raise
        self.started_in = time.monotonic() - launched
        self._ports_chosen = True  # clients know them now
        return self

    def _probe_targets(self) -> dict[str, Target]:
        targets = {}
        for name, item in self.listeners.items():
            context = self.ssl_context(client_cert=name == "MTLS") if item.tls else None
            user = (self.username, self.password) if item.sasl else None
            targets[name] = Target(item.host, item.port, context, user)
        return targets

    def _wait_ready(self, deadline: float) -> None:
        pending = self._probe_targets()
        last_error: Exception | None = None
        while pending:
            assert self._process is not None
            if self._process.poll() is not None:
                raise BrokerStartError(
                    f"Apache Kafka exited with {self._process.returncode} at start; "
                    f"{self.log_file}:\n{self.start_failure()}"
                )
            if time.monotonic() > deadline:
                raise BrokerStartError(
                    f"Apache Kafka did not serve {', '.join(pending)} in time "
                    f"(last error: {last_error!r}); {self.log_file}:\n{self.start_failure()}"
                )
            for name, target in list(pending.items()):
                try:
                    if broker_count(target, timeout=2.0) > 0:
                        del pending[name]
                except (OSError, ProbeError) as exc:
                    last_error = exc
                    break  # the others are not ready either, most likely
            if pending:
                time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> None:
        """Controlled shutdown (SIGTERM), SIGKILL after `timeout` seconds. Data stay for
        `start()`. A no-op when not running."""
        process = self._process
        clean = False
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
                if self._paused:
                    process.send_signal(signal.SIGCONT)
            try:
                process.wait(timeout)
                clean = True
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait()
        self._reaped(clean)

    def kill(self) -> None:
        """SIGKILL, now: a broker crash. Data written so far stay for `start()`, which then
        recovers the logs."""
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
        self._reaped(clean=False)

    def _reaped(self, clean: bool) -> None:
        """After the JVM exited: a class-data archive it wrote on a clean exit goes into
        place, the watchdog goes."""
        making, self._archive_in_making = self._archive_in_making, None
        if making is not None and making.exists():
            if clean and making.stat().st_size:
                # atomic: a JVM never opens half an archive
                making.replace(making.with_name(making.name.split(".")[0] + ".jsa"))
            else:
                making.unlink(missing_ok=True)
        self._process = None
        self._paused = False
        if self._watchdog is not None:
            self._watchdog.dismiss()
            self._watchdog = None
        _running.discard(self)

    def pause(self) -> None:
        """Freeze the JVM (SIGSTOP): connections stay open, nothing answers."""
        if self._process is not None and self.running:
            self._process.send_signal(signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        """Thaw a paused JVM (SIGCONT)."""
        if self._process is not None and self.running:
            self._process.send_signal(signal.SIGCONT)
            self._paused = False

    def restart(self, down_for: float = 0.0) -> None:
        """stop(), `down_for` seconds, start(): blocking, see `start()`."""
        self.stop()
        time.sleep(down_for)
        self.start()

    def close(self) -> None:
        """Stop the broker and delete its temporary folder."""
        self.stop()
        self._closed = True
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ApacheKafka:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- diagnostics -------------------------------------------------------------------

    def rss_bytes(self) -> int:
        """Resident memory of the JVM (Linux /proc), 0 when not running."""
        pid = self.pid
        if pid is None:
            return 0
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return 0
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def _logged(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def start_failure(self, errors: int = 12, lines: int = 20) -> str:
        """What a failed start logged: its first ERROR and FATAL lines, each with the line
        after it (an exception's message), which say why; then the log's last lines (the
        orderly shutdown that follows a fatal error, alone, says nothing)."""
        logged = self._logged().splitlines()
        causes: list[str] = []
        for index, line in enumerate(logged):
            if len(causes) < 2 * errors and ("] ERROR " in line or "] FATAL " in line):
                causes += logged[index : index + 2]
        head = "\n".join(causes)
        return (f"first errors:\n{head}\n...\n" if head else "") + self.log_tail(lines)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the broker's log (and of the JVM's own output)."""
        parts = []
        for path in (self.log_file, self.log_dir / "jvm.out"):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append("\n".join(text))
        return "\n".join(part for part in parts if part)


def _describe(kafka: ApacheKafka) -> str:
    lines = [f"Apache Kafka {KAFKA_VERSION} is up in {kafka.started_in:.1f} s (pid {kafka.pid}):"]
    lines += [f"  {item.name:<15} {item.url}" for item in kafka.listeners.values()]
    lines += [
        "",
        f"  SASL users (mechanisms {', '.join(SASL_MECHANISMS)}):",
        *(f"    {name} / {password}" for name, password in kafka.users.items()),
        "",
        f"  CA:          {kafka.ca_file}",
        f"  client cert: {kafka.client_cert_file}",
        f"  client key:  {kafka.client_key_file}",
        f"  log:         {kafka.log_file}",
        "",
        "  sluice.yaml for SASL_SSL:",
        f"    brokers: ['{kafka.listeners['SASL_SSL'].url}']",
        f"    kafka: {{security_protocol: SASL_SSL, sasl_mechanism: SCRAM-SHA-512, "
        f"username: {kafka.username}, password: {kafka.password}, ssl_cafile: {kafka.ca_file}}}",
        "",
        "Ctrl-C stops it and deletes its folder.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """`python -m tests.brokers.apache_kafka` (`make kafka`): the test broker, by hand."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument(
        "--port",
        type=int,
        default=9092,
        help="PLAINTEXT port; SSL, MTLS, SASL_SSL, SASL_PLAINTEXT and the controller take "
        "the next five (default 9092; 0: free ports)",
    )
    parser.add_argument("--user", default="alice")
    parser.add_argument("--password", default=None, help="default: a random one, printed")
    parser.add_argument("--fetch-only", action="store_true", help="fetch the jars and exit")
    args = parser.parse_args(argv)
    try:
        if args.fetch_only:
            print(ensure_jars())
            return
        kafka = ApacheKafka(
            users={args.user: args.password or secrets.token_urlsafe(12)},
            base_port=args.port or None,
        )
    except (MissingPrerequisite, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    try:
        with kafka:
            print(_describe(kafka), flush=True)
            while kafka.running:
                time.sleep(0.5)
            print(f"Apache Kafka exited; {kafka.log_file}:\n{kafka.log_tail()}", file=sys.stderr)
            raise SystemExit(1)
    except KeyboardInterrupt:
        print("\nstopping Apache Kafka")
    except (MissingPrerequisite, BrokerStartError) as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
