"""Loading settings and pipeline files, with every error tied to file, line and field."""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsError

from models.pipeline_spec import describe_bad_step
from models.settings import Settings
from streams.config.yaml_lines import YamlDocument, format_path, load_yaml, parse_yaml
from streams.core.errors import ConfigError, ConfigErrors
from streams.steps.spec_fields import PipelineSpec

SETTINGS_FILE = "sluice.yaml"
ENV_PREFIX = "SLUICE_"
# SLUICE_* variables that are not settings
_OTHER_VARIABLES = frozenset({"SLUICE_BROKER_BIN"})  # streams.runtime.broker: tansu's path
_DOCUMENT_START = re.compile(r"^---(\s|$)")
_STEP_KIND_ERRORS = {"step_kind", "union_tag_invalid", "union_tag_not_found"}


@dataclass(slots=True)
class LoadedConfig:
    """Settings and pipelines of one config directory, plus the errors found loading them."""

    config_dir: Path
    settings: Settings | None
    pipelines: dict[str, PipelineSpec] = field(default_factory=dict)
    pipeline_files: dict[str, Path] = field(default_factory=dict)
    documents: dict[str, YamlDocument] = field(default_factory=dict)
    errors: list[ConfigError] = field(default_factory=list)

    def require(self) -> tuple[Settings, dict[str, PipelineSpec]]:
        """The settings and pipelines, or ConfigErrors listing everything wrong."""
        if self.errors or self.settings is None:
            raise ConfigErrors(self.errors)
        return self.settings, self.pipelines


def validation_errors(exc: ValidationError, document: YamlDocument) -> list[ConfigError]:
    """pydantic's errors as ConfigErrors pointing at the YAML line of each field."""
    errors = []
    for error in exc.errors(include_url=False):
        path, dotted = document.resolve(_without_step_tag(error["loc"]))
        errors.append(
            ConfigError(
                _reason(error),
                file=document.file,
                line=document.line_of(path),
                field=dotted or None,
            )
        )
    return errors


