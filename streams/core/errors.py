"""The sluice exception hierarchy.

Every error a user can meet is a `SluiceError` whose message says what went wrong, with
which value, and what to do about it. Per-record errors (`RecordError`) never escape a
step: the pipeline turns them into dead letters.
"""

from __future__ import annotations


class SluiceError(Exception):
    """Base of every sluice error."""


class ConfigError(SluiceError):
    """A settings or pipeline file is invalid. `location` is `file:line: field`, or
    `file:line:column: field` where the column is known (SQL pipelines)."""

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        column: int | None = None,
    ) -> None:
        self.reason = reason
        self.file = file
        self.line = line
        self.field = field
        self.column = column
        super().__init__(self.describe())

    def describe(self) -> str:
        where = ""
        if self.file:
            if self.line and self.column:
                where = f"{self.file}:{self.line}:{self.column}: "
            else:
                where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.reason}"


class ConfigErrors(SluiceError):
    """Several configuration errors found in one pass, reported together."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(e.describe() for e in errors))


class ExpressionError(SluiceError):
    """An expression does not compile. `position` is the 0-based offset in its source."""

    def __init__(self, reason: str, source: str, position: int | None = None) -> None:
        self.reason = reason
        self.source = source
        self.position = position
        at = f" at column {position + 1}" if position is not None else ""
        shown = source if len(source) <= 120 else f"{source[:100]}… ({len(source):,} characters)"
        super().__init__(f"{reason}{at} in {shown!r}")


class RecordError(SluiceError):
    """One record cannot be processed; it goes to the dead-letter topic with this reason.

    `error_type` is the short category written to the `sluice.error.type` header and the
    `sluice_dead_letters_total{type}` label.
    """

    error_type = "record"

    def __init__(self, message: str, error_type: str | None = None) -> None:
        super().__init__(message)
        if error_type is not None:
            self.error_type = error_type


class ExpressionRuntimeError(RecordError):
    """An expression failed on a record (say, comparing text with a number)."""

    error_type = "expression"


class SchemaError(RecordError):
    """A record does not match its schema or model."""

    error_type = "schema"


class StateLayoutError(SluiceError):
    """A step's stored state was built from another definition of the step than the
    pipeline's now (an aggregate added, removed or changed; a window's size or key
    changed): reading it would give wrong results. `store` names the step's store."""

    def __init__(self, message: str, store: str) -> None:
        self.store = store
        super().__init__(message)
