"""The compiled form of an expression (`Expression`) and the evaluator types."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.core.errors import ExpressionRuntimeError

Record = Mapping[str, Any]
Evaluator = Callable[[Record], Any]
# a batch evaluator: the values of an expression for each record of a batch, the same as
# `fn` of each; it may raise where `fn` of every record would not (it evaluates every
# operand of AND, OR and CASE), and the caller then evaluates the batch record by record
BatchEvaluator = Callable[[Sequence[dict[str, Any]]], list[Any]]


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled expression.

    `fn` is the raw closure: fastest, but it may raise any exception on bad data; steps call
    it on whole batches and fall back to `evaluate` (which raises only
    `ExpressionRuntimeError`) for the batch that failed.

    `field` names the record field when the expression is only that top-level field
    (`amount`, `"user"`): a step may then read a whole batch's values with C-level
    calls instead of calling `fn` per record. `batch` evaluates a whole batch.
    """

    source: str
    fn: Evaluator
    fields: frozenset[str] = field(default_factory=frozenset)
    field: str | None = None
    batch: BatchEvaluator | None = None

    def evaluate_batch(self, records: Sequence[dict[str, Any]]) -> list[Any]:
        """`fn` of each record (plain dicts), column by column where the expression's
        nodes allow it (see BatchEvaluator): a comparison or an IN over a batch is a
        C-level `map`, not a Python call per record. Any exception: evaluate one by one."""
        if self.batch is not None:
            return self.batch(records)
        fn = self.fn
        return [fn(record) for record in records]

    def evaluate(self, record: Record) -> Any:
        try:
            return self.fn(record)
        except ExpressionRuntimeError:
            raise
        except Exception as exc:  # any failure inside SQL is the record's fault
            raise ExpressionRuntimeError(f"{describe_failure(exc)} in {self.source!r}") from None

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def describe_failure(exc: BaseException) -> str:
    if isinstance(exc, ExpressionRuntimeError):
        return str(exc)
    if isinstance(exc, TypeError):
        return f"type error: {exc}"
    if isinstance(exc, OverflowError):
        return "number too large"
    return f"{type(exc).__name__}: {exc}"
