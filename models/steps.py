"""The steps of a pipeline file, one model per kind, and the union that picks the kind.

Expressions, aggregates and the classes a step names (`validate: {model: …}`,
`component: {class: …}`) are compiled or imported by the loader (streams.steps.spec_fields),
which fills in the names `Condition`, `ValueExpression`, `Aggregate`, `ModelClass` and
`ComponentClass`: this module only gives the steps their shape.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

from models.fields import DurationMs, FieldList, Spec, StepName, Topic, invalid

if TYPE_CHECKING:  # what the loader compiles these to (see models.pipeline_spec)
    from pydantic import BaseModel

    from streams.expressions import AggregateCall, Expression

    Condition = Expression
    ValueExpression = Expression
    Aggregate = AggregateCall
    ModelClass = type[BaseModel]
    ComponentClass = type

STEP_KINDS = (
    "validate",
    "filter",
    "map",
    "dedupe",
    "enrich",
    "ratelimit",
    "window",
    "alert",
    "component",
    "aggregate",
    "join",
)
MAX_WINDOWS_PER_EVENT = 1000  # a hopping window's size/hop: each event updates that many
SCHEMA_TYPES = ("str", "int", "float", "bool", "datetime", "list", "dict")


class ValidateSpec(Spec):
    model: ModelClass | None = None
    schema_: dict[str, str] | None = Field(None, alias="schema")

    @field_validator("schema_")
    @classmethod
    def _check_schema(cls, schema: dict[str, str] | None) -> dict[str, str] | None:
        for name, type_name in (schema or {}).items():
            base = type_name.removesuffix("?") if isinstance(type_name, str) else type_name
            if base not in SCHEMA_TYPES:
                close = difflib.get_close_matches(str(base), SCHEMA_TYPES, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise invalid(
                    "schema_type",
                    f"field {name!r}: unknown type {type_name!r}{hint}; use one of "
                    f"{', '.join(SCHEMA_TYPES)}, with a trailing ? for optional",
                )
        return schema

    @model_validator(mode="after")
    def _one_form(self) -> ValidateSpec:
        if (self.model is None) == (self.schema_ is None):
            raise ValueError(
                "validate needs either 'model: package.module:Model' or 'schema: {...}'"
            )
        return self


class DedupeSpec(Spec):
    key: FieldList
    within: DurationMs
    name: StepName | None = None


class EnrichSpec(Spec):
    table: str
    on: FieldList
    fields: list[str] | None = None
    missing: Literal["keep", "drop", "dlq"] = "keep"
    name: StepName | None = None

    @field_validator("table")
    @classmethod
    def _declared(cls, table: str, info: ValidationInfo) -> str:
        tables = (info.context or {}).get("tables")
        if tables is not None and table not in tables:
            known = ", ".join(tables) or "none are declared under 'tables:'"
            raise ValueError(f"table {table!r} is not declared under 'tables:' ({known})")
        return table


class RateLimitSpec(Spec):
    key: FieldList
    rate: float = Field(gt=0)
    per: DurationMs = 1000
    burst: float | None = Field(None, gt=0)
    action: Literal["drop", "dlq"] = "drop"
    name: StepName | None = None

    @field_validator("per")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("'per' must be a positive duration, e.g. 1s")
        return value


class WindowSpec(Spec):
    type: Literal["tumbling", "hopping", "session"]
    size: DurationMs | None = None
    hop: DurationMs | None = None
    gap: DurationMs | None = None
    grace: DurationMs = 0
    key: FieldList | None = None
    emit: Literal["final", "updates"] = "final"
    late: Literal["drop", "dlq"] = "drop"
    aggregates: dict[str, Aggregate]
    name: StepName | None = None

    @field_validator("aggregates")
    @classmethod
    def _named(cls, value: dict[str, AggregateCall]) -> dict[str, AggregateCall]:
        if not value:
            raise ValueError("a window needs at least one aggregate, e.g. n: count()")
        reserved = {"window_start", "window_end"} & set(value)
        if reserved:
            raise ValueError(f"aggregate name {sorted(reserved)[0]!r} is reserved for the window")
        return value

    @model_validator(mode="after")
    def _shape(self) -> WindowSpec:
        if self.type in ("tumbling", "hopping") and not self.size:
            raise ValueError(f"a {self.type} window needs 'size', e.g. size: 1m")
        if self.type == "hopping":
            if not self.hop:
                raise ValueError("a hopping window needs 'hop', e.g. hop: 10s")
            if self.size is not None and self.hop > self.size:
                raise ValueError("'hop' must not be larger than 'size'")
            if self.size is not None and -(-self.size // self.hop) > MAX_WINDOWS_PER_EVENT:
                raise ValueError(
                    f"size/hop puts each event in {-(-self.size // self.hop):,} windows, more "
                    f"than {MAX_WINDOWS_PER_EVENT:,} windows per event: use a larger 'hop' "
                    "(or a smaller 'size')"
                )
        if self.type != "hopping" and self.hop is not None:
            raise ValueError(f"'hop' is only for hopping windows, not {self.type}")
        if self.type == "session":
            if not self.gap:
                raise ValueError("a session window needs 'gap', e.g. gap: 30s")
            if self.size is not None:
                raise ValueError("a session window has 'gap', not 'size'")
        elif self.gap is not None:
            raise ValueError(f"'gap' is only for session windows, not {self.type}")
        if self.key:
            clash = set(self.key) & set(self.aggregates)
            if clash:
                raise ValueError(f"aggregate {sorted(clash)[0]!r} has the name of a key field")
        return self


class EmitEverySpec(Spec):
    every: DurationMs

    @field_validator("every")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("'every' must be a positive duration, e.g. 10s")
        return value


class AggregateSpec(Spec):
    """Running aggregates per key, no window (see streams.steps.aggregate)."""

    key: FieldList | None = None
    aggregates: dict[str, Aggregate]
    emit: Literal["updates"] | EmitEverySpec = "updates"
    name: StepName | None = None

    @field_validator("aggregates")
    @classmethod
    def _named(cls, value: dict[str, AggregateCall]) -> dict[str, AggregateCall]:
        if not value:
            raise ValueError("aggregate needs at least one aggregate, e.g. n: count()")
        return value

    @model_validator(mode="after")
    def _no_clash(self) -> AggregateSpec:
        clash = set(self.key or ()) & set(self.aggregates)
        if clash:
            raise ValueError(f"aggregate {sorted(clash)[0]!r} has the name of a key field")
        return self

    @property
    def every_ms(self) -> int | None:
        """`emit: {every: d}`: the changed keys once per `d`; None: an update per record."""
        return self.emit.every if isinstance(self.emit, EmitEverySpec) else None


class JoinSpec(Spec):
    """Two streams joined within an interval of event time (see streams.steps.join)."""

    stream: Topic
    key: FieldList
    other_key: FieldList | None = None  # default: the same field names as `key`
    within: DurationMs | None = None
    grace: DurationMs = 0
    type: Literal["inner", "left", "outer"] = "inner"
    fields: dict[str, ValueExpression] | None = None
    late: Literal["drop", "dlq"] = "drop"
    timestamp: str | None = Field(
        None, description="the other stream's event-time field (default: source.timestamp)"
    )
    name: StepName | None = None

    @model_validator(mode="after")
    def _shape(self) -> JoinSpec:
        if self.within is None:
            raise ValueError(
                "a join needs 'within', the interval of event time two records may be apart, "
                "e.g. within: 10m"
            )
        if self.within < 0 or self.grace < 0:
            raise ValueError("'within' and 'grace' must not be negative")
        if self.other_key is not None and len(self.other_key) != len(self.key):
            raise ValueError(
                f"'key' has {len(self.key)} field(s) and 'other_key' {len(self.other_key)}: "
                "they must pair up"
            )
        if self.fields is not None and not self.fields:
            raise ValueError("'fields' needs at least one output field (or leave it out)")
        return self

    @property
    def within_ms(self) -> int:
        return self.within or 0

    @property
    def right_key(self) -> tuple[str, ...]:
        return self.other_key if self.other_key is not None else self.key


class AlertSpec(Spec):
    name: StepName
    when: Condition
    for_: DurationMs = Field(0, alias="for")
    severity: Literal["info", "warning", "critical"] = "warning"
    to: Topic | None = None
    key: FieldList | None = None
    format: Literal["json", "avro"] = "json"  # of the alert topic


DEFAULT_COMPONENT_TIMEOUT_MS = 30_000


class ComponentSpec(Spec):
    class_: ComponentClass = Field(alias="class")
    config: dict[str, Any] = Field(default_factory=dict)
    timeout: DurationMs = Field(
        DEFAULT_COMPONENT_TIMEOUT_MS,
        description="per record: an async process() past it is cancelled (a `timeout` dead "
        "letter); a sync one cannot be, and makes the worker not ready",
    )
    name: StepName | None = None

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("'timeout' must be a positive duration, e.g. 5s")
        return value


class _Step(Spec):
    @property
    def kind(self) -> str:
        return next(iter(type(self).model_fields))

    @property
    def options(self) -> Any:
        return getattr(self, self.kind)

    @property
    def explicit_name(self) -> str | None:
        return getattr(self.options, "name", None)


class ValidateStepSpec(_Step):
    validate_: ValidateSpec = Field(alias="validate")

    @property
    def kind(self) -> str:
        return "validate"

    @property
    def options(self) -> Any:
        return self.validate_


class FilterStepSpec(_Step):
    filter: Condition


class MapStepSpec(_Step):
    map: dict[str, ValueExpression]

    @field_validator("map")
    @classmethod
    def _not_empty(cls, value: dict[str, Expression]) -> dict[str, Expression]:
        if not value:
            raise ValueError("map needs at least one output field, e.g. {amount: amount}")
        return value


class DedupeStepSpec(_Step):
    dedupe: DedupeSpec


class EnrichStepSpec(_Step):
    enrich: EnrichSpec


class RateLimitStepSpec(_Step):
    ratelimit: RateLimitSpec


class WindowStepSpec(_Step):
    window: WindowSpec


class AlertStepSpec(_Step):
    alert: AlertSpec

    @property
    def explicit_name(self) -> str | None:
        return self.alert.name


class ComponentStepSpec(_Step):
    component: ComponentSpec


class AggregateStepSpec(_Step):
    aggregate: AggregateSpec


class JoinStepSpec(_Step):
    join: JoinSpec


def _step_tag(value: Any) -> str | None:
    if isinstance(value, _Step):
        return value.kind
    if isinstance(value, dict) and len(value) == 1:
        kind = next(iter(value))
        return kind if kind in STEP_KINDS else None
    return None


StepSpec = Annotated[
    Annotated[ValidateStepSpec, Tag("validate")]
    | Annotated[FilterStepSpec, Tag("filter")]
    | Annotated[MapStepSpec, Tag("map")]
    | Annotated[DedupeStepSpec, Tag("dedupe")]
    | Annotated[EnrichStepSpec, Tag("enrich")]
    | Annotated[RateLimitStepSpec, Tag("ratelimit")]
    | Annotated[WindowStepSpec, Tag("window")]
    | Annotated[AlertStepSpec, Tag("alert")]
    | Annotated[ComponentStepSpec, Tag("component")]
    | Annotated[AggregateStepSpec, Tag("aggregate")]
    | Annotated[JoinStepSpec, Tag("join")],
    Discriminator(
        _step_tag,
        custom_error_type="step_kind",
        custom_error_message="unknown step",
    ),
]


def describe_bad_step(value: Any) -> str:
    """A helpful message for a step that matched no kind (used by the config loader)."""
    kinds = ", ".join(STEP_KINDS)
    if isinstance(value, dict) and len(value) == 1:
        kind = str(next(iter(value)))
        close = difflib.get_close_matches(kind, STEP_KINDS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown step kind '{kind}'{hint}; steps are: {kinds}"
    if isinstance(value, dict):
        return f"a step is a mapping with exactly one key, its kind ({kinds}); got {sorted(value)}"
    return f'a step is a mapping such as {{filter: "amount > 0"}}; got {value!r}'
