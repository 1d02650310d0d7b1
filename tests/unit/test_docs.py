"""The docs agree with the code where a test can tell: the README stays a quick start, and
the loggers the docs name are loggers sluice creates."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_is_a_quick_start_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert "make run" in readme and "make test" in readme


def _loggers_in_code() -> set[str]:
    names = set()
    for module in (ROOT / "streams").rglob("*.py"):
        text = module.read_text()
        names |= set(re.findall(r'getLogger\("(sluice\.[a-z_.]+)"\)', text))
        per_step = re.findall(r'getLogger\(f"(sluice\.[a-z_.]+)\{', text)
        names |= {f"{prefix}<step>" for prefix in per_step}
    return names


def test_the_loggers_the_docs_name_exist() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    listed = re.search(r"`component` the logger \((.+?)\);", operations, re.S)
    assert listed, "docs/operations.md lists the loggers in the Logs section"
    named = set(re.findall(r"`(sluice\.[a-z_.<>]+)`", listed[1]))
    examples = operations + (ROOT / "streams" / "runtime" / "logs.py").read_text()
    named |= set(re.findall(r'"component": "(sluice\.[a-z_.]+)"', examples))
    named |= set(re.findall(r"WARNING (sluice\.[a-z_.]+) \[", examples))
    assert len(named) >= 3
    assert named <= _loggers_in_code(), named - _loggers_in_code()
