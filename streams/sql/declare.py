"""`CREATE STREAM s (columns) WITH (KAFKA_TOPIC …)` and `CREATE TABLE t (columns) WITH
(KAFKA_TOPIC …, KEY …)`: a declared source or lookup table. No pipeline: a topic that
statements read (a lookup table only through JOIN)."""

from __future__ import annotations

from streams.sql.catalog import LOOKUP_PROPERTIES, SOURCE_PROPERTIES, Column, Relation
from streams.sql.diagnostics import Diagnostics
from streams.sql.program import Compiled
from streams.sql.properties import Properties
from streams.sql.statements import Statement


def declare(diagnostics: Diagnostics, properties: Properties, statement: Statement) -> Compiled:
    """The declared relation; raises SqlError at its first problem."""
    label = statement.name.text
    lookup = statement.kind == "table"
    given = (
        properties.check(LOOKUP_PROPERTIES, "a lookup table")
        if lookup
        else properties.check(SOURCE_PROPERTIES, "a declared stream")
    )
    topic_prop = given.get("KAFKA_TOPIC")
    if topic_prop is None:
        raise diagnostics.error(
            f"{'table' if lookup else 'stream'} '{label}' needs WITH (KAFKA_TOPIC = "
            "'topic'): the topic it is read from",
            statement.name.offset,
        )
    topic = properties.topic(topic_prop)
    properties.claim_topic(topic, topic_prop.value_offset)
    columns = None
    if statement.columns is not None:
        columns = [
            Column(c.name.text, c.name.quoted, c.schema_type + ("" if c.required else "?"))
            for c in statement.columns
        ]
    relation = Relation(statement.name, "lookup" if lookup else "source", topic, columns, statement)
    relation.format = properties.value_format(given.get("VALUE_FORMAT"), derived=False)
    timestamp = given.get("TIMESTAMP")
    if timestamp is not None:
        relation.timestamp = properties.column(relation, timestamp, properties.text(timestamp))
    key_prop = given.get("KEY")
    marked = [c.name.text for c in statement.columns or [] if c.key]
    if key_prop is not None:
        key = tuple(
            properties.column(relation, key_prop, part)
            for part in properties.text(key_prop).split(",")
        )
        if marked and list(key) != marked:
            raise diagnostics.error(
                f"KEY = '{key_prop.value}' differs from the columns marked KEY "
                f"({', '.join(marked)})",
                key_prop.value_offset,
            )
        relation.key = key
    elif marked:
        relation.key = tuple(marked)
    if lookup and relation.key is None:
        raise diagnostics.error(
            f"lookup table '{label}' needs a key: WITH (KEY = 'column'), or "
            "mark its column PRIMARY KEY",
            statement.name.offset,
        )
    return Compiled(relation)
