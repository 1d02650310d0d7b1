"""The statements of a streaming SQL file, parsed.

The dialect is ksqlDB's: `CREATE STREAM name (columns) WITH (...)` declares a source;
`CREATE STREAM|TABLE name [WITH (...)] AS SELECT ...` derives one, a table with
`WINDOW TUMBLING|HOPPING|SESSION (...)` and `EMIT FINAL|CHANGES`. sqlglot tokenizes the
whole file (strings, quoted identifiers and comments as SQL has them) and parses every
SELECT. The statement around a SELECT and the clauses sqlglot does not know (WINDOW …,
EMIT …, PARTITION BY …) are read here from sqlglot's tokens, then blanked out of the text
sqlglot parses, which keeps everything else at its place: every offset sqlglot reports is
an offset of the file, so errors name the file's own line and column.
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import sqlglot
from sqlglot import Token, Tokenizer, TokenType, exp
from sqlglot.errors import ParseError, TokenError

from streams.errors import SluiceError

StatementKind = Literal["stream", "table"]
WindowKind = Literal["tumbling", "hopping", "session"]

# SQL column types -> the inline schema's types (DESIGN.md, "Streaming SQL")
COLUMN_TYPES: dict[str, str] = {
    "VARCHAR": "str",
    "STRING": "str",
    "TEXT": "str",
    "INT": "int",
    "INTEGER": "int",
    "BIGINT": "int",
    "DOUBLE": "float",
    "FLOAT": "float",
    "REAL": "float",
    "DECIMAL": "float",
    "BOOLEAN": "bool",
    "BOOL": "bool",
    "TIMESTAMP": "datetime",
    "ARRAY": "list",
    "MAP": "dict",
    "STRUCT": "dict",
}
DURATION_UNITS: dict[str, int] = {
    "MILLISECOND": 1,
    "MILLISECONDS": 1,
    "SECOND": 1000,
    "SECONDS": 1000,
    "MINUTE": 60_000,
    "MINUTES": 60_000,
    "HOUR": 3_600_000,
    "HOURS": 3_600_000,
    "DAY": 86_400_000,
    "DAYS": 86_400_000,
}
WINDOW_KINDS: tuple[WindowKind, ...] = ("tumbling", "hopping", "session")
EMIT_MODES = ("FINAL", "CHANGES")
_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NOT_A_NAME = frozenset(
    {TokenType.WITH, TokenType.ALIAS, TokenType.L_PAREN, TokenType.R_PAREN, TokenType.SELECT}
)
_CLAUSES = {
    TokenType.FROM: "FROM",
    TokenType.WHERE: "WHERE",
    TokenType.GROUP_BY: "GROUP BY",
    TokenType.HAVING: "HAVING",
}
_STATEMENT_START = re.compile(
    r"\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:STREAM|TABLE)\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r'(?P<name>"[^"]*"|[A-Za-z_][A-Za-z0-9_]*)',
    re.IGNORECASE,
)
# sqlglot's parse errors, in words for the person who wrote the query
_PARSE_ERRORS = {
    "Invalid expression / Unexpected token": "unexpected here",
    "Required keyword: 'expression' missing": "an operand is missing",
    "Expecting )": "expected ')'",
}
# clauses that end a PARTITION BY list
_CLAUSE_WORDS = frozenset({"EMIT", "WINDOW", "GROUP BY", "HAVING", "WHERE", "LIMIT"})


class SqlError(SluiceError):
    """A mistake in a SQL pipeline file: the reason, the 0-based offset in the file's text
    where it is, and the statement (its name, or its number when it has none yet)."""

    def __init__(self, reason: str, offset: int | None, statement: str | None = None) -> None:
        self.reason = reason
        self.offset = offset
        self.statement = statement
        super().__init__(reason)


class Quiet(SqlError):
    """A statement that cannot compile because of an error reported elsewhere (its source
    failed, or a sibling check already said why)."""

    def __init__(self) -> None:
        super().__init__("", None)


class SourceText:
    """A file's text with its line starts: 0-based offsets to 1-based line and column."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._starts = [0, *(i + 1 for i, char in enumerate(text) if char == "\n")]

    def line_col(self, offset: int) -> tuple[int, int]:
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self._starts, offset)
        return line, offset - self._starts[line - 1] + 1

    def offset(self, line: int, column: int) -> int:
        line = max(1, min(line, len(self._starts)))
        return self._starts[line - 1] + max(0, column - 1)


