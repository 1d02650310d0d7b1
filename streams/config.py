"""Loading settings and pipeline files, with every error tied to file, line and field."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

from models.pipeline import PipelineSpec, describe_bad_step
from models.settings import Settings
from streams.errors import ConfigError, ConfigErrors
from streams.yaml_lines import YamlDocument, format_path, load_yaml, parse_yaml

SETTINGS_FILE = "sluice.yaml"
_DOCUMENT_START = re.compile(r"^---(\s|$)")
_STEP_KIND_ERRORS = {"step_kind", "union_tag_invalid", "union_tag_not_found"}


@dataclass(slots=True)
class LoadedConfig:
    """Settings and pipelines of one config directory, plus the errors found loading them."""

    config_dir: Path
    settings: Settings | None
    pipelines: dict[str, PipelineSpec] = field(default_factory=dict)
    pipeline_files: dict[str, Path] = field(default_factory=dict)
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
    name = display_name or str(path)
    try:
        document = load_yaml(path, name)
    except ConfigError as exc:
        raise ConfigErrors([exc]) from None
    return pipeline_from_document(document)


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
    context = {"tables": sorted(tables) if isinstance(tables, dict) else []}
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
            variable = "SLUICE_" + path.replace(".", "__").upper()
            if variable in os.environ:
                errors.append(ConfigError(error.reason, file=f"environment {variable}"))
            else:
                errors.append(error)
        raise ConfigErrors(errors) from None


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
    if path.suffix.lower() == ".sql":
        from streams.sql.compiler import load_sql_file

        return load_sql_file(path, display_name)
    name = display_name or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return [load_pipeline(path, display_name)]  # it words the error
    documents = yaml_documents(text)
    if len(documents) <= 1:
        return [load_pipeline(path, display_name)]
    specs: list[PipelineSpec] = []
    errors: list[ConfigError] = []
    for document in documents:
        try:
            specs.append(pipeline_from_document(parse_yaml(document, name)))
        except ConfigError as exc:
            errors.append(exc)
        except ConfigErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise ConfigErrors(errors)
    return specs


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
            specs = load_pipelines(file)
        except ConfigErrors as exc:
            loaded.errors.extend(exc.errors)
            continue
        for spec in specs:
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
    return loaded


__all__ = [
    "LoadedConfig",
    "format_path",
    "load_config",
    "load_pipeline",
    "load_pipelines",
    "load_settings",
    "make_importable",
    "validation_errors",
]
