"""The statements of a streaming SQL file: what the parser (`streams.sql.parser`) reads.

The dialect is ksqlDB's: `CREATE STREAM name (columns) WITH (...)` declares a source;
`CREATE TABLE name (columns) WITH (KEY …)` a lookup table; `CREATE STREAM|TABLE name
[WITH (...)] AS SELECT ...` derives one, a table with `WINDOW TUMBLING|HOPPING|SESSION (...)`
and `EMIT FINAL|CHANGES`. Every offset is a 0-based offset of the file's text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sqlglot import exp

StatementKind = Literal["stream", "table"]
WindowKind = Literal["tumbling", "hopping", "session"]

# SQL column types -> the inline schema's types (DESIGN.md, "Streaming SQL")
COLUMN_TYPES: dict[str, str] = {
    "VARCHAR": "str",
    "STRING": "str",
    "TEXT": "str",
    "INT": "int",
    "INTEGER": "int",
    "BIGINT": "int",
    "DOUBLE": "float",
    "FLOAT": "float",
    "REAL": "float",
    "DECIMAL": "float",
    "BOOLEAN": "bool",
    "BOOL": "bool",
    "TIMESTAMP": "datetime",
    "ARRAY": "list",
    "MAP": "dict",
    "STRUCT": "dict",
}
DURATION_UNITS: dict[str, int] = {
    "MILLISECOND": 1,
    "MILLISECONDS": 1,
    "SECOND": 1000,
    "SECONDS": 1000,
    "MINUTE": 60_000,
    "MINUTES": 60_000,
    "HOUR": 3_600_000,
    "HOURS": 3_600_000,
    "DAY": 86_400_000,
    "DAYS": 86_400_000,
}
WINDOW_KINDS: tuple[WindowKind, ...] = ("tumbling", "hopping", "session")
EMIT_MODES = ("FINAL", "CHANGES")


# --- what a statement is ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Name:
    """An identifier as written: quoted ones keep their case and must match exactly;
    unquoted ones match case-insensitively, as in ksqlDB."""

    text: str
    quoted: bool
    offset: int

    def matches(self, other: str) -> bool:
        return self.text == other if self.quoted else self.text.lower() == other.lower()


@dataclass(frozen=True, slots=True)
class ColumnDef:
    name: Name
    sql_type: str  # as written, e.g. ARRAY<VARCHAR>
    schema_type: str  # the inline schema's: str, int, float, bool, datetime, list, dict
    required: bool
    key: bool


@dataclass(frozen=True, slots=True)
class Property:
    name: str  # upper case
    value: str | int | float | bool
    offset: int
    value_offset: int


@dataclass(frozen=True, slots=True)
class Duration:
    ms: int
    text: str
    offset: int


@dataclass(frozen=True, slots=True)
class WindowClause:
    kind: WindowKind
    offset: int
    size: Duration | None = None
    advance: Duration | None = None
    gap: Duration | None = None
    grace: Duration | None = None


@dataclass(frozen=True, slots=True)
class WithinClause:
    """`JOIN … WITHIN d [GRACE PERIOD d]`: a join of two streams (ksqlDB's syntax)."""

    within: Duration
    grace: Duration | None
    offset: int


@dataclass(slots=True)
class Statement:
    """One `CREATE STREAM|TABLE` statement."""

    kind: StatementKind
    name: Name
    offset: int  # of CREATE
    number: int  # 1-based, in the file
    columns: list[ColumnDef] | None = None
    properties: dict[str, Property] = field(default_factory=dict)
    query: exp.Select | None = None
    query_offset: int = 0
    window: WindowClause | None = None
    within: WithinClause | None = None
    emit: tuple[str, int] | None = None  # ("FINAL" | "CHANGES", offset)
    partition_by: list[Name] | None = None
    partition_offset: int = 0
    clauses: dict[str, int] = field(default_factory=dict)  # FROM, WHERE, … -> offset

    def clause_offset(self, clause: str) -> int:
        return self.clauses.get(clause, self.query_offset)

    @property
    def emit_mode(self) -> str | None:
        """FINAL or CHANGES as written, None without EMIT."""
        return self.emit[0] if self.emit is not None else None
