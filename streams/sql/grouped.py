"""`CREATE TABLE t AS SELECT keys, aggregates FROM s … GROUP BY keys`: what a windowed
table and a running aggregate share. The select list and HAVING are read over the
aggregation's result record; `streams.sql.tables` says which step computes it."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

from sqlglot import exp

from streams.sql.aggregates import aggregate_call
from streams.sql.catalog import (
    DERIVED_PROPERTIES,
    Catalog,
    Column,
    Relation,
    identifier_of,
    needs_quotes,
)
from streams.sql.checks import check_expression
from streams.sql.diagnostics import Diagnostics, Quiet, SqlError
from streams.sql.documents import document, finish, source_document, validate_steps
from streams.sql.from_clause import read_from
from streams.sql.program import Compiled
from streams.sql.properties import Properties
from streams.sql.scope import Scope
from streams.sql.statements import Statement
from streams.sql.trees import build_column, column_parts, describe, is_aggregate, is_star

WINDOW_BOUNDS = ("window_start", "window_end")
# ksqlDB spells the window bounds WINDOWSTART / WINDOWEND
BOUND_NAMES = {"windowstart": "window_start", "windowend": "window_end"} | {
    b: b for b in WINDOW_BOUNDS
}


@dataclass(slots=True)
class _Output:
    column: Column
    value: exp.Expr  # over the window's result record
    kind: Literal["key", "aggregate", "computed"]
    key: Column | None = None  # for a key: the GROUP BY column it shows


class GroupedTable:
    """`CREATE TABLE t AS SELECT keys, aggregates FROM s [WHERE …] [WINDOW …] GROUP BY keys
    [HAVING …] [EMIT FINAL|CHANGES]`: validate → (enrich) → filter → the aggregation step
    (`step`) → filter → map.

    The step computes every aggregate call the select list and HAVING make (an aggregate
    HAVING repeats is computed once); expressions over aggregates and renamed keys are a
    `map` after it, which also leaves out aggregates only HAVING uses. Subclasses name the
    step, the bounds its results carry, and what EMIT may say."""

    def __init__(self, diagnostics: Diagnostics, catalog: Catalog, statement: Statement) -> None:
        self.diagnostics = diagnostics
        self.catalog = catalog
        self.statement = statement
        self.properties = Properties(diagnostics, statement, catalog)
        query = statement.query
        assert query is not None
        self.query = query
        self.scope: Scope
        self.relation: Relation
        self.keys: list[Column] = []
        self.aggregates: dict[str, str] = {}  # window aggregate name -> call, e.g. sum(amount)
        self.named: dict[str, str] = {}  # call -> the first name it has
        self.hidden: list[str] = []  # aggregates no output column shows
        self.aliases: dict[str, exp.Expr] = {}  # select alias -> its value, for HAVING
        self.reserved: set[str] = set()

    # -- what a kind of table says

    def check_emit(self) -> None:
        """Fail on an EMIT this kind of table cannot do."""

    def step(self) -> dict[str, Any]:
        """The aggregation step, e.g. {"window": {...}}."""
        raise NotImplementedError

    def bounds(self) -> tuple[str, ...]:
        """The fields every result carries besides keys and aggregates (window bounds)."""
        return ()

    # -- the statement

    def error(self, reason: str, node: exp.Expr | int) -> SqlError:
        return self.diagnostics.error_at(reason, node)

    def compile(self) -> Compiled | None:
        """The table and its pipeline; None when a check failed (its error collected)."""
        diagnostics, statement, query = self.diagnostics, self.statement, self.query
        properties = (
            diagnostics.attempt(lambda: self.properties.check(DERIVED_PROPERTIES, "a table")) or {}
        )
        self.scope = read_from(diagnostics, self.catalog, statement)
        self.relation = self.scope.relation
        if statement.partition_by is not None:
            diagnostics.fail(
                self.error(
                    "PARTITION BY is for streams; a table is keyed by its GROUP BY columns",
                    statement.partition_offset,
                )
            )
        name = diagnostics.attempt(self.properties.pipeline_name)
        where = self.scope.where_steps()
        group = query.args.get("group")
        having = query.args.get("having")
        if not group:
            self.without_group_by(having)
            return None
        self.check_emit()
        keys = diagnostics.attempt(lambda: self.group_keys(group))
        if keys is None:
            return None
        self.keys = keys
        outputs = self.select_items()
        condition = diagnostics.attempt(lambda: self.having(having)) if having is not None else None
        sink = diagnostics.attempt(lambda: self.properties.sink(properties))
        if diagnostics.failed or outputs is None or sink is None or name is None:
            return None
        if not self.aggregates:
            raise self.error(
                "a table needs at least one aggregate, e.g. COUNT(*) AS n", diagnostics.query_offset
            )
        enrich, tables = self.scope.join_document()
        steps = validate_steps(self.relation) + enrich + where
        steps.append(self.step())
        if condition is not None:
            steps.append({"filter": condition})
        projection = self.projection(outputs)
        if projection is not None:
            steps.append({"map": projection})
        source = source_document(self.relation, self.partition_key())
        found = document(name, source, tables, steps, sink)
        columns = self.result_columns(outputs)
        output = Relation(statement.name, "table", sink[0], columns, statement)
        if "TIMESTAMP" in properties:
            output.timestamp = self.properties.output_timestamp(
                properties, output, self.relation, {}
            )
        return finish(diagnostics, self.properties, found, output)

    def without_group_by(self, having: exp.Expr | None) -> None:
        # one error for the one thing missing: HAVING names it best when present
        if having is not None:
            self.diagnostics.fail(
                self.error(
                    "HAVING needs GROUP BY: … WINDOW … GROUP BY key HAVING condition",
                    self.statement.clause_offset("HAVING"),
                )
            )
            return
        for item in self.query.expressions:
            for node in item.walk():
                if is_aggregate(node):
                    self.diagnostics.fail(
                        self.error(
                            f"aggregate {describe(node)} needs GROUP BY: a table aggregates "
                            "per key, e.g. … WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY user_id",
                            node,
                        )
                    )
                    return
        self.diagnostics.fail(
            self.error(
                "CREATE TABLE … AS SELECT needs aggregates and GROUP BY, e.g. "
                "SELECT user_id, COUNT(*) AS n … GROUP BY user_id",
                self.statement.name.offset,
            )
        )

    def group_keys(self, group: exp.Group) -> list[Column]:
        keys: list[Column] = []
        for node in group.expressions:
            if not isinstance(node, exp.Column) or isinstance(node.this, exp.Star):
                raise self.error(
                    f"GROUP BY takes columns, not {describe(node)}: compute it as a column "
                    "of a derived stream first, then group by that column",
                    node,
                )
            resolved = self.scope.resolve(node, "GROUP BY")
            parts = column_parts(resolved) if isinstance(resolved, exp.Column) else []
            if len(parts) != 1:
                raise self.error(
                    f"GROUP BY {describe(node)}: group by a top-level column (compute nested "
                    "values in a derived stream first)",
                    node,
                )
            column = self.scope.known_column(parts[0])
            assert column is not None  # resolve found it
            if any(k.name == column.name for k in keys):
                raise self.error(f"GROUP BY names '{column.name}' twice", node)
            keys.append(column)
        return keys

    def partition_key(self) -> tuple[str, ...]:
        """What a worker partitions the source by: the GROUP BY columns the stream has (a
        joined table's columns exist only after the join; they follow from the ON column)."""
        names = [k.name for k in self.keys]
        join = self.scope.join
        if self.relation.columns is None and join is None:
            return tuple(names)
        own = [n for n in names if n in self.relation.names()]
        if not own and join is not None:
            return join.on
        return tuple(own)

    # -- aggregates

    def reference(self, node: exp.Expr) -> exp.Column:
        """The window result's field holding an aggregate (a hidden one if no alias)."""
        text = aggregate_call(self.diagnostics, self.scope, node)
        name = self.named.get(text)
        if name is None:
            number = len(self.hidden) + 1
            name = f"_agg{number}"
            while name in self.reserved or name in self.aggregates:
                number += 1
                name = f"_agg{number}"
            self.aggregates[name] = text
            self.named[text] = name
            self.hidden.append(name)
        return build_column([exp.Identifier(this=name, quoted=needs_quotes(name))])

    # -- the select list and HAVING, over the window's result record

    def key_named(self, name: exp.Identifier) -> Column | None:
        for key in self.keys:
            if key.name == name.name or (not name.quoted and key.name.lower() == name.name.lower()):
                return key
        return None

    def over_result(self, node: exp.Expr, where: str, *, aliases: bool) -> exp.Expr:
        """`node` rewritten over the window's result: aggregate calls become their fields,
        columns must be GROUP BY keys, window bounds (WINDOWSTART, window_end…) or, in
        HAVING, select aliases."""

        def visit(current: exp.Expr) -> exp.Expr:
            if is_aggregate(current):
                return self.reference(current)
            if not isinstance(current, exp.Column) or isinstance(current.this, exp.Star):
                return current
            parts = column_parts(current)
            head = parts[0]
            if len(parts) == 1:
                key = self.key_named(head)
                if key is not None:
                    return build_column([identifier_of(key)], head)
                value = self.aliases.get(head.name) if aliases else None
                if value is not None:
                    return value.copy()
                bound = BOUND_NAMES.get(head.name.lower())
                if bound is not None and self.scope.known_column(head) is None:
                    return build_column([exp.Identifier(this=bound, quoted=False)], head)
            resolved = self.scope.resolve(current, where)
            field = column_parts(resolved)[0].name if isinstance(resolved, exp.Column) else ""
            if any(k.name == field for k in self.keys):
                return resolved
            raise self.error(
                f"column '{field or head.name}' in {where} is neither in GROUP BY nor inside "
                f"an aggregate: add it to GROUP BY, or aggregate it, e.g. MAX({head.name})",
                current,
            )

        return node.transform(visit, copy=True)

    def select_items(self) -> list[_Output] | None:
        diagnostics = self.diagnostics
        items = list(self.query.expressions)
        key_names = {k.name for k in self.keys}
        self.reserved = {i.alias for i in items if isinstance(i, exp.Alias)} | key_names
        # aggregates named by the select list first: HAVING and expressions reuse them
        for item in items:
            if isinstance(item, exp.Alias) and is_aggregate(item.this):
                alias = item.alias
                call = functools.partial(aggregate_call, self.diagnostics, self.scope, item.this)
                text = diagnostics.attempt(call)
                if text is None or alias in self.aggregates:
                    continue
                if alias in key_names or alias in WINDOW_BOUNDS:
                    what = "a GROUP BY column" if alias in key_names else "the window's"
                    diagnostics.fail(
                        self.error(f"'{alias}' is {what}: name the aggregate otherwise", item)
                    )
                    continue
                self.aggregates[alias] = text
                self.named.setdefault(text, alias)
        outputs: list[_Output] = []
        names: set[str] = set()
        for item in items:
            output = diagnostics.attempt(functools.partial(self.select_item, item))
            if output is None:
                continue
            if output.column.name in names:
                diagnostics.fail(
                    self.error(
                        f"two output columns are named '{output.column.name}': give one "
                        "another alias",
                        item,
                    )
                )
                continue
            names.add(output.column.name)
            outputs.append(output)
            self.aliases.setdefault(output.column.name, output.value)
        return None if diagnostics.failed else outputs

    def select_item(self, item: exp.Expr) -> _Output | None:
        if is_star(item):
            raise self.error(
                "SELECT * has no meaning in a table: select the GROUP BY columns and aggregates",
                item,
            )
        if isinstance(item, exp.Alias):
            alias = item.args["alias"]
            column = Column(alias.name, bool(alias.quoted))
            if is_aggregate(item.this):
                if column.name not in self.aggregates:
                    raise Quiet()  # its error is reported already
                reference: exp.Expr = build_column([identifier_of(column)])
                return _Output(column, reference, "aggregate")
            value = self.over_result(item.this, "the select list", aliases=False)
            key = self.key_of(value)
            if key is None:
                check_expression(self.diagnostics, value)
            return _Output(column, value, "key" if key is not None else "computed", key)
        value = self.over_result(item, "the select list", aliases=False)
        key = self.key_of(value)
        if key is not None:
            return _Output(key, value, "key", key)
        if isinstance(value, exp.Column) and value.name in WINDOW_BOUNDS:
            return None  # always in a window's result
        example = "COUNT(*) AS n" if is_aggregate(item) else f"{describe(item)} AS x"
        raise self.error(f"{describe(item)} needs a name: add AS alias, e.g. {example}", item)

    def key_of(self, value: exp.Expr) -> Column | None:
        if isinstance(value, exp.Column) and len(column_parts(value)) == 1:
            return next((k for k in self.keys if k.name == value.name), None)
        return None

    def having(self, having: exp.Having) -> str:
        condition = self.over_result(having.this, "HAVING", aliases=True)
        return check_expression(self.diagnostics, condition, condition=True)

    def projection(self, outputs: list[_Output]) -> dict[str, str] | None:
        """The map after the window, or None when the window's result is the answer.

        Like the YAML window's, a result always carries the key columns (under their
        select-list names when renamed) and the window's bounds."""
        keys = [o for o in outputs if o.kind == "key"]
        renamed = any(o.key is not None and o.column.name != o.key.name for o in keys)
        repeated = len(keys) != len({o.key.name for o in keys if o.key is not None})
        computed = any(o.kind == "computed" for o in outputs)
        if not (self.hidden or renamed or repeated or computed):
            return None
        projection: dict[str, str] = {o.column.name: o.value.sql() for o in keys}
        shown = {o.key.name for o in keys if o.key is not None}
        for key in self.keys:
            if key.name not in shown:
                projection.setdefault(key.name, build_column([identifier_of(key)]).sql())
        for bound in self.bounds():
            projection.setdefault(bound, bound)
        for output in outputs:
            if output.kind != "key":
                projection[output.column.name] = output.value.sql()
        return projection

    def result_columns(self, outputs: list[_Output]) -> list[Column]:
        """The columns of the table's records, for the statements that read it."""
        columns = [o.column for o in outputs if o.kind == "key"]
        shown = {o.key.name for o in outputs if o.key is not None}
        columns += [k for k in self.keys if k.name not in shown]
        columns += [Column(bound, False) for bound in self.bounds()]
        return columns + [o.column for o in outputs if o.kind != "key"]
