"""The errors of a SQL file: each a reason at an offset of the file's text, in a statement.

A statement's compiler reports through its own `Diagnostics` (passed to every part that
checks something), so one statement's independent mistakes are all reported, and a
statement with any mistake yields no pipeline. `report` turns a file's errors into the
`ConfigError`s `sluice check` prints: FILE:LINE:COL: statement NAME: reason, in file order.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from typing import TypeVar

from sqlglot import exp

from streams.core.errors import ConfigError, SluiceError
from streams.sql.trees import offset_of

T = TypeVar("T")


class SqlError(SluiceError):
    """A mistake in a SQL pipeline file: the reason, the 0-based offset in the file's text
    where it is, and the statement (its name, or its number when it has none yet)."""

    def __init__(self, reason: str, offset: int | None, statement: str | None = None) -> None:
        self.reason = reason
        self.offset = offset
        self.statement = statement
        super().__init__(reason)


class Quiet(SqlError):
    """A statement that cannot compile because of an error reported elsewhere (its source
    failed, or a sibling check already said why)."""

    def __init__(self) -> None:
        super().__init__("", None)


class SourceText:
    """A file's text with its line starts: 0-based offsets to 1-based line and column."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._starts = [0, *(i + 1 for i, char in enumerate(text) if char == "\n")]

    def line_col(self, offset: int) -> tuple[int, int]:
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self._starts, offset)
        return line, offset - self._starts[line - 1] + 1

    def offset(self, line: int, column: int) -> int:
        line = max(1, min(line, len(self._starts)))
        return self._starts[line - 1] + max(0, column - 1)


class Diagnostics:
    """The errors of one statement, collected into the file's list.

    `label` names the statement in every error; `offset` is where an error without a
    place points (the statement's CREATE); `query_offset` is the fallback for a node of
    its query sqlglot recorded no place for. `failed` stays True after any error, a quiet
    one included: the statement then yields nothing and its readers stay quiet."""

    def __init__(
        self, errors: list[SqlError], label: str, offset: int, query_offset: int = 0
    ) -> None:
        self.errors = errors
        self.label = label
        self.offset = offset
        self.query_offset = query_offset
        self.failed = False

    def error(self, reason: str, offset: int | None = None) -> SqlError:
        return SqlError(reason, self.offset if offset is None else offset, self.label)

    def at(self, node: exp.Expr) -> int:
        """Where a node of the query is in the file."""
        return offset_of(node, self.query_offset)

    def error_at(self, reason: str, node: exp.Expr | int) -> SqlError:
        return self.error(reason, node if isinstance(node, int) else self.at(node))

    def fail(self, error: SqlError) -> None:
        self.failed = True
        if not isinstance(error, Quiet):
            self.errors.append(error)

    def attempt(self, check: Callable[[], T]) -> T | None:
        """Run one independent check; its error is collected, the others still run."""
        try:
            return check()
        except SqlError as error:
            self.fail(error)
            return None


def report(errors: Iterable[SqlError], text: str, file: str) -> list[ConfigError]:
    """A file's errors in the order of the file, each with its line and column."""
    source = SourceText(text)
    ordered = sorted(errors, key=lambda e: e.offset if e.offset is not None else -1)
    found = []
    for error in ordered:
        line, column = source.line_col(error.offset) if error.offset is not None else (None, None)
        found.append(
            ConfigError(
                error.reason,
                file=file,
                line=line,
                column=column,
                field=f"statement {error.statement}" if error.statement else None,
            )
        )
    return found
