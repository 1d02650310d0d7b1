"""The sink: one topic, or routes where the first matching condition picks the topic."""

from __future__ import annotations

from collections.abc import Sequence

from streams.core.errors import RecordError
from streams.core.records import Event
from streams.expressions import Expression
from streams.steps.contract import BatchContext

SINK_STEP = "sink"


class Route:
    __slots__ = ("condition", "topic")

    def __init__(self, condition: Expression | None, topic: str) -> None:
        self.condition = condition  # None: the `else` route
        self.topic = topic


class Router:
    """Sends each record to its topic; a record no route matches is dropped as `unrouted`."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = list(routes)
        self.single_topic = (
            self.routes[0].topic
            if len(self.routes) == 1 and self.routes[0].condition is None
            else None
        )

    def send(self, events: list[Event], ctx: BatchContext) -> None:
        if not events:
            return
        if self.single_topic is not None:
            ctx.result.add(self.single_topic, events)
            return
        unrouted = 0
        for event in events:
            try:
                topic = self._topic_of(event)
            except RecordError as error:
                ctx.dead_letter(event, SINK_STEP, error)
                continue
            if topic is None:
                unrouted += 1
            else:
                ctx.emit(topic, event)
        ctx.drop(SINK_STEP, "unrouted", unrouted)

    def _topic_of(self, event: Event) -> str | None:
        for route in self.routes:
            if route.condition is None or route.condition.evaluate(event.value) is True:
                return route.topic
        return None
