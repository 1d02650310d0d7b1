"""The pipeline file (config/pipelines/NAME.yaml) as pydantic models.

Validation does all the checking `sluice check` reports: expressions compile, models and
component classes import, durations and rates parse, topics are named. The validated spec
holds compiled expressions and imported classes, ready for `streams.pipeline.Pipeline`.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import json
import re
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    PlainValidator,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from streams.durations import parse_duration_ms
from streams.errors import ExpressionError
from streams.expressions import (
    AggregateCall,
    Expression,
    compile_condition,
    compile_expression,
    literal_expression,
    parse_aggregate,
)

TOPIC_PATTERN = r"^[A-Za-z0-9._\-]{1,249}$"
_FIELD_PATTERN = re.compile(r"^[^\s]+$")
_STEP_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,200}$")

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


def _invalid(kind: str, message: str) -> PydanticCustomError:
    # the message goes in as a context value: pydantic templates do not support !r
    return PydanticCustomError(kind, "{reason}", {"reason": message})


def _expression_error(exc: ExpressionError) -> PydanticCustomError:
    return _invalid("expression", str(exc))


def _to_condition(value: Any) -> Expression:
    if isinstance(value, Expression):
        return value
    if isinstance(value, bool):
        return literal_expression(value)
    if not isinstance(value, str):
        raise PydanticCustomError(
            "expression", 'expected a SQL condition as text, e.g. "amount > 0"'
        )
    try:
        return compile_condition(value)
    except ExpressionError as exc:
        raise _expression_error(exc) from None


def _to_expression(value: Any) -> Expression:
    if isinstance(value, Expression):
        return value
    if value is None or isinstance(value, bool | int | float):
        return literal_expression(value)
    if not isinstance(value, str):
        raise PydanticCustomError("expression", "expected a SQL expression as text")
    try:
        return compile_expression(value)
    except ExpressionError as exc:
        raise _expression_error(exc) from None


def _to_aggregate(value: Any) -> AggregateCall:
    if isinstance(value, AggregateCall):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("aggregate", "expected an aggregate such as sum(amount)")
    try:
        return parse_aggregate(value)
    except ExpressionError as exc:
        raise _expression_error(exc) from None


def _to_duration(value: Any) -> int:
    try:
        return parse_duration_ms(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", "{reason}", {"reason": str(exc)}) from None


def import_object(path: str) -> Any:
    """Import `package.module:Name`; errors say what to fix."""
    if not isinstance(path, str) or ":" not in path:
        raise _invalid("import_path", f"expected 'package.module:Name', got {path!r}")
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a user module can fail to import in any way
        raise _invalid(
            "import_path",
            f"cannot import module {module_name!r}: {type(exc).__name__}: {exc} "
            "(is it installed or on PYTHONPATH?)",
        ) from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            names = [n for n in dir(module) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise _invalid("import_path", f"module {module_name!r} has no {attribute!r}{hint}")
        target = getattr(target, part)
    return target


def _to_model(value: Any) -> type[BaseModel]:
    if isinstance(value, type) and issubclass(value, BaseModel):
        return value
    target = import_object(value)
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        raise _invalid("model", f"{value!r} is not a pydantic model class")
    return target


def _to_component(value: Any) -> type:
    if isinstance(value, type):
        return value
    target = import_object(value)
    if not isinstance(target, type):
        raise _invalid("component", f"{value!r} is not a class")
    process = getattr(target, "process", None)
    if not callable(process):
        raise _invalid("component", f"{value!r} has no process(self, record, ctx) method")
    if len(inspect.signature(process).parameters) < 3:
        raise _invalid("component", f"{value!r}.process must take (self, record, ctx)")
    return target


def _source_of(value: Any) -> str:
    return getattr(value, "source", None) or repr(value)


Condition = Annotated[Expression, PlainValidator(_to_condition), PlainSerializer(_source_of)]
ValueExpression = Annotated[Expression, PlainValidator(_to_expression), PlainSerializer(_source_of)]
Aggregate = Annotated[AggregateCall, PlainValidator(_to_aggregate), PlainSerializer(_source_of)]
DurationMs = Annotated[int, PlainValidator(_to_duration)]
Topic = Annotated[str, Field(pattern=TOPIC_PATTERN)]
# a topic's record format: JSON, or the Confluent wire format with a schema registry
Format = Literal["json", "avro", "protobuf", "json_schema"]
REGISTRY_FORMATS = ("avro", "protobuf", "json_schema")


def _to_step_name(value: Any) -> str:
    """A step's name labels its metrics and names its state (`<pipeline>.<name>`, and the
    changelog topic `<app_id>-<pipeline>.<name>-changelog`): letters, digits, `_` and `-`
    only, so no two pipelines' state can share a name; `__…` is the runtime's own."""
    if not isinstance(value, str) or not _STEP_NAME.match(value):
        raise _invalid(
            "step_name",
            f"step name {value!r}: use letters, digits, '_' and '-' (it names the step's "
            "state and metrics)",
        )
    if value.startswith("__"):
        raise _invalid("step_name", f"step name {value!r}: names starting with '__' are reserved")
    return value


StepName = Annotated[str, PlainValidator(_to_step_name)]
# A pipeline's name may hold '.', '-' and '_': its state is `<pipeline>.<step>` and step
# names hold no '.', so the last '.' of a store name always splits pipeline from step
# (streams.state.store_owner); '-' may join it to the app id because app ids hold none.
PipelineName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._\-]{1,200}$")]


def _to_table_name(value: Any) -> str:
    """A lookup table's rows are kept as `<pipeline>.tables.<name>`: no '.' in the name, so
    two pipelines' tables never share one."""
    if not isinstance(value, str) or not _STEP_NAME.match(value):
        raise _invalid(
            "table_name",
            f"table name {value!r}: use letters, digits, '_' and '-' (it names the table's "
            "rows in the worker)",
        )
    return value


