"""What the SQL compiler knows about streams: their columns, topics, time and key, and
how names resolve (unquoted ignoring case, as in ksqlDB; quoted exactly). `Catalog` holds
the streams and tables a file's statements define, in the order they do."""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from sqlglot import Tokenizer, exp

from streams.sql.statements import Name, Statement

RelationKind = Literal["source", "stream", "table", "lookup"]
_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# the WITH (...) properties each kind of statement takes
SOURCE_PROPERTIES = ("KAFKA_TOPIC", "TIMESTAMP", "KEY", "VALUE_FORMAT")
LOOKUP_PROPERTIES = ("KAFKA_TOPIC", "KEY", "VALUE_FORMAT")
DERIVED_PROPERTIES = ("KAFKA_TOPIC", "DLQ_TOPIC", "TIMESTAMP", "VALUE_FORMAT")


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    quoted: bool  # spelled with quotes in generated SQL (a keyword, or not a plain word)
    schema_type: str | None = None


@dataclass(slots=True)
class Relation:
    """A stream or table a query can read: declared (`source`), derived by a statement
    (`stream`, `table`), or a lookup table declared for joins (`lookup`)."""

    name: Name
    kind: RelationKind
    topic: str
    columns: list[Column] | None  # None: declared without columns, any field goes
    statement: Statement
    timestamp: str | None = None
    key: tuple[str, ...] | None = None
    format: str = "json"  # VALUE_FORMAT: json | avro | protobuf | json_schema

    def column(self, name: exp.Identifier) -> Column | None:
        """The column an identifier names: exactly when quoted, else ignoring case
        (preferring the exact spelling)."""
        if self.columns is None:
            return Column(name.name, needs_quotes(name.name, name.quoted))
        exact = [c for c in self.columns if c.name == name.name]
        if exact or name.quoted:
            return exact[0] if exact else None
        folded = [c for c in self.columns if c.name.lower() == name.name.lower()]
        return folded[0] if len(folded) == 1 else None

    def names(self) -> list[str]:
        return [c.name for c in self.columns or []]


@dataclass(slots=True)
class Join:
    """`JOIN table [alias] ON stream.col = table.key`: an `enrich` step. The table's columns
    a query uses are the fields enrich copies into the record, under their own names."""

    table: Relation
    qualifiers: set[str]  # lower-case names that qualify the table's columns
    on: tuple[str, ...]  # the stream's columns, in the order of the table's key
    keep_missing: bool  # LEFT JOIN: a record without a row goes on (its fields null)
    used: list[str] = field(default_factory=list)

    def use(self, column: str) -> None:
        if column not in self.used:
            self.used.append(column)

    def stream_column_for(self, key: str) -> str | None:
        """The stream column the ON clause equates with the table's key column `key`."""
        keys = list(self.table.key or ())
        return self.on[keys.index(key)] if key in keys else None


@functools.lru_cache(maxsize=1024)
def needs_quotes(name: str, quoted: bool = False) -> bool:
    return quoted or not _WORD.match(name) or name.upper() in Tokenizer.KEYWORDS


def identifier_of(column: Column) -> exp.Identifier:
    return exp.Identifier(this=column.name, quoted=needs_quotes(column.name, column.quoted))


def find_relation(relations: Iterable[Relation], name: Name) -> Relation | None:
    candidates = list(relations)
    for relation in candidates:
        if relation.name.text == name.text:
            return relation
    if name.quoted:
        return None
    folded = [r for r in candidates if r.name.text.lower() == name.text.lower()]
    return folded[0] if len(folded) == 1 else None


def did_you_mean(word: str, options: Iterable[str]) -> str:
    choices = list(options)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        close = [lowered[m] for m in difflib.get_close_matches(word.lower(), list(lowered), n=1)]
    return f" (did you mean '{close[0]}'?)" if close else ""


def qualifiers_of(relation: Relation, table: exp.Table) -> set[str]:
    """The lower-case names that qualify a FROM or JOIN item's columns: its name, alias."""
    names = {relation.name.text.lower(), table.name.lower()}
    alias = table.args.get("alias")
    if isinstance(alias, exp.TableAlias) and alias.this is not None:
        names.add(alias.name.lower())
    return names


@dataclass(slots=True)
class Catalog:
    """The streams and tables in view of a file's statements: those defined so far (a
    statement reads only what is defined before it), the lower-case names of statements
    that failed (their readers stay quiet: the failure is reported once), and every
    statement, to tell a name defined later from an unknown one."""

    relations: list[Relation]
    statements: list[Statement]
    broken: set[str] = field(default_factory=set)

    def find(self, name: Name) -> Relation | None:
        return find_relation(self.relations, name)

    def defined_after(self, statement: Statement) -> list[str]:
        """The names of the statements after `statement`."""
        index = next(i for i, s in enumerate(self.statements) if s is statement)
        return [s.name.text for s in self.statements[index + 1 :]]
