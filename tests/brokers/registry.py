"""A real schema registry for tests: Apicurio Registry 3.3.3 on 127.0.0.1 and free ports.

    with ApicurioRegistry() as registry:
        registry.url        # http://127.0.0.1:PORT/apis/ccompat/v7 (the Confluent API)
        registry.https_url  # the same API over TLS, its certificate signed by a test CA:
        registry.tls.ca_file  # what a client trusts (`schema_registry.ssl_cafile`)

In-memory storage: every start is empty. Ready when `GET /apis/ccompat/v7/subjects` answers
200 (5-13 s on this machine class). HTTPS is served beside HTTP by the same JVM (one more
port, a certificate for 127.0.0.1/localhost from tests.brokers.tls): a second registry only
for TLS would cost another 300 MB and 5-13 s of start. `stop()` ends the JVM; no JVM
outlives the Python process that started it (the same watchdog as the Apache Kafka
fixture). Run by hand: `python -m tests.brokers.registry`.
"""

from __future__ import annotations

import contextlib
import http.client
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from streams.runtime.broker import free_port
from tests.brokers.apache_kafka import _Watchdog
from tests.brokers.registry_jar import ensure_registry, registry_java
from tests.brokers.tls import TlsFiles, make_tls

CCOMPAT = "/apis/ccompat/v7"


class RegistryStartError(RuntimeError):
    """The registry did not answer in time; the message holds its log's tail."""


class ApicurioRegistry:
    def __init__(self) -> None:
        self.port = 0
        self.management_port = 0
        self.https_port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._watchdog: _Watchdog | None = None
        self._log_dir = Path(tempfile.mkdtemp(prefix="sluice-registry-"))
        self.log_path = self._log_dir / "registry.log"
        self.tls: TlsFiles = make_tls(self._log_dir / "tls", ca_name="sluice registry test CA")

    @property
    def url(self) -> str:
        """The Confluent-compatible API, as `schema_registry.url` takes it."""
        return f"http://127.0.0.1:{self.port}{CCOMPAT}"

    @property
    def https_url(self) -> str:
        """The same API over TLS; trust `tls.ca_file` to reach it."""
        return f"https://127.0.0.1:{self.https_port}{CCOMPAT}"

    def start(self, timeout: float = 180, attempts: int = 3) -> ApicurioRegistry:
        """Start and wait until it answers (5-13 s on an idle 2-core machine; 45-90 s
        were seen with a load average of 13-18).

        A free port can be taken by another process (a broker of a test beside this one)
        before the registry binds it: the registry then exits, and it is started again on
        other ports; until then the probe may reach that other process (not HTTP).
        """
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once(timeout)
            except RegistryStartError:
                if attempt == attempts or "already in use" not in self.log_tail().lower():
                    raise
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> ApicurioRegistry:
        jar = ensure_registry()
        java = registry_java()
        self.port, self.management_port, self.https_port = free_port(), free_port(), free_port()
        command = [
            str(java),
            "-Xmx512m",
            # a test registry serves a few requests: C1 only and the serial collector start
            # it with less CPU on a busy machine
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            "-Dquarkus.http.host=127.0.0.1",
            f"-Dquarkus.http.port={self.port}",
            "-Dquarkus.management.host=127.0.0.1",
            f"-Dquarkus.management.port={self.management_port}",
            f"-Dquarkus.http.ssl-port={self.https_port}",
            f"-Dquarkus.http.ssl.certificate.files={self.tls.server_cert_file}",
            f"-Dquarkus.http.ssl.certificate.key-files={self.tls.server_key_file}",
            "-jar",
            str(jar),
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=str(self._log_dir)
            )
        self._watchdog = _Watchdog(self.process.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()  # dismisses the watchdog
                raise RegistryStartError(f"the registry exited:\n{self.log_tail()}")
            if self.answers():
                return self
            time.sleep(0.3)
        self.stop()
        raise RegistryStartError(f"the registry did not answer in {timeout}s:\n{self.log_tail()}")

    def answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/subjects", timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError, http.client.HTTPException):
            return False  # not up yet, or another process on the port (see start)

    def stop(self, timeout: float = 20) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        if self._watchdog is not None:
            self._watchdog.dismiss()
            self._watchdog = None
        self.process = None

    def pause(self) -> None:
        """SIGSTOP: a registry that hangs (requests time out) instead of refusing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def __enter__(self) -> ApicurioRegistry:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def main() -> None:
    with ApicurioRegistry() as registry:
        print(registry.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