def _without_step_tag(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    # a step's location is (steps, i, <union tag>, <kind field>, ...): tag and field are
    # both the step kind, but the YAML holds it once
    if len(loc) >= 4 and loc[0] == "steps" and isinstance(loc[1], int) and loc[2] == loc[3]:
        return (*loc[:2], *loc[3:])
    return loc


def _reason(error: Any) -> str:
    kind = error["type"]
    if kind in _STEP_KIND_ERRORS:
        return describe_bad_step(error.get("input"))
    if kind == "extra_forbidden":
        return f"unknown field {error['loc'][-1]!r}"
    if kind == "missing":
        return "required field is missing"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def load_pipeline(path: Path, display_name: str | None = None) -> PipelineSpec:
    """One pipeline file, validated; raises ConfigErrors with every problem in it."""
    return load_pipeline_document(path, display_name)[0]


def load_pipeline_document(
    path: Path, display_name: str | None = None
) -> tuple[PipelineSpec, YamlDocument]:
    """A pipeline file validated, with its YAML document (lines, for warnings)."""
    name = display_name or str(path)
    try:
        document = load_yaml(path, name)
    except ConfigError as exc:
        raise ConfigErrors([exc]) from None
    return pipeline_from_document(document), document


def pipeline_from_document(document: YamlDocument) -> PipelineSpec:
    data = document.data
    if not isinstance(data, dict):
        raise ConfigErrors(
            [
                ConfigError(
                    "a pipeline file is a mapping with pipeline, source, steps and sink",
                    file=document.file,
                    line=1,
                )
            ]
        )
    tables = data.get("tables")
    context: dict[str, Any] = {"tables": sorted(tables) if isinstance(tables, dict) else []}
    if document.file:  # `schema: FILE.avsc` is relative to the pipeline file
        context["base"] = str(Path(document.file).parent)
    try:
        return PipelineSpec.model_validate(data, context=context)
    except ValidationError as exc:
        raise ConfigErrors(validation_errors(exc, document)) from None


def load_settings(config_dir: Path) -> Settings:
    """`sluice.yaml` in `config_dir` (optional) overridden by SLUICE_* variables."""
    file = config_dir / SETTINGS_FILE
    document = YamlDocument(str(file), {})
    if file.exists():
        try:
            document = load_yaml(file)
        except ConfigError as exc:
            raise ConfigErrors([exc]) from None
    elif not config_dir.is_dir():
        raise ConfigErrors(
            [
                ConfigError(
                    "config directory not found: pass --config DIR "
                    "(the folder holding sluice.yaml)",
                    file=str(config_dir),
                )
            ]
        )
    data = document.data if document.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigErrors([ConfigError("settings must be a mapping", file=str(file), line=1)])
    return _settings(data, document)


def default_settings() -> Settings:
    """The built-in defaults overridden by SLUICE_* variables (no sluice.yaml)."""
    return _settings({}, YamlDocument("environment", {}))


def _settings(data: dict[str, Any], document: YamlDocument) -> Settings:
    unknown = unknown_variables(os.environ)
    if unknown:
        raise ConfigErrors(unknown)
    try:
        return Settings(**data)
    except SettingsError as exc:  # a SLUICE_* variable that is not valid JSON
        raise ConfigErrors(
            [ConfigError(f"{exc}: check the SLUICE_* variables", file="environment")]
        ) from None
    except ValidationError as exc:
        errors = []
        for error in validation_errors(exc, document):
            path = error.field or ""
            variable = ENV_PREFIX + path.replace(".", "__").upper()
            if variable in os.environ:
                errors.append(ConfigError(error.reason, file=f"environment {variable}"))
            else:
                errors.append(error)
        raise ConfigErrors(errors) from None


def settings_variables() -> list[str]:
    """Every SLUICE_* variable that sets something: SLUICE_WEB, SLUICE_WEB__PORT, …"""
    names = []
    for name, info in Settings.model_fields.items():
        variable = ENV_PREFIX + name.upper()
        names.append(variable)
        section = info.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            names.extend(f"{variable}__{child.upper()}" for child in section.model_fields)
    return names


def unknown_variables(environ: Mapping[str, str]) -> list[ConfigError]:
    """SLUICE_* variables that set nothing — a typo would otherwise be ignored, as an
    unknown key in sluice.yaml is not. Each error names the closest valid variable."""
    valid = settings_variables()
    known = {*valid, *_OTHER_VARIABLES}
    errors = []
    for name in sorted(environ):
        upper = name.upper()  # pydantic-settings reads variables case-insensitively
        if not upper.startswith(ENV_PREFIX) or upper in known:
            continue
        # compared without the prefix every name shares
        suffixes = [name.removeprefix(ENV_PREFIX) for name in valid]
        close = difflib.get_close_matches(upper.removeprefix(ENV_PREFIX), suffixes, n=1)
        hint = f" (did you mean {ENV_PREFIX}{close[0]}?)" if close else ""
        errors.append(
            ConfigError(
                f"unknown variable{hint}: SLUICE_* variables set the keys of sluice.yaml, "
                "nested with __ (e.g. SLUICE_WEB__PORT)",
                file=f"environment {name}",
            )
        )
    return errors


def make_importable(config_dir: Path) -> None:
    """Let pipelines import models and components that live beside the config directory."""
    for folder in (Path.cwd(), config_dir.resolve().parent):
        text = str(folder)
        if text not in sys.path:
            sys.path.insert(0, text)


def pipeline_files(directory: Path) -> list[Path]:
    """The pipeline files of a folder: YAML pipelines and SQL files (*.sql)."""
    return sorted([*directory.glob("*.yaml"), *directory.glob("*.yml"), *directory.glob("*.sql")])


def load_pipelines(path: Path, display_name: str | None = None) -> list[PipelineSpec]:
    """Every pipeline of one file: a YAML pipeline (or a YAML stream of them, as
    `sluice explain` prints), or the pipelines a .sql file compiles to."""
    return [spec for spec, _ in load_pipeline_documents(path, display_name)]


def load_pipeline_documents(
    path: Path, display_name: str | None = None
) -> list[tuple[PipelineSpec, YamlDocument | None]]:
    """`load_pipelines`, each pipeline with its YAML document (None for SQL): the lines
    `sluice check` points its warnings at."""
    if path.suffix.lower() == ".sql":
        from streams.sql.compiler import load_sql_file

        return [(spec, None) for spec in load_sql_file(path, display_name)]
    name = display_name or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return [load_pipeline_document(path, display_name)]  # it words the error
    documents = yaml_documents(text)
    if len(documents) <= 1:
        return [load_pipeline_document(path, display_name)]
    found: list[tuple[PipelineSpec, YamlDocument | None]] = []
    errors: list[ConfigError] = []
    for text_of_one in documents:
        try:
            document = parse_yaml(text_of_one, name)
            found.append((pipeline_from_document(document), document))
        except ConfigError as exc:
            errors.append(exc)
        except ConfigErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise ConfigErrors(errors)
    return found


def yaml_documents(text: str) -> list[str]:
    """The documents of a YAML stream (`---` lines between them), each padded with empty
    lines so that its line numbers stay the file's. Documents without content are left out."""
    lines = text.splitlines(keepends=True)
    documents: list[str] = []
    start = 0
    for end in [*(n for n, line in enumerate(lines) if _DOCUMENT_START.match(line)), len(lines)]:
        chunk = lines[start:end]
        if any(line.strip() and not line.lstrip().startswith("#") for line in chunk):
            documents.append("\n" * start + "".join(chunk))
        start = end + 1
    return documents


def load_config(config_dir: Path) -> LoadedConfig:
    """Settings and every pipeline of a config directory; collects all errors."""
    make_importable(config_dir)
    loaded = LoadedConfig(config_dir, None)
    try:
        loaded.settings = load_settings(config_dir)
    except ConfigErrors as exc:
        loaded.errors.extend(exc.errors)
        return loaded
    directory = config_dir / loaded.settings.pipelines_dir
    if not directory.is_dir():
        loaded.errors.append(
            ConfigError(
                f"pipelines_dir {loaded.settings.pipelines_dir!r} is not a directory ({directory})",
                file=str(config_dir / SETTINGS_FILE),
                field="pipelines_dir",
            )
        )
        return loaded
    for file in pipeline_files(directory):
        try:
            found = load_pipeline_documents(file)
        except ConfigErrors as exc:
            loaded.errors.extend(exc.errors)
            continue
        for spec, document in found:
            if spec.pipeline in loaded.pipelines:
                loaded.errors.append(
                    ConfigError(
                        f"pipeline {spec.pipeline!r} is also defined in "
                        f"{loaded.pipeline_files[spec.pipeline]}",
                        file=str(file),
                        line=1,
                        field="pipeline",
                    )
                )
                continue
            loaded.pipelines[spec.pipeline] = spec
            loaded.pipeline_files[spec.pipeline] = file
            if document is not None:
                loaded.documents[spec.pipeline] = document
    return loaded


__all__ = [
    "LoadedConfig",
    "format_path",
    "load_config",
    "load_pipeline",
    "load_pipeline_document",
    "load_pipeline_documents",
    "load_pipelines",
    "load_settings",
    "make_importable",
    "validation_errors",
]
