"""Pipelines written as ksqlDB-style statements (config/pipelines/NAME.sql): the SQL front end.

Parse -> compile -> pipeline spec, in layers (the `sql-front-end` import-linter contract in
pyproject.toml keeps the direction; no module imports one above it):

- parsing: `parser` reads a file into `statements` (sqlglot tokenizes it and parses every
  SELECT; `tokens` and `clauses` read what sqlglot does not: columns, WITH, WINDOW, WITHIN);
- what compilers share: `diagnostics` (errors at file offsets, one `Diagnostics` per
  statement), `catalog` (the streams defined so far), `properties` (WITH (...)), `scope`
  (the names a query may use, built by `from_clause`; `joins` and `stream_joins` for JOIN),
  `checks` (an expression compiles), `documents` (the YAML document, validated into a spec);
- one compiler per kind of statement: `declare` (a source or lookup table), `stream`
  (CREATE STREAM AS SELECT), `tables` (CREATE TABLE AS SELECT … GROUP BY, windowed or
  running, over `grouped` and `aggregates`);
- `compiler` compiles a file into a `program`; `explain` prints it as YAML.

`streams.offline` replays a file's pipelines as one graph. The expressions inside
statements and steps are `streams.expressions`, a leaf package below this one. Nothing
here imports the runtime: a worker gets SQL pipelines through `streams.config.loader.load_config`
like YAML ones.
"""
