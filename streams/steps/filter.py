"""`filter`: keep the records whose condition is TRUE (FALSE and NULL drop them).

A batch of plain dicts is tested column by column (`Expression.evaluate_batch`); a batch
where that raises, or that holds other records, record by record with the closure, and
a failing one again one by one to find the records that fail."""

from __future__ import annotations

from itertools import compress
from operator import attrgetter

from streams.core.errors import RecordError
from streams.core.records import Event
from streams.expressions import Expression
from streams.steps.contract import BatchContext, Step

_VALUE = attrgetter("value")
_DICT = frozenset({dict})


class FilterStep(Step):
    kind = "filter"

    def __init__(self, name: str, condition: Expression) -> None:
        super().__init__(name)
        self.condition = condition

    def process(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        condition = self.condition
        try:
            values = list(map(_VALUE, events))
            if _DICT.issuperset(map(type, values)):
                try:
                    verdicts = condition.evaluate_batch(values)
                except Exception:  # evaluated record by record below
                    verdicts = None
                if verdicts is not None:  # each True, False or None: compress keeps the Trues
                    kept = list(compress(events, verdicts))
                    ctx.drop(self.name, "filter", len(events) - len(kept))
                    return kept
            test = condition.fn
            kept = [event for event in events if test(event.value) is True]
            failed = 0
        except Exception:  # some record failed: redo this batch one by one to find it
            kept, failed = self._one_by_one(events, ctx)
        ctx.drop(self.name, "filter", len(events) - len(kept) - failed)
        return kept

    def _one_by_one(self, events: list[Event], ctx: BatchContext) -> tuple[list[Event], int]:
        kept = []
        failed = 0
        evaluate = self.condition.evaluate
        for event in events:
            try:
                if evaluate(event.value) is True:
                    kept.append(event)
            except RecordError as error:
                failed += 1
                ctx.dead_letter(event, self.name, error)
        return kept, failed
