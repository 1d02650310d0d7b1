"""A client of the Confluent Schema Registry API (Confluent, Karapace, Apicurio's
`/apis/ccompat/v7`): the few calls sluice makes, over aiohttp.

Secrets: the password goes only into the Authorization header; errors name the URL
without credentials and never echo a request.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import orjson

from models.settings import SchemaRegistrySettings
from streams.core.errors import SluiceError

REQUEST_TIMEOUT_S = 5.0
# the registry's schemaType for each sluice format (an absent schemaType means AVRO)
SCHEMA_TYPES = {"avro": "AVRO", "protobuf": "PROTOBUF", "json_schema": "JSON"}


class RegistryUnavailable(SluiceError):
    """The registry did not answer (refused, timed out, a 5xx) or refused our credentials
    (401/403): callers wait for it, as for a registry that is down."""


class RegistryRefused(SluiceError):
    """The registry answered with an error (4xx): the message says what it said."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    schema_id: int
    schema_type: str  # AVRO | PROTOBUF | JSON
    text: str
    version: int | None = None  # under the subject it was looked up by (`latest`)


class RegistryClient:
    def __init__(self, settings: SchemaRegistrySettings, timeout_s: float = REQUEST_TIMEOUT_S):
        if not settings.url:
            raise SluiceError("schema_registry.url is not set (needed by format: avro|...)")
        self.url = settings.url.rstrip("/")
        # what messages name: the URL without credentials a user may have put in it
        parts = urlsplit(self.url)
        self.shown = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._auth = (
            aiohttp.BasicAuth(
                settings.username,
                settings.password.get_secret_value() if settings.password else "",
            )
            if settings.username
            else None
        )
        self._ssl: ssl.SSLContext | None = (
            ssl.create_default_context(cafile=settings.ssl_cafile) if settings.ssl_cafile else None
        )
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout, auth=self._auth)
        data = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/vnd.schemaregistry.v1+json"}
        try:
            async with self._session.request(
                method, self.url + path, data=data, headers=headers, ssl=self._ssl or True
            ) as response:
                payload = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            reason = type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"
            raise RegistryUnavailable(
                f"schema registry {self.shown} did not answer ({reason[:200]})"
            ) from None
        try:
            answer = orjson.loads(payload) if payload else None
        except orjson.JSONDecodeError:
            answer = payload.decode(errors="replace")[:300]
        if status >= 500:
            raise RegistryUnavailable(f"schema registry {self.shown} answered {status}")
        if status in (401, 403):  # waiting beats dead-lettering every record meanwhile
            raise RegistryUnavailable(
                f"schema registry {self.shown} refused our credentials (HTTP {status}): "
                "check schema_registry.username and schema_registry.password"
            )
        return status, answer

    @staticmethod
    def _message(answer: Any) -> str:
        if isinstance(answer, dict):
            return str(answer.get("message") or answer)[:500]
        return str(answer)[:500]

    async def schema(self, schema_id: int) -> RegisteredSchema | None:
        """The schema with this id; None when the registry has none."""
        status, answer = await self._request("GET", f"/schemas/ids/{schema_id}")
        if status == 404:
            return None
        if status != 200 or not isinstance(answer, dict):
            raise RegistryRefused(f"schema id {schema_id}: {self._message(answer)}", status)
        return RegisteredSchema(
            schema_id, str(answer.get("schemaType") or "AVRO"), str(answer["schema"])
        )

    async def latest(self, subject: str) -> RegisteredSchema | None:
        """The latest version under `subject`; None when there is no such subject."""
        status, answer = await self._request(
            "GET", f"/subjects/{quote(subject, safe='')}/versions/latest"
        )
        if status == 404:
            return None
        if status != 200 or not isinstance(answer, dict):
            raise RegistryRefused(f"subject {subject}: {self._message(answer)}", status)
        version = answer.get("version")
        return RegisteredSchema(
            int(answer["id"]),
            str(answer.get("schemaType") or "AVRO"),
            str(answer["schema"]),
            int(version) if isinstance(version, int) else None,
        )

    async def register(self, subject: str, text: str, schema_type: str = "AVRO") -> int:
        """Register (or find) `text` under `subject`; its id. RegistryRefused (409) when it
        is not compatible with the subject's versions."""
        body: dict[str, Any] = {"schema": text}
        if schema_type != "AVRO":
            body["schemaType"] = schema_type
        status, answer = await self._request(
            "POST", f"/subjects/{quote(subject, safe='')}/versions", body
        )
        if status != 200 or not isinstance(answer, dict) or "id" not in answer:
            raise RegistryRefused(self._message(answer), status)
        return int(answer["id"])

    async def incompatibilities(self, subject: str, text: str, schema_type: str = "AVRO") -> str:
        """Why `text` may not be registered under `subject` ("" when it may: compatible,
        or no such subject yet)."""
        body: dict[str, Any] = {"schema": text}
        if schema_type != "AVRO":
            body["schemaType"] = schema_type
        status, answer = await self._request(
            "POST",
            f"/compatibility/subjects/{quote(subject, safe='')}/versions/latest?verbose=true",
            body,
        )
        if status == 404:
            return ""
        if status != 200 or not isinstance(answer, dict):
            return self._message(answer)
        if answer.get("is_compatible", True):
            return ""
        messages = answer.get("messages") or ["not compatible"]
        return "; ".join(str(m) for m in messages)[:500]
