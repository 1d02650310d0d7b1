"""`sluice explain FILE.sql`: the pipelines a SQL file compiles to, as pipeline YAML."""

from __future__ import annotations

from pathlib import Path

import yaml

from streams.sql.compiler import load_sql_program


def explain(path: Path) -> list[tuple[str, str]]:
    """Each pipeline's name and YAML document (headed by a comment naming its statement).

    The documents are what the compiler validated into the specs, so `sluice check`
    accepts them and they replay as the SQL does. Raises ConfigErrors for a broken file.
    """
    program = load_sql_program(path)
    documents = []
    for compiled in program.pipelines:
        statement = compiled.statement
        kind = "STREAM" if statement.kind == "stream" else "TABLE"
        header = (
            f"# {path}:{program.line_of(statement)}: CREATE {kind} {compiled.name} AS SELECT …\n"
        )
        body = yaml.safe_dump(compiled.document, sort_keys=False, allow_unicode=True, width=100)
        documents.append((compiled.name, header + body))
    return documents
