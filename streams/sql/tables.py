"""`CREATE TABLE … AS SELECT … WINDOW … GROUP BY` compiled: a windowed aggregation."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from sqlglot import exp

from streams.durations import format_duration_ms
from streams.errors import ExpressionError
from streams.expressions import parse_aggregate
from streams.sql.catalog import (
    DERIVED_PROPERTIES,
    Column,
    Relation,
    identifier_of,
    needs_quotes,
)
from streams.sql.statements import Quiet, SqlError
from streams.sql.trees import (
    aggregate_name,
    build_column,
    column_parts,
    describe,
    is_aggregate,
    is_star,
    offset_of,
)

if TYPE_CHECKING:
    from streams.sql.compiler import StatementCompiler

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


class TableCompiler:
    """`CREATE TABLE t AS SELECT keys, aggregates FROM s [WHERE …] WINDOW … GROUP BY keys
    [HAVING …] [EMIT FINAL|CHANGES]`: validate → (enrich) → filter → window → filter → map.

    The window step computes every aggregate call the select list and HAVING make (an
    aggregate HAVING repeats is computed once); expressions over aggregates and renamed
    keys are a `map` after it, which also leaves out aggregates only HAVING uses."""

    def __init__(self, owner: StatementCompiler) -> None:
        self.owner = owner
        self.statement = owner.statement
        self.query = cast(exp.Select, owner.statement.query)
        self.relation: Relation
        self.qualifiers: set[str] = set()
        self.keys: list[Column] = []
        self.aggregates: dict[str, str] = {}  # window aggregate name -> call, e.g. sum(amount)
        self.named: dict[str, str] = {}  # call -> the first name it has
        self.hidden: list[str] = []  # aggregates no output column shows
        self.aliases: dict[str, exp.Expr] = {}  # select alias -> its value, for HAVING
        self.reserved: set[str] = set()

    def error(self, reason: str, node: exp.Expr | int) -> SqlError:
        offset = node if isinstance(node, int) else offset_of(node, self.owner.query_offset)
        return self.owner.error(reason, offset)

    def compile(self) -> None:
        owner, statement, query = self.owner, self.statement, self.query
        properties = owner.attempt(lambda: owner.properties(DERIVED_PROPERTIES, "a table")) or {}
        self.relation, self.qualifiers = owner.source_relation(query)
        if statement.partition_by is not None:
            owner.fail(
                self.error(
                    "PARTITION BY is for streams; a table is keyed by its GROUP BY columns",
                    statement.partition_offset,
                )
            )
        name = owner.attempt(owner.pipeline_name)
        where = owner.where_steps(query, self.relation, self.qualifiers)
        group = query.args.get("group")
        having = query.args.get("having")
        if not group:
            self.without_group_by(having)
            return
        if statement.window is None and owner.emit_mode() == "FINAL":
            assert statement.emit is not None
            owner.fail(
                self.error(
                    "EMIT FINAL needs a WINDOW (a running aggregate without one emits its "
                    "changes: EMIT CHANGES)",
                    statement.emit[1],
                )
            )
        keys = owner.attempt(lambda: self.group_keys(group))
        if keys is None:
            return
        self.keys = keys
        outputs = self.select_items()
        condition = owner.attempt(lambda: self.having(having)) if having is not None else None
        sink = owner.attempt(lambda: owner.sink(properties))
        if owner.failed or outputs is None or sink is None or name is None:
            return
        if not self.aggregates:
            raise self.error(
                "a table needs at least one aggregate, e.g. COUNT(*) AS n", owner.query_offset
            )
        enrich, tables = owner.join_document()
        steps = owner.validate_steps(self.relation) + enrich + where
        if statement.window is None:  # running aggregates per key (no window)
            steps.append({"aggregate": self.aggregate_document()})
        else:
            steps.append({"window": self.window_document()})
        if condition is not None:
            steps.append({"filter": condition})
        projection = self.projection(outputs)
        if projection is not None:
            steps.append({"map": projection})
        source = owner.source_document(self.relation, self.partition_key())
        document = owner.document(name, source, tables, steps, sink)
        columns = self.result_columns(outputs)
        output = Relation(statement.name, "table", sink[0], columns, statement)
        if "TIMESTAMP" in properties:
            output.timestamp = owner.output_timestamp(properties, output, self.relation, {})
        owner.finish(document, output)

    def without_group_by(self, having: exp.Expr | None) -> None:
        # one error for the one thing missing: HAVING names it best when present
        if having is not None:
            self.owner.fail(
                self.error(
                    "HAVING needs GROUP BY: … WINDOW … GROUP BY key HAVING condition",
                    self.statement.clause_offset("HAVING"),
                )
            )
            return
        for item in self.query.expressions:
            for node in item.walk():
                if is_aggregate(node):
                    self.owner.fail(
                        self.error(
                            f"aggregate {describe(node)} needs GROUP BY: a table aggregates "
                            "per key, e.g. … WINDOW TUMBLING (SIZE 1 MINUTE) GROUP BY user_id",
                            node,
                        )
                    )
                    return
        self.owner.fail(
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
            resolved = self.owner.resolve(node, self.relation, self.qualifiers, "GROUP BY")
            parts = column_parts(resolved) if isinstance(resolved, exp.Column) else []
            if len(parts) != 1:
                raise self.error(
                    f"GROUP BY {describe(node)}: group by a top-level column (compute nested "
                    "values in a derived stream first)",
                    node,
                )
            column = self.owner.known_column(self.relation, parts[0])
            assert column is not None  # resolve found it
            if any(k.name == column.name for k in keys):
                raise self.error(f"GROUP BY names '{column.name}' twice", node)
            keys.append(column)
        return keys

    def partition_key(self) -> tuple[str, ...]:
        """What a worker partitions the source by: the GROUP BY columns the stream has (a
        joined table's columns exist only after the join; they follow from the ON column)."""
        names = [k.name for k in self.keys]
        if self.relation.columns is None and self.owner.join is None:
            return tuple(names)
        own = [n for n in names if n in self.relation.names()]
        if not own and self.owner.join is not None:
            return self.owner.join.on
        return tuple(own)

    # -- aggregates

    def call(self, node: exp.Expr) -> str:
        """The window aggregate for an SQL aggregate call, e.g. `count_distinct(order_id)`."""
        name = cast(str, aggregate_name(node))
        upper = name.upper()
        for inner in node.walk():
            if inner is not node and is_aggregate(inner):
                raise self.error(f"aggregates cannot be nested: {describe(node)}", inner)

        def argument(value: exp.Expr | None) -> str:
            if value is None or is_star(value):
                raise self.error(f"{upper}(*): only COUNT(*) counts rows", node)
            if isinstance(value, exp.Distinct):
                raise self.error(
                    f"{upper}(DISTINCT …): DISTINCT works in COUNT(DISTINCT x) only", node
                )
            resolved = self.owner.resolve(value, self.relation, self.qualifiers, f"{upper}(…)")
            return resolved.sql()

        if isinstance(node, exp.Anonymous):
            args: list[exp.Expr] = list(node.expressions)
        else:
            args = [a for a in (node.this, *(node.args.get("expressions") or [])) if a is not None]
        if name == "count":
            inner = node.this
            if inner is None or isinstance(inner, exp.Star):
                text = "count()"
            elif isinstance(inner, exp.Distinct):
                if len(inner.expressions) != 1:
                    raise self.error("COUNT(DISTINCT …) takes one value", node)
                text = f"count_distinct({argument(inner.expressions[0])})"
            else:
                text = f"count({argument(inner)})"
        elif name == "percentile":
            if len(args) != 2:
                raise self.error(
                    "PERCENTILE takes a value and a fraction, e.g. PERCENTILE(amount, 0.9)", node
                )
            text = f"percentile({argument(args[0])}, {args[1].sql()})"
        else:
            if len(args) != 1:
                hint = {
                    "max": " (GREATEST(a, b) is the larger of values)",
                    "min": " (LEAST(a, b) is the smaller of values)",
                }.get(name, "")
                raise self.error(f"{upper}() takes one value{hint}", node)
            text = f"{name}({argument(args[0])})"
        try:
            parse_aggregate(text)
        except ExpressionError as exc:
            raise self.error(exc.reason, node) from None
        return text

    def reference(self, node: exp.Expr) -> exp.Column:
        """The window result's field holding an aggregate (a hidden one if no alias)."""
        text = self.call(node)
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
                if bound is not None and self.owner.known_column(self.relation, head) is None:
                    return build_column([exp.Identifier(this=bound, quoted=False)], head)
            resolved = self.owner.resolve(current, self.relation, self.qualifiers, where)
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
        owner = self.owner
        items = list(self.query.expressions)
        key_names = {k.name for k in self.keys}
        self.reserved = {i.alias for i in items if isinstance(i, exp.Alias)} | key_names
        # aggregates named by the select list first: HAVING and expressions reuse them
        for item in items:
            if isinstance(item, exp.Alias) and is_aggregate(item.this):
                alias = item.alias
                text = owner.attempt(functools.partial(self.call, item.this))
                if text is None or alias in self.aggregates:
                    continue
                if alias in key_names or alias in WINDOW_BOUNDS:
                    what = "a GROUP BY column" if alias in key_names else "the window's"
                    owner.fail(
                        self.error(f"'{alias}' is {what}: name the aggregate otherwise", item)
                    )
                    continue
                self.aggregates[alias] = text
                self.named.setdefault(text, alias)
        outputs: list[_Output] = []
        names: set[str] = set()
        for item in items:
            output = owner.attempt(functools.partial(self.select_item, item))
            if output is None:
                continue
            if output.column.name in names:
                owner.fail(
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
        return None if owner.failed else outputs

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
                self.owner.check_expression(value)
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
        return self.owner.check_expression(condition, condition=True)

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

    def bounds(self) -> tuple[str, ...]:
        """The window bounds a result carries (none without a window)."""
        return WINDOW_BOUNDS if self.statement.window is not None else ()

    def aggregate_document(self) -> dict[str, Any]:
        """`GROUP BY` without `WINDOW`: the `aggregate` step, an update per record."""
        names = [k.name for k in self.keys]
        return {
            "key": names if len(names) > 1 else names[0],
            "emit": "updates",
            "aggregates": dict(self.aggregates),
        }

    def window_document(self) -> dict[str, Any]:
        window = self.statement.window
        assert window is not None
        document: dict[str, Any] = {"type": window.kind}
        for slot, duration in (
            ("size", window.size),
            ("hop", window.advance),
            ("gap", window.gap),
            ("grace", window.grace),
        ):
            if duration is not None:
                document[slot] = format_duration_ms(duration.ms)
        names = [k.name for k in self.keys]
        document["key"] = names if len(names) > 1 else names[0]
        document["emit"] = "updates" if self.owner.emit_mode() == "CHANGES" else "final"
        document["aggregates"] = dict(self.aggregates)
        return document
