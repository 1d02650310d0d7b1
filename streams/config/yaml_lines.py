"""YAML loading that remembers the line of every value, so config errors can name it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from streams.core.errors import ConfigError

PathKey = tuple[str | int, ...]


class _AliasFound(Exception):
    def __init__(self, anchor: str, line: int | None) -> None:
        super().__init__(anchor)
        self.anchor = anchor
        self.line = line


# libyaml's parser when PyYAML has it: ten times faster on a 100,000-step file
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _ConfigLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """YAML 1.2 booleans: only true/false. YAML 1.1 also reads on/off/yes/no as booleans,
    which turns `enrich: {on: user_id}` into `{True: user_id}`.

    No aliases (`*name`): each use of one is expanded, so nine lines of nested aliases
    ("billion laughs") expand to a billion values — `sluice check` ran 60 s and took
    1.25 GB before. `_refuse_aliases` finds the first one in the event stream, before
    anything is composed or expanded."""


_ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


@dataclass(slots=True)
class YamlDocument:
    """Parsed YAML data plus the 1-based line of every mapping key and list item."""

    file: str
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line_of(self, path: Iterable[str | int]) -> int | None:
        """The line of the deepest prefix of `path` that the document has."""
        key = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), 1)

    def resolve(self, loc: Iterable[str | int]) -> tuple[PathKey, str]:
        """Follow a pydantic error location through the data: keys the data has are kept,
        the rest (union tags, model names) dropped. Returns the path and its dotted form."""
        node = self.data
        path: list[str | int] = []
        for part in loc:
            in_dict = isinstance(node, dict) and part in node
            in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
            if in_dict or in_list:
                node = node[part]
                path.append(part)
            elif node is _ABSENT and isinstance(part, str):
                path.append(part)
            elif not isinstance(node, dict | list) or isinstance(part, int):
                continue
            elif isinstance(part, str) and _is_field_name(part) and isinstance(node, dict):
                # a missing field: name it and the rest of the location, so the user sees
                # what to add (or which SLUICE_* variable set it)
                path.append(part)
                node = _ABSENT
        return tuple(path), format_path(path)


_ABSENT: Any = object()


def _is_field_name(part: str) -> bool:
    return part.replace("_", "").replace("-", "").isalnum() and not part[:1].isupper()


def format_path(path: Iterable[str | int]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def load_yaml(path: Path, display_name: str | None = None) -> YamlDocument:
    """Load one YAML file. Syntax errors and duplicate keys raise ConfigError with the line."""
    name = display_name or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", file=name) from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} cannot be decoded",
            file=name,
            line=line,
        ) from None
    return parse_yaml(text, name)


def _refuse_aliases(text: str) -> None:
    for event in yaml.parse(text, Loader=_ConfigLoader):
        if isinstance(event, AliasEvent):
            mark = event.start_mark
            raise _AliasFound(str(event.anchor), mark.line + 1 if mark is not None else None)


def parse_yaml(text: str, name: str) -> YamlDocument:
    try:
        _refuse_aliases(text)
        root = yaml.compose(text, Loader=_ConfigLoader)
    except _AliasFound as alias:
        raise ConfigError(
            f"YAML aliases (*{alias.anchor}) are not supported: write the value out",
            file=name,
            line=alias.line,
        ) from None
    except RecursionError:
        raise ConfigError("YAML nested too deeply", file=name) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or "invalid YAML"
        raise ConfigError(f"YAML syntax error: {problem}", file=name, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML syntax error: {exc}", file=name) from None
    document = YamlDocument(name, None)
    if root is None:
        return document
    document.lines[()] = root.start_mark.line + 1
    try:
        document.data = _construct(root, (), document)
    except RecursionError:
        raise ConfigError("YAML nested too deeply", file=name) from None
    return document


_COLLECTION_TAGS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})


def _construct(node: Node, path: PathKey, document: YamlDocument) -> Any:
    if isinstance(node, MappingNode | SequenceNode) and node.tag not in _COLLECTION_TAGS:
        raise ConfigError(
            f"YAML tag {node.tag!r} is not supported: a config holds plain mappings, lists "
            "and values",
            file=document.file,
            line=node.start_mark.line + 1,
        )
    if isinstance(node, MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, document)
            if key == "<<":
                raise ConfigError(
                    "YAML merge keys (<<) are not supported",
                    file=document.file,
                    line=key_node.start_mark.line + 1,
                )
            if isinstance(key, list | dict):
                raise ConfigError(
                    "a mapping key must be a plain value",
                    file=document.file,
                    line=key_node.start_mark.line + 1,
                )
            if key in result:
                raise ConfigError(
                    f"duplicate key {key!r} (the earlier value would be silently lost)",
                    file=document.file,
                    line=key_node.start_mark.line + 1,
                )
            child = (*path, key)
            document.lines[child] = key_node.start_mark.line + 1
            result[key] = _construct(value_node, child, document)
        return result
    if isinstance(node, SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            child = (*path, index)
            document.lines[child] = item.start_mark.line + 1
            items.append(_construct(item, child, document))
        return items
    return _scalar(node, document)


def _scalar(node: Node, document: YamlDocument) -> Any:
    loader = _ConfigLoader("")
    try:
        return loader.construct_object(node, deep=not isinstance(node, ScalarNode))
    except yaml.MarkedYAMLError as exc:
        problem = exc.problem or "invalid value"
        raise ConfigError(
            f"YAML: {problem}", file=document.file, line=node.start_mark.line + 1
        ) from None
    except (ValueError, TypeError, OverflowError) as exc:  # 2026-13-45, a 5,000-digit int…
        raise ConfigError(
            f"YAML: cannot read the value {str(node.value)[:40]!r}: {exc}",
            file=document.file,
            line=node.start_mark.line + 1,
        ) from None
    finally:
        loader.dispose()
