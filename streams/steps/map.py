"""`map`: replace each record by the fields the map names, like SQL's SELECT list."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from streams.errors import RecordError
from streams.expressions import Expression
from streams.records import Event
from streams.steps.base import BatchContext, Step


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
