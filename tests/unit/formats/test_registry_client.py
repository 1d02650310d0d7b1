"""The schema registry client against a tiny registry served here on a real socket (not a
mock of aiohttp): basic auth sent from username/password, a 401 as one line without the
password, a certificate from an unknown CA as one line naming the verification error,
and schema references fetched dependencies first, each subject version once."""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from models.settings import SchemaRegistrySettings
from streams.runtime.schema_registry import (
    RegistryClient,
    RegistryRefused,
    RegistryUnavailable,
    RegistryUntrusted,
)
from tests.brokers.tls import make_tls

USER, PASSWORD = "sluice", "s3cret-pw"


class TinyRegistry:
    """Answers GET paths from `answers` (JSON), 404 otherwise; 401 unless the request
    carries USER/PASSWORD. Records each request's path and Authorization header."""

    def __init__(self, answers: dict[str, Any], tls_dir: Path | None = None) -> None:
        self.answers = answers
        self.requests: list[tuple[str, str | None]] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                auth = self.headers.get("Authorization")
                registry.requests.append((self.path, auth))
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if auth != expected:
                    self._answer(401, {"error_code": 401, "message": "Unauthorized"})
                elif self.path in registry.answers:
                    self._answer(200, registry.answers[self.path])
                else:
                    self._answer(404, {"error_code": 40403, "message": "not found"})

            def _answer(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.scheme = "http"
        if tls_dir is not None:
            files = make_tls(tls_dir)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(files.server_cert_file, files.server_key_file)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
            self.ca_file = files.ca_file
        # a short poll: shutdown() waits up to one interval
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}/apis/ccompat/v7"

    def __enter__(self) -> TinyRegistry:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def settings(url: str, password: str = PASSWORD, **more: Any) -> SchemaRegistrySettings:
    return SchemaRegistrySettings(url=url, username=USER, password=SecretStr(password), **more)


AVRO = '{"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]}'


@pytest.fixture
def registry() -> Iterator[TinyRegistry]:
    answers = {"/apis/ccompat/v7/schemas/ids/1": {"schema": AVRO}}
    with TinyRegistry(answers) as served:
        yield served


async def test_basic_auth_header_from_username_and_password(registry: TinyRegistry) -> None:
    client = RegistryClient(settings(registry.url))
    try:
        found = await client.schema(1)
    finally:
        await client.close()
    assert found is not None and found.text == AVRO
    expected = "Basic " + base64.b64encode(b"sluice:s3cret-pw").decode()
    assert registry.requests == [("/apis/ccompat/v7/schemas/ids/1", expected)]


async def test_a_401_is_one_line_without_the_password(registry: TinyRegistry) -> None:
    client = RegistryClient(settings(registry.url, password="wrong-pw"))
    try:
        with pytest.raises(RegistryUnavailable) as caught:
            await client.schema(1)
    finally:
        await client.close()
    message = str(caught.value)
    assert "\n" not in message and "wrong-pw" not in message
    assert "refused our credentials (HTTP 401)" in message
    assert "schema_registry.username and schema_registry.password" in message
    assert len(registry.requests) == 1 and registry.requests[0][1] is not None


async def test_an_untrusted_certificate_is_one_line(tmp_path: Path) -> None:
    answers = {"/apis/ccompat/v7/schemas/ids/1": {"schema": AVRO}}
    with TinyRegistry(answers, tls_dir=tmp_path / "server") as served:
        other_ca = make_tls(tmp_path / "other").ca_file  # a CA that did not sign it
        for cafile in (other_ca, None):  # a wrong CA; the system's CAs
            client = RegistryClient(settings(served.url, ssl_cafile=cafile and str(cafile)))
            try:
                with pytest.raises(RegistryUntrusted) as caught:
                    await client.schema(1)
            finally:
                await client.close()
            message = str(caught.value)
            assert "\n" not in message
            assert "TLS certificate is not trusted (unable to get local issuer" in message
            assert "set schema_registry.ssl_cafile" in message
        assert served.requests == []  # the handshake failed: nothing was sent
        client = RegistryClient(settings(served.url, ssl_cafile=str(served.ca_file)))
        try:
            found = await client.schema(1)  # the right CA
        finally:
            await client.close()
        assert found is not None and found.text == AVRO


def test_an_unreadable_ca_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"schema_registry.ssl_cafile .*cannot load") as caught:
        RegistryClient(settings("https://127.0.0.1:1/x", ssl_cafile=str(tmp_path / "none.pem")))
    assert "\n" not in str(caught.value)


def version(subject: str, number: int, schema_id: int, refs: list[Any]) -> dict[str, Any]:
    return {
        "subject": subject,
        "version": number,
        "id": schema_id,
        "schema": f"text of {subject}",
        "references": refs,
    }


async def test_references_dependencies_first_each_once() -> None:
    """top -> (b, c); b -> c: c comes first and is fetched once; a second call costs
    nothing (a registered version never changes)."""
    base = "/apis/ccompat/v7"
    ref_c = {"name": "C", "subject": "c", "version": 1}
    ref_b = {"name": "B", "subject": "b", "version": 2}
    answers = {
        f"{base}/schemas/ids/9": {"schema": "top", "references": [ref_b, ref_c]},
        f"{base}/subjects/b/versions/2": version("b", 2, 5, [ref_c]),
        f"{base}/subjects/c/versions/1": version("c", 1, 4, []),
    }
    with TinyRegistry(answers) as served:
        client = RegistryClient(settings(served.url))
        try:
            top = await client.schema(9)
            assert top is not None
            found = await client.references(top)
            again = await client.references(top)
            del answers[f"{base}/subjects/c/versions/1"]
            missing = RegistryClient(settings(served.url))
            with pytest.raises(RegistryRefused, match=r"reference 'C' \(subject c version 1\)"):
                await missing.references(top)
            await missing.close()
        finally:
            await client.close()
    assert [(name, s.schema_id, s.text) for name, s in found] == [
        ("C", 4, "text of c"),
        ("B", 5, "text of b"),
    ]
    assert again == found
    paths = [path for path, _ in served.requests]
    assert paths.count(f"{base}/subjects/c/versions/1") == 2  # once per client
    assert paths.count(f"{base}/subjects/b/versions/2") == 2


async def test_a_missing_reference_is_a_schema_dead_letter() -> None:
    """The worker's decoder: a schema whose reference the registry does not have gives each
    of its records a `schema` error naming the id and the reference, and is not retried."""
    from models.settings import Settings
    from streams.core.errors import RecordError
    from streams.formats.wire import frame
    from streams.runtime.formats import RecordFormats

    ref = {"name": "t.Address", "subject": "address", "version": 1}
    answers = {"/apis/ccompat/v7/schemas/ids/9": {"schema": AVRO, "references": [ref]}}
    with TinyRegistry(answers) as served:
        formats = RecordFormats(Settings(schema_registry=settings(served.url)))
        try:
            first = await formats.decode_values([frame(9, b"\x02")], "avro")
            second = await formats.decode_values([frame(9, b"\x04")], "avro")
        finally:
            await formats.close()
    for values in (first, second):
        assert len(values) == 1 and isinstance(values[0], RecordError)
        assert str(values[0]) == (
            "schema id 9: reference 't.Address' (subject address version 1): "
            "not found in the schema registry"
        )
    assert [path for path, _ in served.requests] == [  # cached: asked once
        "/apis/ccompat/v7/schemas/ids/9",
        "/apis/ccompat/v7/subjects/address/versions/1",
    ]
