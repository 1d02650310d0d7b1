"""Settings: `sluice.yaml` in the config directory, overridden by `SLUICE_*` variables.

Nested keys map to variables with `__`: `SLUICE_WEB__PORT=7000`,
`SLUICE_BROKERS='["kafka://localhost:9092"]'`. Secrets are `SecretStr`, so they never
show in logs, errors or the API.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from models.durations import parse_duration_ms

# the parser's own error text (a ValueError), as pydantic reports it for settings
DurationMs = Annotated[int, PlainValidator(parse_duration_ms)]
Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]

_BROKER_URL = re.compile(r"^(kafka://)?[A-Za-z0-9._\-\[\]:]+:\d{1,5}$")
_APP_ID = re.compile(r"^[A-Za-z0-9._]{1,200}$")


def _to_app_id(value: Any) -> str:
    """The app id names the consumer group and prefixes every internal topic, joined to a
    pipeline name with '-' as Kafka Streams joins `application.id` (`<app_id>-<pipeline>-
    repartition`, `<app_id>-<pipeline>.<step>-changelog`). Pipeline names may hold '-', so
    an app id may not: else app `x` with pipeline `y-z` and app `x-y` with pipeline `z`
    would share topics and state. Names without '-' keep the topics they always had."""
    if not isinstance(value, str) or not _APP_ID.match(value):
        shown = repr(value) if isinstance(value, str) else type(value).__name__
        raise ValueError(
            f"app_id {shown}: use letters, digits, '_' and '.' (no '-': it joins the app id "
            "to pipeline names in internal topic names, so 'x' + pipeline 'y-z' and 'x-y' + "
            "pipeline 'z' would share '<app_id>-<pipeline>-repartition' and changelog topics)"
        )
    return value


AppId = Annotated[str, PlainValidator(_to_app_id)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WebSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(6066, ge=0, le=65535)
    token: SecretStr | None = None


class LogSettings(_Section):
    format: Literal["json", "console"] = "json"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class ProcessingSettings(_Section):
    batch_max: int = Field(1000, ge=1, le=100_000)
    batch_within_ms: int = Field(
        50,
        ge=0,
        le=60_000,
        description="the longest a poll waits for records; a batch is taken as soon as "
        "records wait (up to batch_max), never held back to fill up",
    )
    max_message_bytes: int = Field(1_048_576, ge=1)
    guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    max_event_time_skew: DurationMs = Field(
        7 * 86_400_000,
        description="event time further ahead of the wall clock (or before 1970) is a "
        "`timestamp` dead letter at step `source`",
    )
    compression: Compression = "none"  # of what sluice writes; every codec is read
    stall_timeout: DurationMs = Field(
        60_000, description="no progress for this long while partitions have lag: not ready"
    )
    partitions: int = Field(4, ge=1, le=1024, description="partitions of topics sluice creates")


class KafkaSettings(_Section):
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    username: str | None = None
    password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None  # with ssl_keyfile: mutual TLS
    ssl_keyfile: str | None = None
    ssl_password: SecretStr | None = None  # of an encrypted ssl_keyfile
    connect_timeout: DurationMs = Field(
        30_000, description="no broker answering by then: one clear line, exit 1"
    )


class SchemaRegistrySettings(_Section):
    """A registry speaking the Confluent Schema Registry API (Confluent, Karapace,
    Apicurio's `/apis/ccompat/v7`), for topics with `format: avro | protobuf | json_schema`."""

    url: str | None = Field(None, pattern=r"^https?://[^\s]+$")
    username: str | None = None
    password: SecretStr | None = None
    ssl_cafile: str | None = None


class Settings(BaseSettings):
    """Everything a sluice process needs to know that is not a pipeline."""

    model_config = SettingsConfigDict(
        env_prefix="SLUICE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    app_id: AppId = "sluice"
    brokers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    pipelines_dir: str = "pipelines"
    store: Literal["memory://", "rocksdb://"] = "memory://"
    engine: Literal["native", "faust"] = Field(
        "native",
        description="native: sluice's own engine on aiokafka; faust: the pipelines run as Faust "
        "agents with state in Faust tables (streams.faust, docs/faust.md)",
    )
    web: WebSettings = WebSettings()
    log: LogSettings = LogSettings()
    processing: ProcessingSettings = ProcessingSettings()
    kafka: KafkaSettings = KafkaSettings()
    schema_registry: SchemaRegistrySettings = SchemaRegistrySettings()
    telemetry: bool = Field(
        True,
        description="Prometheus metrics, record trace context and per-record logs; off only "
        "to measure their cost (sluice bench kafka)",
    )

    @field_validator("brokers", mode="before")
    @classmethod
    def _split_brokers(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.strip().startswith("["):  # SLUICE_BROKERS='["kafka://a:9092"]'
                try:
                    return json.loads(value)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"brokers: invalid JSON list ({exc.msg})") from None
            # "kafka://a:9092,kafka://b:9092" is easier to type
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("brokers")
    @classmethod
    def _check_brokers(cls, value: list[str]) -> list[str]:
        for broker in value:
            if not _BROKER_URL.match(broker):
                raise ValueError(f"broker {broker!r} should look like kafka://host:9092")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init kwargs; variables must win over it.
        return env_settings, init_settings

    def broker_addresses(self) -> list[str]:
        """host:port pairs, without the kafka:// scheme."""
        return [b.removeprefix("kafka://") for b in self.brokers]
