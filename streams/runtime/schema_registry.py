"""A client of the Confluent Schema Registry API (Confluent, Karapace, Apicurio's
`/apis/ccompat/v7`): the few calls sluice makes, over aiohttp.

Secrets: the password goes only into the Authorization header; errors name the URL
without credentials and never echo a request.

TLS: `ssl_cafile` is the CA the registry's certificate must chain to (else the system's
CAs); a certificate that does not verify is `RegistryUntrusted`, one line naming the
verification error — waiting for it would not help, so callers at start do not retry it.

Schema references (Confluent `references`: an Avro named type or an imported `.proto`
registered under another subject) are fetched by `references`, dependencies first, each
subject version once per client (a registered version never changes).
"""

from __future__ import annotations

import base64
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


class RegistryUntrusted(RegistryUnavailable):
    """The registry's TLS certificate does not verify against schema_registry.ssl_cafile
    (or the system's CAs): a configuration problem, not an outage."""


class RegistryRefused(SluiceError):
    """The registry answered with an error (4xx): the message says what it said."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Reference:
    """A schema reference: `name` is how the schema names it (an Avro full name, a `.proto`
    import path), registered as `subject` version `version`."""

    name: str
    subject: str
    version: int


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    schema_id: int
    schema_type: str  # AVRO | PROTOBUF | JSON
    text: str
    version: int | None = None  # under the subject it was looked up by (`latest`)
    references: tuple[Reference, ...] = ()


def _references(answer: dict[str, Any]) -> tuple[Reference, ...]:
    found = answer.get("references") or ()
    return tuple(
        Reference(str(r["name"]), str(r["subject"]), int(r["version"]))
        for r in found
        if isinstance(r, dict) and {"name", "subject", "version"} <= r.keys()
    )


def _untrusted_reason(exc: BaseException) -> str | None:
    """The verification error of a certificate that did not verify, else None."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, aiohttp.ClientConnectorCertificateError):  # an ssl error too
            cause = cause.certificate_error
            continue
        if isinstance(cause, ssl.SSLCertVerificationError):
            return str(cause.verify_message or cause.reason or cause)
        cause = cause.__cause__ or cause.__context__
    return None


class RegistryClient:
    def __init__(self, settings: SchemaRegistrySettings, timeout_s: float = REQUEST_TIMEOUT_S):
        if not settings.url:
            raise SluiceError("schema_registry.url is not set (needed by format: avro|...)")
        self.url = settings.url.rstrip("/")
        # what messages name: the URL without credentials a user may have put in it
        parts = urlsplit(self.url)
        self.shown = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._headers = {"Content-Type": "application/vnd.schemaregistry.v1+json"}
        if settings.username:  # HTTP basic auth (RFC 7617, UTF-8), on every request
            password = settings.password.get_secret_value() if settings.password else ""
            token = base64.b64encode(f"{settings.username}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._ssl: ssl.SSLContext | None = None
        if settings.ssl_cafile:
            try:
                self._ssl = ssl.create_default_context(cafile=settings.ssl_cafile)
            except (OSError, ssl.SSLError) as exc:
                raise SluiceError(
                    f"schema_registry.ssl_cafile {settings.ssl_cafile}: cannot load the CA "
                    f"certificate ({getattr(exc, 'strerror', None) or exc})"
                ) from None
        self._session: aiohttp.ClientSession | None = None
        # (subject, version) -> the schema registered there: referenced schemas
        self._versions: dict[tuple[str, int], RegisteredSchema] = {}

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        data = orjson.dumps(body) if body is not None else None
        try:
            async with self._session.request(
                method, self.url + path, data=data, headers=self._headers, ssl=self._ssl or True
            ) as response:
                payload = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            untrusted = _untrusted_reason(exc)
            if untrusted is not None:
                raise RegistryUntrusted(
                    f"schema registry {self.shown}: its TLS certificate is not trusted "
                    f"({untrusted}); set schema_registry.ssl_cafile to the CA that signed it"
                ) from None
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
            schema_id,
            str(answer.get("schemaType") or "AVRO"),
            str(answer["schema"]),
            references=_references(answer),
        )

    async def version(self, subject: str, version: int) -> RegisteredSchema | None:
        """The schema registered as `subject` version `version` (cached); None when absent."""
        found = self._versions.get((subject, version))
        if found is not None:
            return found
        status, answer = await self._request(
            "GET", f"/subjects/{quote(subject, safe='')}/versions/{version}"
        )
        if status == 404:
            return None
        if status != 200 or not isinstance(answer, dict):
            raise RegistryRefused(f"subject {subject}: {self._message(answer)}", status)
        found = self._versions[(subject, version)] = RegisteredSchema(
            int(answer["id"]),
            str(answer.get("schemaType") or "AVRO"),
            str(answer["schema"]),
            version,
            _references(answer),
        )
        return found

    async def references(self, schema: RegisteredSchema) -> list[tuple[str, RegisteredSchema]]:
        """Every schema `schema` references, directly or through another reference, as
        (name, schema), each after those it references; RegistryRefused (404) naming a
        reference the registry does not have."""
        ordered: list[tuple[str, RegisteredSchema]] = []
        seen: set[tuple[str, int]] = set()

        async def visit(references: tuple[Reference, ...]) -> None:
            for reference in references:
                key = (reference.subject, reference.version)
                if key in seen:  # shared by two references, or a cycle
                    continue
                seen.add(key)
                found = await self.version(reference.subject, reference.version)
                if found is None:
                    raise RegistryRefused(
                        f"reference {reference.name!r} (subject {reference.subject} version "
                        f"{reference.version}): not found in the schema registry",
                        404,
                    )
                await visit(found.references)
                ordered.append((reference.name, found))

        await visit(schema.references)
        return ordered

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
            _references(answer),
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
