"""Is a Kafka listener serving clients? A blocking Metadata request over one connection.

Blocking on purpose: `ApacheKafka.start()` is called from plain fixtures and from inside
async tests alike, so it cannot own an event loop. The probe speaks just enough of the
protocol (request header v1, SaslHandshake v1 + SaslAuthenticate v0 with PLAIN, Metadata v1)
to prove what a client needs: TLS handshake, authentication, and a broker in the metadata
(a KRaft broker lists itself only once it is registered and unfenced).
"""

from __future__ import annotations

import socket
import ssl
import struct
from dataclasses import dataclass

_SASL_HANDSHAKE, _SASL_AUTHENTICATE, _METADATA = 17, 36, 3


class ProbeError(Exception):
    """The listener answered, but not as a ready broker does."""


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    ssl_context: ssl.SSLContext | None = None
    plain_user: tuple[str, str] | None = None
    """(username, password) to authenticate with SASL PLAIN before the request."""


def _string(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">h", len(data)) + data


class _Connection:
    def __init__(self, target: Target, timeout: float) -> None:
        raw = socket.create_connection((target.host, target.port), timeout=timeout)
        try:
            self.sock = (
                target.ssl_context.wrap_socket(raw, server_hostname=target.host)
                if target.ssl_context is not None
                else raw
            )
        except BaseException:
            raw.close()
            raise
        self.correlation = 0

    def request(self, api_key: int, version: int, body: bytes) -> bytes:
        self.correlation += 1
        header = struct.pack(">hhi", api_key, version, self.correlation) + _string("sluice-probe")
        payload = header + body
        self.sock.sendall(struct.pack(">i", len(payload)) + payload)
        size = struct.unpack(">i", self._read(4))[0]
        response = self._read(size)
        (correlation,) = struct.unpack(">i", response[:4])
        if correlation != self.correlation:
            raise ProbeError(f"correlation id {correlation}, expected {self.correlation}")
        return response[4:]

    def _read(self, size: int) -> bytes:
        chunks = bytearray()
        while len(chunks) < size:
            chunk = self.sock.recv(size - len(chunks))
            if not chunk:
                raise ProbeError("the broker closed the connection")
            chunks += chunk
        return bytes(chunks)

    def close(self) -> None:
        self.sock.close()


def _authenticate_plain(connection: _Connection, username: str, password: str) -> None:
    response = connection.request(_SASL_HANDSHAKE, 1, _string("PLAIN"))
    (error,) = struct.unpack(">h", response[:2])
    if error:
        raise ProbeError(f"SaslHandshake for PLAIN: error code {error}")
    token = b"\0" + username.encode() + b"\0" + password.encode()
    response = connection.request(_SASL_AUTHENTICATE, 0, struct.pack(">i", len(token)) + token)
    (error,) = struct.unpack(">h", response[:2])
    if error:
        raise ProbeError(f"SaslAuthenticate with PLAIN as {username!r}: error code {error}")


def broker_count(target: Target, timeout: float = 5.0) -> int:
    """How many live brokers the listener at `target` reports in a Metadata response.

    Raises OSError (including ssl.SSLError) when the connection fails, ProbeError when the
    broker answers with an error."""
    connection = _Connection(target, timeout)
    try:
        if target.plain_user is not None:
            _authenticate_plain(connection, *target.plain_user)
        response = connection.request(_METADATA, 1, struct.pack(">i", -1))  # null: all topics
        (brokers,) = struct.unpack(">i", response[:4])
        return int(brokers)
    finally:
        connection.close()
