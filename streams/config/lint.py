"""Warnings from `sluice check`: configurations that are valid but will not do what their
author expects. A warning never fails the check (exit status 0).

- A key field (window, dedupe, ratelimit, alert) that an earlier `enrich` with
  `missing: keep` may leave null: every record whose row is missing becomes a `key` dead
  letter (the shipped payments-risk demo once dead-lettered 97% of its records so).
- Kafka credentials with `security_protocol: PLAINTEXT`: they are not used.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlglot
from sqlglot import exp

from models import pipeline_spec as spec
from models.settings import Settings
from streams.config.yaml_lines import YamlDocument
from streams.core.errors import ConfigError

WARNING = "warning: "
# calls that replace a NULL: their result is not missing when an argument is
_NULL_HANDLING = frozenset({"coalesce", "ifnull", "nvl", "if", "case"})


def pipeline_warnings(
    pipeline: spec.PipelineSpec, document: YamlDocument | None = None
) -> list[ConfigError]:
    """What may go wrong with a valid pipeline, each tied to the field to look at."""
    warnings: list[ConfigError] = []
    read = pipeline.source
    if read.format != "json" and not any(
        isinstance(step, spec.ValidateStepSpec) for step in pipeline.steps
    ):
        warnings.append(
            ConfigError(
                f"{WARNING}pipeline {pipeline.pipeline}: source topic {read.topic!r} is read as "
                f"{read.format}: its fields "
                "come from the schema registry at run time, so `sluice check` cannot check "
                "the field names the steps use (declare them to have them checked: a validate "
                "schema, or the columns of the SQL stream)",
                file=document.file if document is not None else None,
                line=document.line_of(("source", "format")) if document is not None else None,
                field="source.format",
            )
        )
    # field -> (index of the enrich step that may leave it null, table)
    maybe_missing: dict[str, tuple[int, str]] = {}
    for index, step in enumerate(pipeline.steps):
        if isinstance(step, spec.EnrichStepSpec):
            options = step.enrich
            if options.missing == "keep" and options.fields:
                for name in options.fields:
                    maybe_missing[name] = (index, options.table)
        elif isinstance(step, spec.MapStepSpec):
            maybe_missing = {
                out: maybe_missing[source]
                for out, expression in step.map.items()
                if (source := _missing_source(expression.source, maybe_missing)) is not None
            }
        elif isinstance(step, spec.FilterStepSpec):
            # a condition on the field drops its NULLs (or decides about them knowingly)
            for name in step.filter.fields:
                maybe_missing.pop(name, None)
        elif isinstance(step, spec.ValidateStepSpec):
            for name, type_name in (step.validate_.schema_ or {}).items():
                if not type_name.endswith("?"):
                    maybe_missing.pop(name, None)
        elif isinstance(step, spec.ComponentStepSpec):
            maybe_missing = {}  # a component may set anything
        else:
            keyed = _keyed(step)
            if keyed is None:
                continue
            kind, fields = keyed
            for name in fields:
                if name in maybe_missing:
                    warnings.append(
                        _missing_key_warning(index, kind, name, maybe_missing[name], document)
                    )
            for name in fields:
                maybe_missing.pop(name, None)
    return warnings


def _keyed(step: spec.StepSpec) -> tuple[str, Sequence[str]] | None:
    if isinstance(step, spec.WindowStepSpec):
        return "window", step.window.key or ()
    if isinstance(step, spec.DedupeStepSpec):
        return "dedupe", step.dedupe.key
    if isinstance(step, spec.RateLimitStepSpec):
        return "ratelimit", step.ratelimit.key
    if isinstance(step, spec.AlertStepSpec):
        return "alert", step.alert.key or ()
    return None


def _missing_source(source: str, maybe_missing: dict[str, tuple[int, str]]) -> str | None:
    """The maybe-missing field a map expression passes on (NULL in, NULL out), if any."""
    if source in maybe_missing:
        return source
    try:
        tree = sqlglot.parse_one(source)
    except Exception:  # compiled at validation already: a parse failure here is moot
        return None
    if tree is None:
        return None
    for node in tree.walk():
        name = ""
        if isinstance(node, exp.Anonymous):
            name = node.name.lower()
        elif isinstance(node, exp.Func):
            name = node.sql_name().lower()
        if name in _NULL_HANDLING or isinstance(node, exp.Case | exp.If | exp.Coalesce):
            return None
    for column in tree.find_all(exp.Column):
        if column.name in maybe_missing and not column.table:
            return column.name
    return None


def _missing_key_warning(
    index: int,
    kind: str,
    name: str,
    origin: tuple[int, str],
    document: YamlDocument | None,
) -> ConfigError:
    enrich_index, table = origin
    if kind == "alert":
        effect = "records without it share one alert state"
    else:
        effect = f"such records become `key` dead letters at this {kind}"
    path = ("steps", index, kind, "key")
    return ConfigError(
        f"{WARNING}key field {name!r} may be null: steps[{enrich_index}].enrich has "
        f"missing: keep, which leaves it null when table {table!r} has no row, and {effect}; "
        f"fill it in a map (e.g. {name}: \"COALESCE({name}, 'unknown')\") or use "
        "missing: drop or dlq",
        file=document.file if document is not None else None,
        line=document.line_of(path) if document is not None else None,
        field=f"steps[{index}].{kind}.key",
    )


def settings_warnings(
    settings: Settings, document: YamlDocument | None = None
) -> list[ConfigError]:
    kafka = settings.kafka
    warnings = []
    credentials = [
        name
        for name, value in (
            ("username", kafka.username),
            ("password", kafka.password),
            ("sasl_mechanism", kafka.sasl_mechanism),
        )
        if value is not None
    ]
    if credentials and kafka.security_protocol == "PLAINTEXT":
        path = ("kafka", "security_protocol")
        warnings.append(
            ConfigError(
                f"{WARNING}kafka.{' and kafka.'.join(credentials)} "
                f"{'is' if len(credentials) == 1 else 'are'} set but security_protocol is "
                "PLAINTEXT, which uses no credentials: set SASL_SSL (or SASL_PLAINTEXT, which "
                "sends the password unencrypted)",
                file=document.file if document is not None else None,
                line=document.line_of(path) if document is not None else None,
                field="kafka.security_protocol",
            )
        )
    return warnings