# --- what a statement is ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Name:
    """An identifier as written: quoted ones keep their case and must match exactly;
    unquoted ones match case-insensitively, as in ksqlDB."""

    text: str
    quoted: bool
    offset: int

    def matches(self, other: str) -> bool:
        return self.text == other if self.quoted else self.text.lower() == other.lower()


@dataclass(frozen=True, slots=True)
class ColumnDef:
    name: Name
    sql_type: str  # as written, e.g. ARRAY<VARCHAR>
    schema_type: str  # the inline schema's: str, int, float, bool, datetime, list, dict
    required: bool
    key: bool


@dataclass(frozen=True, slots=True)
class Property:
    name: str  # upper case
    value: str | int | float | bool
    offset: int
    value_offset: int


@dataclass(frozen=True, slots=True)
class Duration:
    ms: int
    text: str
    offset: int


@dataclass(frozen=True, slots=True)
class WindowClause:
    kind: WindowKind
    offset: int
    size: Duration | None = None
    advance: Duration | None = None
    gap: Duration | None = None
    grace: Duration | None = None


@dataclass(frozen=True, slots=True)
class WithinClause:
    """`JOIN … WITHIN d [GRACE PERIOD d]`: a join of two streams (ksqlDB's syntax)."""

    within: Duration
    grace: Duration | None
    offset: int


@dataclass(slots=True)
class Statement:
    """One `CREATE STREAM|TABLE` statement."""

    kind: StatementKind
    name: Name
    offset: int  # of CREATE
    number: int  # 1-based, in the file
    columns: list[ColumnDef] | None = None
    properties: dict[str, Property] = field(default_factory=dict)
    query: exp.Select | None = None
    query_offset: int = 0
    window: WindowClause | None = None
    within: WithinClause | None = None
    emit: tuple[str, int] | None = None  # ("FINAL" | "CHANGES", offset)
    partition_by: list[Name] | None = None
    partition_offset: int = 0
    clauses: dict[str, int] = field(default_factory=dict)  # FROM, WHERE, … -> offset

    def clause_offset(self, clause: str) -> int:
        return self.clauses.get(clause, self.query_offset)


# --- parsing ----------------------------------------------------------------------------


def parse_statements(text: str) -> tuple[list[Statement], list[SqlError]]:
    """Every statement of a file, and every error found (a statement with an error is
    left out; the others are still parsed, so one pass reports them all)."""
    errors: list[SqlError] = []
    try:
        tokens = Tokenizer().tokenize(text)
    except TokenError:
        # a quote that never closes swallows the rest of the file: name its statement,
        # and still read the statements before it
        error = _unterminated(text)
        errors.append(error)
        if error.offset is None:
            return [], errors
        starts = list(_STATEMENT_START.finditer(text, 0, error.offset))
        if starts:
            error.statement = starts[-1].group("name").strip('"')
            text = text[: starts[-1].start()]
        else:
            text = ""
        try:
            tokens = Tokenizer().tokenize(text)
        except TokenError:
            return [], errors
    statements: list[Statement] = []
    for number, chunk in enumerate(_split(tokens, errors), 1):
        try:
            statements.append(_StatementParser(text, chunk, number).parse())
        except SqlError as error:
            errors.append(error)
    return statements, errors


