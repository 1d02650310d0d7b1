"""The clauses of a statement that sqlglot does not parse: declared columns, WITH (...)
properties, WINDOW … and WITHIN …; read from the statement's tokens."""

from __future__ import annotations

import difflib

from sqlglot import Token, TokenType

from streams.sql.diagnostics import SqlError
from streams.sql.statements import (
    COLUMN_TYPES,
    WINDOW_KINDS,
    ColumnDef,
    Duration,
    Name,
    Property,
    WindowClause,
    WindowKind,
    WithinClause,
)
from streams.sql.tokens import WORD, TokenCursor


class ClauseParser(TokenCursor):
    def parse_columns(self) -> list[ColumnDef]:
        opening = self.take()
        items = self.parenthesized_items(opening)
        if not items:
            raise self.error("a declared stream needs at least one column", opening)
        columns = [self.parse_column(item) for item in items]
        seen: dict[str, ColumnDef] = {}
        for column in columns:
            key = column.name.text.lower() if not column.name.quoted else column.name.text
            if column.name.text in seen or key in seen:
                raise SqlError(
                    f"column '{column.name.text}' is declared twice",
                    column.name.offset,
                    self.name,
                )
            seen[key] = seen[column.name.text] = column
        return columns

    def parse_column(self, tokens: list[Token]) -> ColumnDef:
        head = tokens[0]
        if head.token_type == TokenType.IDENTIFIER:
            name = Name(head.text, True, head.start)
        elif WORD.match(head.text) and head.token_type != TokenType.STRING:
            name = Name(head.text, False, head.start)
        else:
            raise self.error(f"expected a column name, got '{head.text}'", head)
        if len(tokens) < 2:
            raise self.error(f"column '{name.text}' needs a type, e.g. {name.text} VARCHAR", head)
        type_token = tokens[1]
        words = type_token.text.upper().split()  # none: a quoted blank, e.g. x ""
        base = words[0] if words else ""
        schema_type = COLUMN_TYPES.get(base)
        if schema_type is None:
            close = difflib.get_close_matches(base, list(COLUMN_TYPES), n=1) if base else []
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            shown = type_token.text if words else self.text[type_token.start : type_token.end + 1]
            raise self.error(
                f"column '{name.text}': unknown type '{shown}'{hint}; use one of "
                f"{', '.join(COLUMN_TYPES)}",
                type_token,
            )
        position = 2
        if position < len(tokens) and tokens[position].token_type in (
            TokenType.LT,
            TokenType.L_PAREN,
        ):
            depth = 0
            while position < len(tokens):
                kind = tokens[position].token_type
                depth += kind in (TokenType.LT, TokenType.L_PAREN)
                depth -= kind in (TokenType.GT, TokenType.R_PAREN)
                position += 1
                if depth == 0:
                    break
        end = tokens[position - 1].end
        sql_type = self.text[type_token.start : end + 1]
        required = False
        key = False
        while position < len(tokens):
            token = tokens[position]
            word = token.text.upper()
            following = tokens[position + 1].text.upper() if position + 1 < len(tokens) else ""
            if word == "NOT" and following == "NULL":
                required = True
                position += 2
            elif word == "NULL":
                position += 1
            elif word in ("KEY", "PRIMARY KEY"):
                key = True
                position += 1
            elif word == "PRIMARY" and following == "KEY":
                key = True
                position += 2
            else:
                raise self.error(
                    f"column '{name.text}': unexpected '{token.text}' after its type "
                    "(expected NOT NULL, KEY, ',' or ')')",
                    token,
                )
        return ColumnDef(name, sql_type, schema_type, required, key)

    def parse_properties(self) -> dict[str, Property]:
        self.take()  # WITH
        opening = self.expect(TokenType.L_PAREN, "(")
        properties: dict[str, Property] = {}
        for item in self.parenthesized_items(opening):
            head = item[0]
            if len(item) < 3 or item[1].token_type != TokenType.EQ:
                raise self.error(
                    f"expected NAME = 'value' in WITH (...), got '{head.text}"
                    f"{' ' + item[1].text if len(item) > 1 else ''}'",
                    head,
                )
            if len(item) > 3:
                raise self.error(
                    f"property {head.text}: one value, quoted: {head.text} = 'value'", item[3]
                )
            value_token = item[2]
            value = _property_value(value_token)
            if value is None:
                raise self.error(
                    f"property {head.text}: expected a quoted value, e.g. "
                    f"{head.text} = '{value_token.text}'",
                    value_token,
                )
            name = head.text.upper()
            if name in properties:
                raise self.error(f"property {name} is given twice", head)
            properties[name] = Property(name, value, head.start, value_token.start)
        return properties

    # -- the query

    def parse_within(self) -> WithinClause:
        """`WITHIN n UNIT [GRACE PERIOD n UNIT]` (the interval is symmetric)."""
        opening = self.take()
        taken: list[Token] = []
        while self.peek() is not None and len(taken) < 2:
            taken.append(self.take())
        within = self.parse_duration(taken, opening)
        grace = None
        if self.word() == "GRACE" and self.word(1) == "PERIOD":
            anchor = self.take()
            self.take()
            tokens = [self.take() for _ in range(2) if self.peek() is not None]
            grace = self.parse_duration(tokens, anchor)
        return WithinClause(within, grace, opening.start)

    def parse_window(self) -> WindowClause:
        window_token = self.take()
        kind_word = self.word()
        kinds = [k.upper() for k in WINDOW_KINDS]
        if kind_word not in kinds:
            close = difflib.get_close_matches(kind_word, kinds, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise self.error(
                f"expected TUMBLING, HOPPING or SESSION after WINDOW, got {self.where()}{hint}"
            )
        self.take()
        kind: WindowKind = WINDOW_KINDS[kinds.index(kind_word)]
        opening = self.expect(TokenType.L_PAREN, "(")
        found: dict[str, Duration] = {}
        for item in self.parenthesized_items(opening):
            words = [t.text.upper() for t in item]
            if words[:1] == ["SIZE"]:
                slot, rest = "size", item[1:]
            elif words[:2] == ["ADVANCE", "BY"]:
                slot, rest = "advance", item[2:]
            elif words[:2] == ["GRACE", "PERIOD"]:
                slot, rest = "grace", item[2:]
            elif words[:1] == ["RETENTION"]:
                slot, rest = "retention", item[1:]
            elif kind == "session" and item[0].token_type == TokenType.NUMBER:
                slot, rest = "gap", item
            else:
                expected = {
                    "tumbling": "SIZE d, GRACE PERIOD d",
                    "hopping": "SIZE d, ADVANCE BY d, GRACE PERIOD d",
                    "session": "a gap such as 5 MINUTES, GRACE PERIOD d",
                }[kind]
                raise self.error(
                    f"unexpected '{item[0].text}' in WINDOW {kind_word} (...); expected {expected}",
                    item[0],
                )
            if slot in found:
                raise self.error(f"WINDOW {kind_word}: {' '.join(words[:2])} given twice", item[0])
            found[slot] = self.parse_duration(rest, item[0])
        window = WindowClause(
            kind,
            window_token.start,
            size=found.get("size"),
            advance=found.get("advance"),
            gap=found.get("gap"),
            grace=found.get("grace"),
        )
        self.check_window(window, kind_word, opening)
        return window

    def check_window(self, window: WindowClause, kind_word: str, opening: Token) -> None:
        if window.kind in ("tumbling", "hopping") and window.size is None:
            raise self.error(
                f"WINDOW {kind_word} needs a SIZE, e.g. WINDOW {kind_word} (SIZE 1 MINUTE)", opening
            )
        if window.kind == "hopping" and window.advance is None:
            raise self.error(
                "WINDOW HOPPING needs ADVANCE BY, e.g. (SIZE 1 MINUTE, ADVANCE BY 10 SECONDS)",
                opening,
            )
        if window.kind != "hopping" and window.advance is not None:
            raise SqlError(
                f"ADVANCE BY is for HOPPING windows, not {kind_word}",
                window.advance.offset,
                self.name,
            )
        if window.kind == "session":
            if window.size is not None:
                raise SqlError(
                    "a SESSION window has a gap, not a SIZE: WINDOW SESSION (5 MINUTES)",
                    window.size.offset,
                    self.name,
                )
            if window.gap is None:
                raise self.error(
                    "WINDOW SESSION needs a gap, e.g. WINDOW SESSION (5 MINUTES)", opening
                )
        for slot in (window.size, window.advance, window.gap):
            if slot is not None and slot.ms <= 0:
                raise SqlError(f"{slot.text}: must be more than 0", slot.offset, self.name)
        if (
            window.advance is not None
            and window.size is not None
            and (window.advance.ms > window.size.ms)
        ):
            raise SqlError(
                f"ADVANCE BY {window.advance.text} is larger than SIZE {window.size.text}",
                window.advance.offset,
                self.name,
            )


def _property_value(token: Token) -> str | int | float | bool | None:
    kind = token.token_type
    if kind == TokenType.STRING:
        return token.text
    if kind == TokenType.NUMBER:
        try:
            return int(token.text)
        except ValueError:
            return float(token.text)
    if kind == TokenType.TRUE:
        return True
    if kind == TokenType.FALSE:
        return False
    return None
