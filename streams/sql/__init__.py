"""Pipelines written as ksqlDB-style statements (config/pipelines/NAME.sql): the SQL front end.

`statements` reads a file into statements (sqlglot tokenizes it and parses every SELECT);
`compiler` turns them into the same `PipelineSpec`s YAML files give (`tables` the windowed
aggregations, `joins` lookup-table joins, `catalog` the streams and their columns, `trees`
sqlglot helpers); `explain` prints them as YAML; `streams.offline` replays them. The
expressions inside statements and steps are `streams.expressions`, a leaf package below
this one. Nothing here imports the runtime: a worker gets SQL pipelines through
`streams.config.load_config` like YAML ones.
"""