def _split(tokens: list[Token], errors: list[SqlError]) -> list[list[Token]]:
    """Tokens per statement: `;` ends one. A CREATE inside a statement means its `;` is
    missing: reported where it belongs, and the statements are still read apart."""
    chunks: list[list[Token]] = []
    current: list[Token] = []
    depth = 0
    for token in tokens:
        kind = token.token_type
        if kind == TokenType.SEMICOLON:
            if current:
                chunks.append(current)
            current, depth = [], 0
            continue
        if kind == TokenType.CREATE and current and depth == 0:
            previous = current[-1]
            errors.append(
                SqlError(
                    "missing ';' at the end of this statement (statements end with ;)",
                    previous.end + 1,
                    _name_guess(current),
                )
            )
            chunks.append(current)
            current = []
        depth += (kind == TokenType.L_PAREN) - (kind == TokenType.R_PAREN)
        current.append(token)
    if current:  # the last statement may omit its `;`
        chunks.append(current)
    return chunks


def _name_guess(tokens: list[Token]) -> str | None:
    for index, token in enumerate(tokens[:6]):
        if token.text.upper() in ("STREAM", "TABLE") and index + 1 < len(tokens):
            return tokens[index + 1].text
    return None


def _unterminated(text: str) -> SqlError:
    """sqlglot's tokenizer says only that it failed: find the quote that never closes."""
    index = 0
    while index < len(text):
        char = text[index]
        if text.startswith("--", index):
            end = text.find("\n", index)
            index = len(text) if end < 0 else end
        elif text.startswith("/*", index):
            end = text.find("*/", index + 2)
            if end < 0:
                return SqlError("unterminated /* comment", index)
            index = end + 2
        elif char in "'\"`":
            end = index + 1
            while True:
                end = text.find(char, end)
                if end < 0:
                    what = "text" if char == "'" else "identifier"
                    return SqlError(f"unterminated quoted {what}: {char} is never closed", index)
                if text.startswith(char * 2, end):
                    end += 2  # a doubled quote is an escaped one
                    continue
                break
            index = end + 1
        else:
            index += 1
    return SqlError("a character SQL does not allow", None)


def _blank(text: str) -> str:
    return re.sub(r"[^\n]", " ", text)


