"""SQL in sluice: the expressions inside steps, and pipelines written as ksqlDB-style
statements (config/pipelines/NAME.sql).

`expressions` parses (sqlglot) and compiles the expressions of filter, map, route, window
and alert steps into per-record closures and batch evaluators over `functions`, the SQL
function library. `statements` reads a file into statements (sqlglot tokenizes it and
parses every SELECT); `compiler` turns them into the same `PipelineSpec`s YAML files give
(`tables` the windowed aggregations, `joins` lookup-table joins, `catalog` the streams and
their columns, `trees` sqlglot helpers); `graph` replays a file's pipelines as one graph;
`explain` prints them as YAML. Nothing here imports the runtime: a worker gets SQL
pipelines through `streams.config.load_config` like YAML ones.

The package imports nothing itself: `models.pipeline` needs `expressions` while the
statement compiler needs `models.pipeline`.
"""
