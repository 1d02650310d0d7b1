"""A compiled SQL file: its pipelines (statement, YAML document, spec), its streams, its
errors. What `streams.sql.compiler` returns, `sluice explain` prints and a replay reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streams.core.errors import ConfigError
from streams.sql.catalog import Relation, find_relation
from streams.sql.diagnostics import SourceText
from streams.sql.statements import Name, Statement
from streams.steps.spec_fields import PipelineSpec


@dataclass(frozen=True, slots=True)
class CompiledPipeline:
    """One pipeline of a SQL file: its statement, the YAML document, the spec."""

    name: str
    statement: Statement
    document: dict[str, Any]
    spec: PipelineSpec


@dataclass(frozen=True, slots=True)
class Compiled:
    """What one statement adds: the stream or table it defines, and its pipeline unless
    it only declares a topic."""

    relation: Relation
    pipeline: CompiledPipeline | None = None


@dataclass(slots=True)
class SqlProgram:
    """A compiled SQL file: its pipelines in statement order, every stream it names, and
    the errors found (a statement with an error yields no pipeline)."""

    file: str
    text: str = ""
    pipelines: list[CompiledPipeline] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    errors: list[ConfigError] = field(default_factory=list)

    def relation(self, name: str) -> Relation | None:
        return find_relation(self.relations, Name(name, False, 0))

    @property
    def sources(self) -> list[Relation]:
        """The declared streams: where a replay's input goes."""
        return [r for r in self.relations if r.kind == "source"]

    def specs(self) -> list[PipelineSpec]:
        return [p.spec for p in self.pipelines]

    def line_of(self, statement: Statement) -> int:
        return SourceText(self.text).line_col(statement.offset)[0]
