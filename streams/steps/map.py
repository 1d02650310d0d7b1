"""`map`: replace each record by the fields the map names, like SQL's SELECT list.

A batch of plain dicts is projected column by column (`Expression.evaluate_batch`, then
one dict a record filled field by field: ~0.15 µs a record for four fields, against
~0.2 µs for `dict(zip(names, row))`); a batch where that raises, or that holds other
records, record by record, and a failing one again one by one to find the records that
fail."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from operator import attrgetter
from typing import Any

from streams.core.errors import RecordError
from streams.core.records import Event
from streams.expressions import Expression
from streams.steps.contract import BatchContext, Step

_VALUE = attrgetter("value")
_DICT = frozenset({dict})


def _projection(fields: Mapping[str, Expression]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    items = tuple((name, expression.fn) for name, expression in fields.items())

    def project(record: dict[str, Any]) -> dict[str, Any]:
        return {name: compute(record) for name, compute in items}

    return project


class MapStep(Step):
    kind = "map"

    def __init__(self, name: str, fields: Mapping[str, Expression]) -> None:
        super().__init__(name)
        self.fields = dict(fields)
        self._project = _projection(self.fields)

    def process(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        values = list(map(_VALUE, events))
        if _DICT.issuperset(map(type, values)):
            try:
                columns = [
                    (name, expression.evaluate_batch(values))
                    for name, expression in self.fields.items()
                ]
            except Exception:  # evaluated record by record below
                columns = None
            if columns:  # (a map of no fields: the loop below makes its empty records)
                first, values_of_first = columns[0]
                records = [{first: value} for value in values_of_first]
                for name, column in columns[1:]:
                    for record, value in zip(records, column, strict=True):
                        record[name] = value
                for event, record in zip(events, records, strict=True):
                    event.value = record
                return events
        project = self._project
        try:
            values = [project(event.value) for event in events]
        except Exception:  # some record failed: redo this batch one by one to find it
            return self._one_by_one(events, ctx)
        for event, value in zip(events, values, strict=True):
            event.value = value
        return events

    def _one_by_one(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        kept = []
        for event in events:
            try:
                event.value = {
                    name: expression.evaluate(event.value)
                    for name, expression in self.fields.items()
                }
            except RecordError as error:
                ctx.dead_letter(event, self.name, error)
            else:
                kept.append(event)
        return kept
