"""Streaming SQL: pipelines written as ksqlDB-style statements (config/pipelines/NAME.sql).

`statements` reads a file into statements (sqlglot tokenizes it and parses every SELECT);
`compiler` turns them into the same `PipelineSpec`s YAML files give (`tables` the windowed
aggregations, `joins` lookup-table joins, `catalog` the streams and their columns, `trees`
sqlglot helpers); `graph` replays a file's pipelines as one graph; `explain` prints them
as YAML. Nothing here imports the runtime: a worker gets SQL pipelines through
`streams.config.load_config` like YAML ones.
"""

from streams.sql.compiler import (
    CompiledPipeline,
    SqlProgram,
    compile_sql,
    load_sql_file,
    load_sql_program,
)
from streams.sql.statements import SqlError

__all__ = [
    "CompiledPipeline",
    "SqlError",
    "SqlProgram",
    "compile_sql",
    "load_sql_file",
    "load_sql_program",
]
