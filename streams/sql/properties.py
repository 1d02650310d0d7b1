"""A statement's `WITH (...)` properties and name: topics (each stream and table its own),
VALUE_FORMAT, TIMESTAMP and KEY columns, the sink and dead-letter topics, the pipeline
name. Every problem is reported through the statement's `Diagnostics`."""

from __future__ import annotations

import re

from sqlglot import exp

from models.pipeline_spec import TOPIC_PATTERN
from streams.sql.catalog import Catalog, Relation, did_you_mean
from streams.sql.diagnostics import Diagnostics
from streams.sql.statements import Property, Statement

VALUE_FORMATS = {"JSON": "json", "AVRO": "avro", "PROTOBUF": "protobuf", "JSON_SR": "json_schema"}
VALUE_FORMATS_OUT = {"JSON": "json", "AVRO": "avro"}
_TOPIC = re.compile(TOPIC_PATTERN)
_PIPELINE_NAME = re.compile(r"^[A-Za-z0-9._\-]+$")


class Properties:
    """The properties of one statement, read against the streams defined before it."""

    def __init__(self, diagnostics: Diagnostics, statement: Statement, catalog: Catalog) -> None:
        self.diagnostics = diagnostics
        self.statement = statement
        self.catalog = catalog
        self.label = statement.name.text

    def check(self, allowed: tuple[str, ...], what: str) -> dict[str, Property]:
        """The statement's properties, each one `allowed` for `what` it defines."""
        properties = self.statement.properties
        for name, prop in properties.items():
            if name not in allowed:
                raise self.diagnostics.error(
                    f"unknown property {name}{did_you_mean(name, allowed)} for {what}; use "
                    + ", ".join(allowed),
                    prop.offset,
                )
            if name == "VALUE_FORMAT":
                self.value_format(
                    prop, derived=what != "a declared stream" and "lookup" not in what
                )
        return properties

    def value_format(self, prop: Property | None, derived: bool) -> str:
        """VALUE_FORMAT as a topic format (ksqlDB's names): JSON, AVRO, PROTOBUF, JSON_SR;
        what a statement writes is JSON or AVRO."""
        if prop is None:
            return "json"
        allowed = VALUE_FORMATS_OUT if derived else VALUE_FORMATS
        found = allowed.get(str(prop.value).upper())
        if found is None:
            raise self.diagnostics.error(
                f"VALUE_FORMAT '{prop.value}': use {', '.join(allowed)}"
                + (" (outputs are written as JSON or AVRO)" if derived else ""),
                prop.value_offset,
            )
        return found

    def text(self, prop: Property) -> str:
        if not isinstance(prop.value, str) or not prop.value.strip():
            raise self.diagnostics.error(
                f"{prop.name} takes quoted text, e.g. {prop.name} = 'name'", prop.value_offset
            )
        return prop.value

    def topic(self, prop: Property) -> str:
        topic = self.text(prop)
        if not _TOPIC.match(topic):
            raise self.diagnostics.error(
                f"{prop.name} '{topic}' is not a topic name (letters, digits, '.', '_', '-')",
                prop.value_offset,
            )
        return topic

    def claim_topic(self, topic: str, offset: int) -> None:
        for relation in self.catalog.relations:
            if relation.topic == topic:
                raise self.diagnostics.error(
                    f"topic '{topic}' is already the topic of '{relation.name.text}': "
                    "each stream and table needs its own topic",
                    offset,
                )

    def column(self, relation: Relation, prop: Property, text: str) -> str:
        """The column of `relation` a property names (any name when it declares none)."""
        name = text.strip()
        if relation.columns is None:
            return name
        column = relation.column(exp.Identifier(this=name, quoted=False))
        if column is None:
            raise self.diagnostics.error(
                f"{prop.name} '{name}' is not a column of '{relation.name.text}'"
                f"{did_you_mean(name, relation.names())}",
                prop.value_offset,
            )
        return column.name

    def sink(self, properties: dict[str, Property]) -> tuple[str, str]:
        """The topic a derived statement writes (KAFKA_TOPIC, else its name with '-' for
        '_') and its dead-letter topic (DLQ_TOPIC, else TOPIC-dlq)."""
        topic_prop = properties.get("KAFKA_TOPIC")
        if topic_prop is not None:
            topic = self.topic(topic_prop)
            offset = topic_prop.value_offset
        else:
            topic = self.label.replace("_", "-")
            offset = self.statement.name.offset
            if not _TOPIC.match(topic):
                raise self.diagnostics.error(
                    f"'{self.label}' is no topic name: set WITH (KAFKA_TOPIC = '…')", offset
                )
        self.claim_topic(topic, offset)
        dlq_prop = properties.get("DLQ_TOPIC")
        dlq = self.topic(dlq_prop) if dlq_prop is not None else f"{topic}-dlq"
        return topic, dlq

    def pipeline_name(self) -> str:
        if not _PIPELINE_NAME.match(self.label):
            raise self.diagnostics.error(
                f"'{self.label}' cannot name a pipeline: use letters, digits, '.', '_' or '-'",
                self.statement.name.offset,
            )
        return self.label

    def output_timestamp(
        self,
        properties: dict[str, Property],
        output: Relation,
        source: Relation,
        passed: dict[str, str],
    ) -> str | None:
        """The event-time column of a derived stream for its readers: its TIMESTAMP when
        given, else its source's when that column passes through (renamed or not)."""
        prop = properties.get("TIMESTAMP")
        if prop is not None:
            return self.column(output, prop, self.text(prop))
        return passed.get(source.timestamp) if source.timestamp is not None else None
