"""`filter`: keep the records whose condition is TRUE (FALSE and NULL drop them)."""

from __future__ import annotations

from streams.errors import RecordError
from streams.expressions import Expression
from streams.records import Event
from streams.steps.base import BatchContext, Step


class FilterStep(Step):
    kind = "filter"

    def __init__(self, name: str, condition: Expression) -> None:
        super().__init__(name)
        self.condition = condition

    def process(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        test = self.condition.fn
        try:
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
