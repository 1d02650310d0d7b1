"""`sluice check`: validate settings and pipeline files, reporting every error at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from streams.config.lint import pipeline_warnings, settings_warnings
from streams.config.loader import (
    SETTINGS_FILE,
    load_config,
    load_pipeline_documents,
    load_settings,
    make_importable,
    pipeline_files,
)
from streams.config.yaml_lines import YamlDocument, load_yaml
from streams.core.errors import ConfigError, ConfigErrors


@dataclass(slots=True)
class CheckReport:
    files: list[Path] = field(default_factory=list)
    pipelines: list[str] = field(default_factory=list)
    errors: list[ConfigError] = field(default_factory=list)
    warnings: list[ConfigError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def check(path: Path) -> CheckReport:
    """Check a config directory (sluice.yaml + pipelines), a folder of pipeline files, a
    single pipeline file, or a sluice.yaml.

    Never raises: whatever a file holds, the outcome is errors and warnings that name it
    (a bug in the checker included, reported as one error rather than a traceback)."""
    report = CheckReport()
    try:
        _check(path, report)
    except Exception as exc:
        report.errors.append(_internal_error(path, exc))
    return report


def _internal_error(path: Path, exc: Exception) -> ConfigError:
    return ConfigError(
        f"sluice could not check this ({type(exc).__name__}: {str(exc)[:200]}); please report it",
        file=str(path),
    )


def _check(path: Path, report: CheckReport) -> CheckReport:
    if not path.exists():
        report.errors.append(ConfigError("no such file or directory", file=str(path)))
        return report
    if path.is_dir() and (path / SETTINGS_FILE).exists():
        loaded = load_config(path)
        report.errors.extend(loaded.errors)
        report.files.append(path / SETTINGS_FILE)
        if loaded.settings is not None:
            directory = path / loaded.settings.pipelines_dir
            report.files.extend(pipeline_files(directory) if directory.is_dir() else [])
            report.warnings.extend(
                settings_warnings(loaded.settings, _document(path / SETTINGS_FILE))
            )
        report.pipelines.extend(loaded.pipelines)
        for name, spec in loaded.pipelines.items():
            report.warnings.extend(pipeline_warnings(spec, loaded.documents.get(name)))
        return report
    if path.is_dir():
        make_importable(path.parent if path.name == "pipelines" else path)
        files = pipeline_files(path)
        if not files:
            report.errors.append(
                ConfigError(
                    f"no {SETTINGS_FILE} and no pipeline files (*.yaml, *.sql) here", file=str(path)
                )
            )
        for file in files:
            _check_pipeline(file, report)
        return report
    if path.name == SETTINGS_FILE:
        report.files.append(path)
        try:
            settings = load_settings(path.parent)
        except ConfigErrors as exc:
            report.errors.extend(exc.errors)
        else:
            report.warnings.extend(settings_warnings(settings, _document(path)))
        return report
    make_importable(path.parent.parent)
    _check_pipeline(path, report)
    return report


def _check_pipeline(file: Path, report: CheckReport) -> None:
    report.files.append(file)
    try:
        found = load_pipeline_documents(file)
    except ConfigErrors as exc:
        report.errors.extend(exc.errors)
    except Exception as exc:  # a checker bug: name the file, go on with the others
        report.errors.append(_internal_error(file, exc))
    else:
        for spec, document in found:
            report.pipelines.append(spec.pipeline)
            report.warnings.extend(pipeline_warnings(spec, document))


def _document(file: Path) -> YamlDocument | None:
    try:
        return load_yaml(file)
    except ConfigError:
        return None