class _StatementParser:
    def __init__(self, text: str, tokens: list[Token], number: int) -> None:
        self.text = text
        self.tokens = tokens
        self.number = number
        self.index = 0
        self.name: str | None = None

    # -- cursor

    def peek(self, ahead: int = 0) -> Token | None:
        position = self.index + ahead
        return self.tokens[position] if position < len(self.tokens) else None

    def word(self, ahead: int = 0) -> str:
        token = self.peek(ahead)
        if token is None or token.token_type in (TokenType.STRING, TokenType.IDENTIFIER):
            return ""
        return token.text.upper()

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def error(self, reason: str, token: Token | None = None) -> SqlError:
        if token is None:
            token = self.peek()
        offset = token.start if token is not None else self.tokens[-1].end + 1
        return SqlError(reason, offset, self.name or str(self.number))

    def where(self) -> str:
        token = self.peek()
        return f"'{token.text}'" if token is not None else "the end of the statement"

    # -- statement

    def parse(self) -> Statement:
        first = self.take()
        if first.token_type != TokenType.CREATE:
            raise self.error(
                f"expected CREATE STREAM or CREATE TABLE, got '{first.text}' "
                "(a .sql pipeline file holds only CREATE statements)",
                first,
            )
        if self.word() == "OR" and self.word(1) == "REPLACE":
            self.index += 2
        kind_word = self.word()
        if kind_word not in ("STREAM", "TABLE"):
            close = difflib.get_close_matches(kind_word, ("STREAM", "TABLE"), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise self.error(f"expected STREAM or TABLE after CREATE, got {self.where()}{hint}")
        kind: StatementKind = "stream" if kind_word == "STREAM" else "table"
        self.take()
        if self.word() == "IF" and self.word(1) == "NOT" and self.word(2) == "EXISTS":
            self.index += 3
        name = self.parse_name(f"a name after CREATE {kind_word}")
        self.name = name.text
        statement = Statement(kind, name, first.start, self.number)
        token = self.peek()
        if token is not None and token.token_type == TokenType.L_PAREN:
            statement.columns = self.parse_columns()
        if self.word() == "WITH":
            statement.properties = self.parse_properties()
        if self.word() == "AS":
            as_token = self.take()
            if statement.columns is not None:
                raise self.error(
                    "a statement either declares columns or is AS SELECT, not both", as_token
                )
            self.parse_query(statement)
        elif self.peek() is not None:
            expected = "WITH (...), AS SELECT or ';'"
            if statement.columns is None and not statement.properties:
                expected = "(columns), WITH (...), AS SELECT or ';'"
            raise self.error(f"expected {expected}, got {self.where()}")
        return statement

    def parse_name(self, what: str) -> Name:
        token = self.peek()
        if token is None or token.token_type in _NOT_A_NAME:
            raise self.error(f"expected {what}, got {self.where()}")
        if token.token_type == TokenType.IDENTIFIER:
            self.take()
            return Name(token.text, True, token.start)
        if token.token_type == TokenType.STRING or not _WORD.match(token.text):
            raise self.error(
                f"expected {what}, got {self.where()} "
                '(names are words; quote others with double quotes: "my-name")'
            )
        self.take()
        return Name(token.text, False, token.start)

    def expect(self, kind: TokenType, text: str) -> Token:
        token = self.peek()
        if token is None or token.token_type != kind:
            raise self.error(f"expected '{text}', got {self.where()}")
        return self.take()

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

    def parenthesized_items(self, opening: Token) -> list[list[Token]]:
        """The comma-separated items up to the parenthesis that closes `opening`."""
        items: list[list[Token]] = []
        current: list[Token] = []
        depth = 0  # parentheses and angle brackets (ARRAY<STRUCT<a INT>>) inside
        while True:
            token = self.peek()
            if token is None:
                raise self.error("this '(' is never closed", opening)
            self.take()
            kind = token.token_type
            if kind == TokenType.R_PAREN and depth == 0:
                if current:
                    items.append(current)
                elif items:
                    raise self.error("expected another item after ','", token)
                return items
            if kind == TokenType.COMMA and depth == 0:
                if not current:
                    raise self.error("expected an item before ','", token)
                items.append(current)
                current = []
                continue
            if kind in (TokenType.L_PAREN, TokenType.LT):
                depth += 1
            elif kind in (TokenType.R_PAREN, TokenType.GT):
                depth -= 1
            current.append(token)

    def parse_column(self, tokens: list[Token]) -> ColumnDef:
        head = tokens[0]
        if head.token_type == TokenType.IDENTIFIER:
            name = Name(head.text, True, head.start)
        elif _WORD.match(head.text) and head.token_type != TokenType.STRING:
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

    def parse_query(self, statement: Statement) -> None:
        start = self.index
        first = self.peek()
        if first is None or first.token_type != TokenType.SELECT:
            raise self.error(f"expected SELECT after AS, got {self.where()}")
        statement.query_offset = first.start
        blanked: list[tuple[int, int]] = []
        depth = 0
        position = start
        while position < len(self.tokens):
            token = self.tokens[position]
            kind = token.token_type
            depth += (kind == TokenType.L_PAREN) - (kind == TokenType.R_PAREN)
            if depth == 0 and kind in _CLAUSES:
                statement.clauses.setdefault(_CLAUSES[kind], token.start)
            if depth == 0 and kind == TokenType.WINDOW:
                if statement.window is not None:
                    raise self.error("a query has one WINDOW clause", token)
                self.index = position
                statement.window = self.parse_window()
                blanked.append((token.start, self.tokens[self.index - 1].end))
                position = self.index
                continue
            if depth == 0 and kind == TokenType.VAR and token.text.upper() == "WITHIN":
                if statement.within is not None:
                    raise self.error("a query has one WITHIN clause", token)
                self.index = position
                statement.within = self.parse_within()
                blanked.append((token.start, self.tokens[self.index - 1].end))
                position = self.index
                continue
            if depth == 0 and kind == TokenType.VAR and token.text.upper() == "EMIT":
                self.index = position + 1
                mode = self.word()
                if mode not in EMIT_MODES:
                    close = difflib.get_close_matches(mode, EMIT_MODES, n=1)
                    hint = f" (did you mean '{close[0]}'?)" if close else ""
                    raise self.error(f"expected FINAL or CHANGES after EMIT{hint}")
                statement.emit = (mode, token.start)
                self.index += 1
                if self.peek() is not None:
                    raise self.error(
                        f"EMIT {mode} ends the statement; expected ';', got {self.where()}"
                    )
                blanked.append((token.start, self.tokens[self.index - 1].end))
                position = self.index
                continue
            if depth == 0 and kind == TokenType.PARTITION_BY:
                self.index = position + 1
                statement.partition_by = self.parse_partition_by()
                statement.partition_offset = token.start
                blanked.append((token.start, self.tokens[self.index - 1].end))
                position = self.index
                continue
            position += 1
        self.index = len(self.tokens)
        statement.query = self.parse_select(first.start, self.tokens[-1].end + 1, blanked)

    def parse_partition_by(self) -> list[Name]:
        names: list[Name] = []
        while True:
            names.append(self.parse_name("a column after PARTITION BY"))
            token = self.peek()
            if token is None or token.token_type != TokenType.COMMA:
                break
            self.take()
        if self.peek() is not None and self.word() not in _CLAUSE_WORDS:
            raise self.error(f"PARTITION BY takes columns; got {self.where()}")
        return names

    def parse_select(self, start: int, end: int, blanked: Sequence[tuple[int, int]]) -> exp.Select:
        body = self.text[start:end]
        for first, last in blanked:
            body = (
                body[: first - start]
                + _blank(body[first - start : last - start + 1])
                + (body[last - start + 1 :])
            )
        source = _blank(self.text[:start]) + body
        try:
            tree = sqlglot.parse_one(source)
        except ParseError as exc:
            detail = exc.errors[0] if exc.errors else {}
            reason = str(detail.get("description") or exc).split(" for <class")[0]
            reason = _PARSE_ERRORS.get(reason, reason)
            line, column = detail.get("line"), detail.get("col")
            highlight = str(detail.get("highlight") or "").strip()
            offset = None
            if isinstance(line, int) and isinstance(column, int):
                offset = SourceText(source).offset(line, column) - max(0, len(highlight) - 1)
            near = f" at '{highlight}'" if highlight else ""
            raise SqlError(f"syntax error{near}: {reason}", offset, self.name) from None
        except TokenError:
            raise SqlError("syntax error in the query", start, self.name) from None
        if not isinstance(tree, exp.Select):
            raise SqlError(
                "expected one SELECT (UNION, INTERSECT and the like are not supported)",
                start,
                self.name,
            )
        return tree

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

    def parse_duration(self, tokens: list[Token], anchor: Token) -> Duration:
        example = "e.g. 30 SECONDS"
        if not tokens:
            raise self.error(f"expected a duration after '{anchor.text}', {example}", anchor)
        number = tokens[0]
        if number.token_type != TokenType.NUMBER:
            raise self.error(
                f"invalid duration: expected a number, got '{number.text}' ({example})", number
            )
        if len(tokens) < 2:
            raise self.error(
                f"invalid duration '{number.text}': add a unit, e.g. {number.text} SECONDS",
                number,
            )
        unit_token = tokens[1]
        unit = unit_token.text.upper()
        size = DURATION_UNITS.get(unit)
        if size is None:
            close = difflib.get_close_matches(unit, list(DURATION_UNITS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise self.error(
                f"invalid duration: unknown unit '{unit_token.text}'{hint}; use MILLISECONDS, "
                "SECONDS, MINUTES, HOURS or DAYS",
                unit_token,
            )
        if len(tokens) > 2:
            raise self.error(
                f"unexpected '{tokens[2].text}' after the duration {number.text} {unit}", tokens[2]
            )
        try:
            amount = float(number.text)
        except ValueError:
            raise self.error(f"invalid duration: '{number.text}' is not a number", number) from None
        return Duration(round(amount * size), f"{number.text} {unit}", number.start)


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
