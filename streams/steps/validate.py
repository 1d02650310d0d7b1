"""`validate`: check records against a pydantic model or an inline schema.

Validation is pydantic's, lax: `"3"` is a valid int, `3.5` is not. Fields not in the
schema pass through unchanged; the record that goes on holds the coerced values. Values
that already have the exact type skip pydantic (the common case, and by far the fastest);
everything else goes through the same pydantic validator, so the semantics are pydantic's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from operator import attrgetter, itemgetter
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from streams.core.errors import SchemaError
from streams.core.records import Event
from streams.steps.contract import BatchContext, Step

_PYTHON_TYPES: dict[str, type] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "datetime": datetime,
    "list": list,
    "dict": dict,
}
_VALUE = attrgetter("value")
_DICT = frozenset({dict})
_MISSING = object()
_NULL = type(None)


def describe_validation_error(error: ValidationError, prefix: str = "") -> str:
    parts = []
    for item in error.errors(include_url=False):
        location = ".".join(str(p) for p in (prefix, *item["loc"]) if p != "")
        parts.append(f"{location}: {item['msg']}" if location else str(item["msg"]))
    return "; ".join(parts)


class _Field:
    __slots__ = ("adapter", "exact", "getter", "name", "optional")

    def __init__(self, name: str, type_name: str) -> None:
        self.name = name
        self.getter = itemgetter(name)
        self.optional = type_name.endswith("?")
        python_type = _PYTHON_TYPES[type_name.removesuffix("?")]
        # datetime values arrive as text; they always need pydantic's parsing
        self.exact: type | None = None if python_type is datetime else python_type
        self.adapter: TypeAdapter[Any] = TypeAdapter(python_type)


def _exact_as_float(value: int) -> bool:
    if -(2**53) <= value <= 2**53:  # every int here is a float exactly
        return True
    try:
        return float(value) == value
    except OverflowError:
        return False


def _lossy(name: str, value: int) -> str:
    digits = len(str(abs(value)))
    return (
        f"{name}: the integer ({digits} digits) is not exactly a float, and a float would "
        "lose digits; declare the field int"
    )


class SchemaValidator:
    """Validates a record dict in place against an inline schema."""

    def __init__(self, schema: Mapping[str, str]) -> None:
        self.fields = [_Field(name, type_name) for name, type_name in schema.items()]

    def suspects(self, records: list[dict[str, Any]]) -> list[int]:
        """The positions of the records `__call__` may change or refuse: some field's
        value not of its exact type (nor a null an optional field allows). The others
        pass unchanged. One C-level pass per field and column instead of a Python loop
        per record: ~0.2 µs a record for five fields, against ~0.45."""
        suspects: set[int] = set()
        for spec in self.fields:
            try:  # the classes straight from the records: no column list unless needed
                kinds = set(map(type, map(spec.getter, records)))
            except KeyError:
                kinds = {object}  # a field missing: look at each record below
            if spec.exact is not None and (
                kinds == {spec.exact} or (spec.optional and kinds <= {spec.exact, _NULL})
            ):
                continue
            column = [record.get(spec.name, _MISSING) for record in records]
            exact, optional = spec.exact, spec.optional
            suspects.update(
                i
                for i, value in enumerate(column)
                if value.__class__ is not exact
                and not (optional and (value is None or value is _MISSING))
            )
        return sorted(suspects)

    def __call__(self, record: dict[str, Any]) -> dict[str, Any]:
        problems: list[str] | None = None
        for spec in self.fields:
            value = record.get(spec.name, _MISSING)
            if value is None or value is _MISSING:
                if not spec.optional:
                    problems = problems or []
                    problems.append(
                        f"{spec.name}: field required"
                        if value is _MISSING
                        else f"{spec.name}: must not be null (declare it as "
                        f"'{spec.name}: <type>?' to allow null)"
                    )
                continue
            if value.__class__ is spec.exact:
                continue
            if spec.exact is float and value.__class__ is int and not _exact_as_float(value):
                problems = problems or []
                problems.append(_lossy(spec.name, value))
                continue
            try:
                record[spec.name] = spec.adapter.validate_python(value)
            except ValidationError as error:
                problems = problems or []
                problems.append(describe_validation_error(error, spec.name))
        if problems:
            raise SchemaError("; ".join(problems))
        return record


class ModelValidator:
    """Validates a record with a user's pydantic model; extra fields pass through."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model

    def __call__(self, record: dict[str, Any]) -> dict[str, Any]:
        try:
            instance = self.model.model_validate(record)
        except ValidationError as error:
            raise SchemaError(describe_validation_error(error)) from None
        dumped = instance.model_dump()
        for name, new in dumped.items():
            old = record.get(name)
            if new.__class__ is float and old.__class__ is int and not _exact_as_float(old):
                raise SchemaError(_lossy(name, old))
        record.update(dumped)
        return record


class ValidateStep(Step):
    kind = "validate"

    def __init__(self, name: str, validator: SchemaValidator | ModelValidator) -> None:
        super().__init__(name)
        self.validator = validator

    def process(self, events: list[Event], ctx: BatchContext) -> list[Event]:
        validate = self.validator
        if isinstance(validate, SchemaValidator):
            values = list(map(_VALUE, events))
            if _DICT.issuperset(map(type, values)):
                refused: set[int] = set()
                for i in validate.suspects(values):
                    event = events[i]
                    try:
                        event.value = validate(event.value)
                    except SchemaError as error:
                        ctx.dead_letter(event, self.name, error)
                        refused.add(i)
                if not refused:
                    return events
                kept: list[Event] = []
                after = 0
                for i in sorted(refused):  # the runs between refused records, as slices
                    kept += events[after:i]
                    after = i + 1
                kept += events[after:]
                return kept
        kept = []
        for event in events:
            try:
                event.value = validate(event.value)
            except SchemaError as error:
                ctx.dead_letter(event, self.name, error)
            else:
                kept.append(event)
        return kept
