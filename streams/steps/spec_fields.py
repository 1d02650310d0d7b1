"""The fields of a pipeline spec that compile or import code: the loader's coercers.

`models` keeps the pipeline file's data and shape; what turns text into something that
runs is here: a filter, route or alert condition and a map or join field compile to an
`Expression` (streams.expressions), a window's or aggregate's `sum(eur)` parses to an
`AggregateCall`, `validate: {model: pkg.mod:Model}` and `component: {class: …}` import
the class. Importing this module completes the models (`model_rebuild` with these types),
so a validated spec holds compiled expressions and imported classes, ready for
`streams.steps.pipeline.Pipeline`; an error is pydantic's, so `sluice check` names file, line
and field as for any other. Code that validates specs imports `PipelineSpec` from here:
the import is what completes it.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Annotated, Any

from pydantic import BaseModel, PlainSerializer, PlainValidator
from pydantic_core import PydanticCustomError

from models import outputs, steps
from models.fields import invalid
from models.pipeline_spec import PipelineSpec
from streams.core.errors import ExpressionError
from streams.expressions import (
    AggregateCall,
    Expression,
    compile_condition,
    compile_expression,
    literal_expression,
    parse_aggregate,
)

__all__ = ["PipelineSpec", "import_object"]


def _expression_error(exc: ExpressionError) -> PydanticCustomError:
    return invalid("expression", str(exc))


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


def import_object(path: str) -> Any:
    """Import `package.module:Name`; errors say what to fix."""
    if not isinstance(path, str) or ":" not in path:
        raise invalid("import_path", f"expected 'package.module:Name', got {path!r}")
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a user module can fail to import in any way
        raise invalid(
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
            raise invalid("import_path", f"module {module_name!r} has no {attribute!r}{hint}")
        target = getattr(target, part)
    return target


def _to_model(value: Any) -> type[BaseModel]:
    if isinstance(value, type) and issubclass(value, BaseModel):
        return value
    target = import_object(value)
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        raise invalid("model", f"{value!r} is not a pydantic model class")
    return target


def _to_component(value: Any) -> type:
    if isinstance(value, type):
        return value
    target = import_object(value)
    if not isinstance(target, type):
        raise invalid("component", f"{value!r} is not a class")
    process = getattr(target, "process", None)
    if not callable(process):
        raise invalid("component", f"{value!r} has no process(self, record, ctx) method")
    if len(inspect.signature(process).parameters) < 3:
        raise invalid("component", f"{value!r}.process must take (self, record, ctx)")
    return target


def _source_of(value: Any) -> str:
    return getattr(value, "source", None) or repr(value)


def _class_path(value: type) -> str:
    return f"{value.__module__}:{value.__qualname__}"


Condition = Annotated[Expression, PlainValidator(_to_condition), PlainSerializer(_source_of)]
ValueExpression = Annotated[Expression, PlainValidator(_to_expression), PlainSerializer(_source_of)]
Aggregate = Annotated[AggregateCall, PlainValidator(_to_aggregate), PlainSerializer(_source_of)]
ModelClass = Annotated[type[BaseModel], PlainValidator(_to_model), PlainSerializer(_class_path)]
ComponentClass = Annotated[type, PlainValidator(_to_component), PlainSerializer(_class_path)]

# the names models.outputs and models.steps leave to the loader
_TYPES: dict[str, Any] = {
    "Condition": Condition,
    "ValueExpression": ValueExpression,
    "Aggregate": Aggregate,
    "ModelClass": ModelClass,
    "ComponentClass": ComponentClass,
    "Expression": Expression,
    "AggregateCall": AggregateCall,
}


def _complete_models() -> None:
    """Build every spec model with the coercers above, the parts before the whole."""
    parts: list[type[BaseModel]] = [
        outputs.RouteSpec,
        outputs.SinkSpec,
        steps.ValidateSpec,
        steps.WindowSpec,
        steps.AggregateSpec,
        steps.JoinSpec,
        steps.AlertSpec,
        steps.ComponentSpec,
        steps.ValidateStepSpec,
        steps.FilterStepSpec,
        steps.MapStepSpec,
        steps.DedupeStepSpec,
        steps.EnrichStepSpec,
        steps.RateLimitStepSpec,
        steps.WindowStepSpec,
        steps.AlertStepSpec,
        steps.ComponentStepSpec,
        steps.AggregateStepSpec,
        steps.JoinStepSpec,
        PipelineSpec,
    ]
    for model in parts:
        model.model_rebuild(force=True, _types_namespace=_TYPES)


_complete_models()
