"""`sluice check`: validate settings and pipeline files, reporting every error at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from streams.config import (
    SETTINGS_FILE,
    load_config,
    load_pipelines,
    load_settings,
    make_importable,
    pipeline_files,
)
from streams.errors import ConfigError, ConfigErrors


@dataclass(slots=True)
class CheckReport:
    files: list[Path] = field(default_factory=list)
    pipelines: list[str] = field(default_factory=list)
    errors: list[ConfigError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def check(path: Path) -> CheckReport:
    """Check a config directory (sluice.yaml + pipelines), a folder of pipeline files, a
    single pipeline file, or a sluice.yaml."""
    report = CheckReport()
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
        report.pipelines.extend(loaded.pipelines)
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
            load_settings(path.parent)
        except ConfigErrors as exc:
            report.errors.extend(exc.errors)
        return report
    make_importable(path.parent.parent)
    _check_pipeline(path, report)
    return report


def _check_pipeline(file: Path, report: CheckReport) -> None:
    report.files.append(file)
    try:
        specs = load_pipelines(file)
    except ConfigErrors as exc:
        report.errors.extend(exc.errors)
    else:
        report.pipelines.extend(spec.pipeline for spec in specs)
