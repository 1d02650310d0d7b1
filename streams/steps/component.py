"""`component`: a user's Python class as a step.

    class MyComponent:
        def process(self, record: dict, ctx) -> dict | list[dict] | None: ...

`process` may be `async`. It returns the record that goes on (a dict), several (a list),
or None to drop it. `ctx.state` is a dict kept per record key in the component's table,
`ctx.emit(topic, record)` sends an extra record, `ctx.config` is the step's `config`,
`ctx.log` a logger. An exception sends that record to the dead-letter topic.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from types import MappingProxyType
from typing import Any

from streams.errors import RecordError
from streams.records import Event
from streams.state import StateStore
from streams.steps.base import BatchContext, Step
from streams.tracing import trace_id_in

_NO_KEY = ""


class ComponentError(RecordError):
    def __init__(self, message: str) -> None:
        super().__init__(message, "component")


class RecordLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """`ctx.log`: a line logged while a record is processed carries the step and the
    record's trace id (read only when a line is logged: nothing per record otherwise)."""

    def __init__(self, logger: logging.Logger, ctx: ComponentContext, step: str) -> None:
        super().__init__(logger, {"step": step})
        self.ctx = ctx

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        fields = dict(self.extra or {})
        event = self.ctx._event
        if event is not None:
            fields["trace_id"] = trace_id_in(event.headers)
        kwargs["extra"] = {**fields, **(kwargs.get("extra") or {})}
        return msg, kwargs


class ComponentContext:
    """What `process(record, ctx)` can reach. One context serves a whole batch; `state`
    points at the current record's key."""

    __slots__ = ("_batch", "_event", "config", "log", "state")

    def __init__(self, config: Mapping[str, Any], log: logging.Logger, step: str) -> None:
        self.config = config
        self.log = RecordLogger(log, self, step)
        self.state: dict[str, Any] = {}
        self._batch: BatchContext | None = None
        self._event: Event | None = None

    def emit(self, topic: str, record: dict[str, Any]) -> None:
        """Send `record` to `topic`, besides what `process` returns."""
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"ctx.emit needs a topic name, got {topic!r}")
        if not isinstance(record, dict):
            raise TypeError(f"ctx.emit needs a dict record, got {type(record).__name__}")
        assert self._batch is not None and self._event is not None
        self._batch.emit(topic, self._event.derive(record))


class ComponentStep(Step):
    kind = "component"

    def __init__(self, name: str, cls: type, config: Mapping[str, Any], store: StateStore) -> None:
        super().__init__(name)
        try:
            self.instance = cls()
        except Exception as exc:
            raise TypeError(
                f"component {cls.__qualname__}: cannot create it with {cls.__qualname__}(): {exc}"
            ) from exc
        self._process: Callable[..., Any] = self.instance.process
        self.is_async = inspect.iscoroutinefunction(self._process)
        self.store = store
        self.partitions: dict[str, int] = {}
        self.ctx = ComponentContext(
            MappingProxyType(dict(config)), logging.getLogger(f"sluice.component.{name}"), name
        )

    def process(
        self, events: list[Event], ctx: BatchContext
    ) -> list[Event] | Awaitable[list[Event]]:
        if self.is_async:
            return self._process_async(events, ctx)
        states: dict[str, dict[str, Any]] = {}
        kept: list[Event] = []
        for event in events:
            self._enter(event, ctx, states)
            try:
                returned = self._process(event.value, self.ctx)
            except Exception as exc:
                self._fail(event, ctx, exc)
                continue
            self._accept(event, returned, ctx, kept)
        self._save(states)
        return kept

    async def _process_async(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        states: dict[str, dict[str, Any]] = {}
        kept: list[Event] = []
        for event in events:
            self._enter(event, ctx, states)
            try:
                returned = await self._process(event.value, self.ctx)
            except Exception as exc:
                self._fail(event, ctx, exc)
                continue
            self._accept(event, returned, ctx, kept)
        self._save(states)
        return kept

    def _enter(self, event: Event, ctx: BatchContext, states: dict[str, dict[str, Any]]) -> None:
        # each key's state is read once per batch and written back once at its end
        key = event.key if event.key is not None else _NO_KEY
        state = states.get(key)
        if state is None:
            stored = self.store.get(key)
            state = states[key] = dict(stored) if isinstance(stored, dict) else {}
            self.partitions[key] = event.partition
        self.ctx.state = state
        self.ctx._batch = ctx
        self.ctx._event = event

    def _fail(self, event: Event, ctx: BatchContext, exc: Exception) -> None:
        ctx.dead_letter(event, self.name, ComponentError(f"{type(exc).__name__}: {exc}"))

    def _accept(self, event: Event, returned: Any, ctx: BatchContext, kept: list[Event]) -> None:
        if returned is None:
            ctx.drop(self.name, "component")
        elif isinstance(returned, dict):
            event.value = returned
            kept.append(event)
        elif isinstance(returned, list) and all(isinstance(item, dict) for item in returned):
            if not returned:
                ctx.drop(self.name, "component")
                return
            first, *more = returned
            kept.append(event)
            kept.extend(event.derive(item) for item in more)
            event.value = first
        else:
            ctx.dead_letter(
                event,
                self.name,
                ComponentError(
                    f"process() returned {type(returned).__name__}; "
                    "return a dict, a list of dicts, or None to drop the record"
                ),
            )

    def _save(self, states: dict[str, dict[str, Any]]) -> None:
        for key, state in states.items():
            partition = self.partitions.pop(key, None)
            if state:
                self.store.set(key, state, partition)
            elif self.store.get(key) is not None:
                self.store.delete(key, partition)
