"""`component`: a user's Python class as a step.

    class MyComponent:
        def process(self, record: dict, ctx) -> dict | list[dict] | None: ...

`process` may be `async`. It returns the record that goes on (a dict), several (a list),
or None to drop it. `ctx.state` is a dict kept per record key in the component's table,
`ctx.emit(topic, record)` sends an extra record, `ctx.config` is the step's `config`,
`ctx.log` a logger.

Each record is all or nothing. When `process` raises, runs past `timeout`, returns
something that is not records, or leaves state or records JSON cannot hold, the record
is a dead letter (`component`, or `timeout`), its `ctx.emit`s are not sent, and its key's
state is as it was before it.

The check behind that: the key's state is encoded with orjson after every record (the
encoding is also the snapshot a failure rolls back to), and every output once — about
1.8 µs a record around a trivial `process`, growing with the state
(docs/decisions/0005-component-all-or-nothing.md).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from types import MappingProxyType
from typing import Any

import orjson

from models.durations import format_duration_ms
from streams.core import jsonl
from streams.core.errors import RecordError, SluiceError
from streams.core.records import Event
from streams.core.state import StateStore
from streams.core.tracing import trace_id_in
from streams.core.watchdog import Watchdog, WatchSlot
from streams.steps.contract import BatchContext, Step

_NO_KEY = ""
_OUTPUT_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
# an async process() past its timeout is cancelled first; the watchdog (for one that
# blocks the event loop) looks this much later
_ASYNC_WATCHDOG_GRACE_S = 1.0


class ComponentError(RecordError):
    def __init__(self, message: str) -> None:
        super().__init__(message, "component")


class ComponentTimeout(RecordError):
    def __init__(self, message: str) -> None:
        super().__init__(message, "timeout")


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

    __slots__ = ("_emitted", "_event", "config", "log", "state")

    def __init__(self, config: Mapping[str, Any], log: logging.Logger, step: str) -> None:
        self.config = config
        self.log = RecordLogger(log, self, step)
        self.state: dict[str, Any] = {}
        self._event: Event | None = None
        self._emitted: list[tuple[str, dict[str, Any]]] = []

    def emit(self, topic: str, record: dict[str, Any]) -> None:
        """Send `record` to `topic`, besides what `process` returns (once the record is
        done: a record that fails sends nothing)."""
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"ctx.emit needs a topic name, got {topic!r}")
        if not isinstance(record, dict):
            raise TypeError(f"ctx.emit needs a dict record, got {type(record).__name__}")
        self._emitted.append((topic, record))


class _KeyState:
    """A key's state during a batch: the live dict `ctx.state` points at, and its last
    good encoding (what a failed record rolls back to)."""

    __slots__ = ("encoded", "partition", "value")

    def __init__(self, value: dict[str, Any], encoded: bytes, partition: int) -> None:
        self.value = value
        self.encoded = encoded
        self.partition = partition

    def rollback(self) -> None:
        self.value.clear()
        self.value.update(orjson.loads(self.encoded))


class ComponentStep(Step):
    kind = "component"

    def __init__(
        self,
        name: str,
        cls: type,
        config: Mapping[str, Any],
        store: StateStore,
        *,
        timeout_ms: int = 30_000,
        pipeline: str = "",
        watchdog: Watchdog | None = None,
    ) -> None:
        super().__init__(name)
        try:
            self.instance = cls()
        except Exception as exc:
            raise SluiceError(
                f"component {cls.__qualname__}: cannot create it with {cls.__qualname__}(): "
                f"{type(exc).__name__}: {exc}"
            ) from None
        self._process: Callable[..., Any] = self.instance.process
        self.is_async = inspect.iscoroutinefunction(self._process)
        self.store = store
        self.timeout_ms = timeout_ms
        self.timeout_s = timeout_ms / 1000
        self.slot: WatchSlot | None = None
        if watchdog is not None:
            grace = _ASYNC_WATCHDOG_GRACE_S if self.is_async else 0.0
            self.slot = watchdog.slot(pipeline, name, self.timeout_s + grace)
        self.ctx = ComponentContext(
            MappingProxyType(dict(config)), logging.getLogger(f"sluice.component.{name}"), name
        )

    def process(
        self, events: list[Event], ctx: BatchContext
    ) -> list[Event] | Awaitable[list[Event]]:
        run = self._run(events, ctx)
        if self.is_async:
            return run
        # a sync component's loop never suspends: it is done at the first send
        try:
            run.send(None)
        except StopIteration as done:
            kept: list[Event] = done.value
            return kept
        run.close()
        raise RuntimeError("the loop of a sync component suspended")

    async def _run(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        """The one loop for sync and async `process`; they differ only in how a call is
        timed. One coroutine per batch; for a sync component it is driven by a single
        `send`, so no event loop and nothing more per record (the sync call stays inline:
        a helper per call cost 0.13 of 1.3 µs per record)."""
        states: dict[str, _KeyState] = {}
        kept: list[Event] = []
        is_async = self.is_async
        slot = self.slot
        call = self._process
        component = self.ctx
        timeout_s = self.timeout_s
        clock = time.monotonic
        enter = self._enter
        accept = self._accept
        for event in events:
            state = enter(event, states)
            if is_async:
                try:
                    returned = await self._call_async(event)
                except _Failed as failed:
                    self._fail(event, ctx, state, failed.error)
                    continue
            else:
                started = clock()
                if slot is not None:
                    slot.current = (started, event.partition, event.offset)
                try:
                    returned = call(event.value, component)
                except Exception as exc:
                    if slot is not None:
                        slot.current = None
                    self._fail(event, ctx, state, ComponentError(_describe(exc)))
                    continue
                if slot is not None:
                    slot.current = None
                took = clock() - started
                if took > timeout_s:  # done at last; its result came too late to trust
                    self._fail(event, ctx, state, self._too_slow(took))
                    continue
            accept(event, returned, ctx, kept, state)
        self._save(states)
        return kept

    async def _call_async(self, event: Event) -> Any:
        slot = self.slot
        if slot is not None:
            slot.begin(event.partition, event.offset)
        deadline = asyncio.timeout(self.timeout_s)
        try:
            async with deadline:
                return await self._process(event.value, self.ctx)
        except TimeoutError as exc:
            expired = deadline.expired()
            raise _Failed(
                self._too_slow(None) if expired else ComponentError(_describe(exc))
            ) from None
        except Exception as exc:
            raise _Failed(ComponentError(_describe(exc))) from None
        finally:
            if slot is not None:
                slot.end()

    def _too_slow(self, took: float | None) -> ComponentTimeout:
        limit = format_duration_ms(self.timeout_ms)
        if took is None:
            return ComponentTimeout(f"process() did not finish within its timeout ({limit})")
        return ComponentTimeout(f"process() took {took:.1f} s, past its timeout ({limit})")

    def _enter(self, event: Event, states: dict[str, _KeyState]) -> _KeyState:
        # each key's state is read once per batch and written back once at its end
        key = event.key if event.key is not None else _NO_KEY
        state = states.get(key)
        if state is None:
            stored = self.store.get(key)
            value = dict(stored) if isinstance(stored, dict) else {}
            state = states[key] = _KeyState(value, _encode_state(value), event.partition)
        self.ctx.state = state.value
        self.ctx._event = event
        if self.ctx._emitted:
            self.ctx._emitted = []
        return state

    def _fail(self, event: Event, ctx: BatchContext, state: _KeyState, error: RecordError) -> None:
        state.rollback()
        self.ctx._emitted = []
        ctx.dead_letter(event, self.name, error)

    def _accept(
        self,
        event: Event,
        returned: Any,
        ctx: BatchContext,
        kept: list[Event],
        state: _KeyState,
    ) -> None:
        if returned is None:
            records: list[dict[str, Any]] = []
        elif isinstance(returned, dict):
            records = [returned]
        elif isinstance(returned, list) and all(isinstance(item, dict) for item in returned):
            records = returned
        else:
            self._fail(
                event,
                ctx,
                state,
                ComponentError(
                    f"process() returned {type(returned).__name__}; "
                    "return a dict, a list of dicts, or None to drop the record"
                ),
            )
            return
        try:
            encoded = orjson.dumps(state.value, option=jsonl.STATE_OPTIONS)
        except orjson.JSONEncodeError:
            problem = jsonl.state_problem(state.value) or "not JSON"
            self._fail(event, ctx, state, ComponentError(f"state is not JSON: {problem}"))
            return
        emitted = self.ctx._emitted
        try:  # the common case in one call: one record, no emits
            for record in records:
                orjson.dumps(record, option=_OUTPUT_OPTIONS)
            for _, record in emitted:
                orjson.dumps(record, option=_OUTPUT_OPTIONS)
        except orjson.JSONEncodeError:  # or only a big int or deep nesting: look closer
            not_json = _records_problem(records, emitted)
            if not_json is not None:
                self._fail(event, ctx, state, ComponentError(not_json))
                return
        state.encoded = encoded
        if emitted:
            for topic, record in emitted:
                ctx.emit(topic, event.derive(record))
            self.ctx._emitted = []
        if not records:
            ctx.drop(self.name, "component")
            return
        kept.append(event)
        event.value = records[0]
        if len(records) > 1:
            kept.extend([event.derive(item) for item in records[1:]])

    def _save(self, states: dict[str, _KeyState]) -> None:
        for key, state in states.items():
            if state.value:
                self.store.set(key, state.value, state.partition)
            elif self.store.get(key) is not None:
                self.store.delete(key, state.partition)


class _NotJson(Exception):
    pass


class _Failed(Exception):
    """A call of `process` that makes its record a dead letter with `error`."""

    def __init__(self, error: RecordError) -> None:
        super().__init__(str(error))
        self.error = error


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # a user's exception whose __str__ fails
        text = "(its message cannot be shown)"
    return f"{type(exc).__name__}: {text[:1000]}"


def _encode_state(value: dict[str, Any]) -> bytes:
    """The state's bytes as a changelog holds them; _NotJson (saying what and where) when
    it holds something a changelog cannot."""
    try:
        return orjson.dumps(value, option=jsonl.STATE_OPTIONS)
    except orjson.JSONEncodeError:
        raise _NotJson(jsonl.state_problem(value) or "not JSON") from None


def _records_problem(
    records: list[dict[str, Any]], emitted: list[tuple[str, dict[str, Any]]]
) -> str | None:
    for index, record in enumerate(records):
        try:
            jsonl.strict_dumps(record)
        except TypeError as exc:
            which = "the returned record" if len(records) == 1 else f"returned record {index}"
            return f"{which} is not JSON: {exc}"
    for topic, record in emitted:
        try:
            jsonl.strict_dumps(record)
        except TypeError as exc:
            return f"the record for ctx.emit({topic!r}, …) is not JSON: {exc}"
    return None