TableName = Annotated[str, PlainValidator(_to_table_name)]
ModelClass = Annotated[
    type[BaseModel],
    PlainValidator(_to_model),
    PlainSerializer(lambda c: f"{c.__module__}:{c.__qualname__}"),
]
ComponentClass = Annotated[
    type,
    PlainValidator(_to_component),
    PlainSerializer(lambda c: f"{c.__module__}:{c.__qualname__}"),
]


def _field_list(value: Any) -> tuple[str, ...]:
    fields = [value] if isinstance(value, str) else value
    if not isinstance(fields, list | tuple) or not fields:
        raise PydanticCustomError("fields", "expected a field name or a list of field names")
    for name in fields:
        if not isinstance(name, str) or not _FIELD_PATTERN.match(name):
            raise _invalid("fields", f"{name!r} is not a field name")
    return tuple(fields)


FieldList = Annotated[tuple[str, ...], PlainValidator(_field_list), PlainSerializer(list)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- source, tables, sink ------------------------------------------------------------


class SourceSpec(_Spec):
    topic: Topic
    key: FieldList | None = None
    timestamp: str | None = Field(None, description="field holding the event time")
    format: Format = "json"
    key_format: Format = "json"


class TableSpec(_Spec):
    topic: Topic
    key: FieldList
    format: Format = "json"
    key_format: Format = "json"


def _output_schema(value: Any, info: ValidationInfo) -> str | None:
    """`schema: FILE.avsc` of an Avro output, relative to the pipeline file: made absolute,
    and checked to hold a JSON object at load time (`sluice check` names the line)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.endswith(".avsc"):
        raise _invalid(
            "schema_file", f"expected the path of an Avro schema file (.avsc), got {value!r}"
        )
    path = Path(value)
    base = (info.context or {}).get("base")
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise _invalid("schema_file", f"cannot read {str(path)!r}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise _invalid("schema_file", f"{str(path)!r} is not JSON: {exc}") from None
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise _invalid("schema_file", f"{str(path)!r}: expected an Avro record schema")
    return str(path.resolve())


SchemaFile = Annotated[str | None, PlainValidator(_output_schema)]


class _OutputFormat(_Spec):
    """How an output topic's records are written: JSON, or Avro through the registry with
    a schema derived from the pipeline or given (`schema: FILE.avsc`)."""

    format: Format = "json"
    schema_file: SchemaFile = Field(None, alias="schema")

    @model_validator(mode="after")
    def _schema_needs_avro(self) -> _OutputFormat:
        if self.format in ("protobuf", "json_schema"):
            raise ValueError(
                f"outputs are written as 'json' or 'avro' (read-only format {self.format!r})"
            )
        if self.schema_file is not None and self.format != "avro":
            raise ValueError("'schema: FILE.avsc' is for 'format: avro'")
        return self


class RouteSpec(_OutputFormat):
    when: Condition | None = None
    to: Topic | None = None
    else_: Topic | None = Field(None, alias="else")

    @model_validator(mode="after")
    def _one_form(self) -> RouteSpec:
        if self.else_ is not None:
            if self.when is not None or self.to is not None:
                raise ValueError("a route is either {when: ..., to: topic} or {else: topic}")
        elif self.when is None or self.to is None:
            raise ValueError("a route needs both 'when' and 'to' (or is {else: topic})")
        return self

    @property
    def topic(self) -> str:
        return self.to or self.else_ or ""


class SinkSpec(_OutputFormat):
    topic: Topic | None = None
    route: list[RouteSpec] | None = None
    # keys written as text (json), or as Avro strings registered under `<topic>-key`
    key_format: Literal["json", "avro"] = "json"

    @model_validator(mode="after")
    def _one_form(self) -> SinkSpec:
        if (self.topic is None) == (self.route is None):
            raise ValueError("the sink needs either 'topic' or 'route' (not both)")
        if self.route is not None:
            if not self.route:
                raise ValueError("'route' needs at least one {when: ..., to: topic}")
            for position, rule in enumerate(self.route[:-1]):
                if rule.else_ is not None:
                    raise ValueError(f"route[{position}]: 'else' must be the last route")
        return self

    def topics(self) -> list[str]:
        if self.topic is not None:
            return [self.topic]
        return list(dict.fromkeys(rule.topic for rule in self.route or []))


class DeadLetterSpec(_Spec):
    topic: Topic


# --- steps ---------------------------------------------------------------------------


class ValidateSpec(_Spec):
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
                raise _invalid(
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


class DedupeSpec(_Spec):
    key: FieldList
    within: DurationMs
    name: StepName | None = None


class EnrichSpec(_Spec):
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


class RateLimitSpec(_Spec):
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


class WindowSpec(_Spec):
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


class EmitEverySpec(_Spec):
    every: DurationMs

    @field_validator("every")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("'every' must be a positive duration, e.g. 10s")
        return value


class AggregateSpec(_Spec):
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


class JoinSpec(_Spec):
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


class AlertSpec(_Spec):
    name: StepName
    when: Condition
    for_: DurationMs = Field(0, alias="for")
    severity: Literal["info", "warning", "critical"] = "warning"
    to: Topic | None = None
    key: FieldList | None = None
    format: Literal["json", "avro"] = "json"  # of the alert topic


DEFAULT_COMPONENT_TIMEOUT_MS = 30_000


class ComponentSpec(_Spec):
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


class _Step(_Spec):
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


# --- the pipeline --------------------------------------------------------------------


class PipelineSpec(_Spec):
    pipeline: PipelineName
    source: SourceSpec
    tables: dict[TableName, TableSpec] = Field(default_factory=dict)
    steps: list[StepSpec] = Field(default_factory=list)
    sink: SinkSpec
    dlq: DeadLetterSpec | None = None

    @model_validator(mode="after")
    def _cross_checks(self) -> PipelineSpec:
        for step in self.steps:
            if isinstance(step, EnrichStepSpec) and step.enrich.table not in self.tables:
                raise ValueError(f"enrich uses table {step.enrich.table!r}, not under 'tables:'")
        names = Counter(name for name, _ in self.named_steps())  # linear: 100,000 steps check
        duplicates = sorted(name for name, count in names.items() if count > 1)
        if duplicates:
            raise ValueError(f"two steps are named {duplicates[0]!r}: step names must be unique")
        joins = [s.join for s in self.steps if isinstance(s, JoinStepSpec)]
        if len(joins) > 1:
            raise ValueError("a pipeline joins at most one other stream (one 'join' step)")
        if joins and joins[0].stream == self.source.topic:
            raise ValueError(f"join: 'stream' {joins[0].stream!r} is the pipeline's own source")
        if joins and self.source.key is not None and self.source.key != joins[0].key:
            raise ValueError(
                f"join: 'key' ({', '.join(joins[0].key)}) differs from source.key "
                f"({', '.join(self.source.key)}): both streams are partitioned by the join key"
            )
        alert_names = [s.alert.name for s in self.steps if isinstance(s, AlertStepSpec)]
        if len(alert_names) != len(set(alert_names)):
            raise ValueError("two alerts have the same name")
        return self

    @property
    def dead_letter_topic(self) -> str:
        return self.dlq.topic if self.dlq else f"{self.pipeline}-dlq"

    def alert_topic(self, alert: AlertSpec) -> str:
        return alert.to or f"{self.pipeline}-alerts"

    def named_steps(self) -> list[tuple[str, StepSpec]]:
        """Each step with its name: its own `name`, else its kind, numbered when repeated.

        The name labels metrics and dead letters and names the step's state table
        (`<pipeline>.<name>`), so it must stay stable while the pipeline is edited.
        """
        seen: dict[str, int] = {}
        named: list[tuple[str, StepSpec]] = []
        for step in self.steps:
            name = step.explicit_name
            if name is None:
                seen[step.kind] = seen.get(step.kind, 0) + 1
                count = seen[step.kind]
                name = step.kind if count == 1 else f"{step.kind}_{count}"
            named.append((name, step))
        return named

    def output_formats(self) -> dict[str, tuple[str, str | None]]:
        """(format, schema file) of every topic the pipeline writes results to that is
        not JSON: the sink or each route target, and alert topics."""
        formats: dict[str, tuple[str, str | None]] = {}
        sink = self.sink
        if sink.topic is not None and sink.format != "json":
            formats[sink.topic] = (sink.format, sink.schema_file)
        for rule in sink.route or []:
            chosen = rule if rule.format != "json" else sink
            if chosen.format != "json":
                formats.setdefault(rule.topic, (chosen.format, chosen.schema_file))
        for step in self.steps:
            if isinstance(step, AlertStepSpec) and step.alert.format != "json":
                formats.setdefault(self.alert_topic(step.alert), (step.alert.format, None))
        return formats

    @property
    def join(self) -> JoinSpec | None:
        """The pipeline's join step, if it has one: its second input stream."""
        return next((s.join for s in self.steps if isinstance(s, JoinStepSpec)), None)

    def output_topics(self) -> list[str]:
        topics = [*self.sink.topics()]
        topics += [self.alert_topic(s.alert) for s in self.steps if isinstance(s, AlertStepSpec)]
        topics.append(self.dead_letter_topic)
        return list(dict.fromkeys(topics))
