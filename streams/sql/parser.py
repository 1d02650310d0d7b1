"""The statements of a streaming SQL file, parsed.

sqlglot tokenizes the whole file (strings, quoted identifiers and comments as SQL has
them) and parses every SELECT. The statement around a SELECT and the clauses sqlglot does
not know (WINDOW …, EMIT …, PARTITION BY …) are read here from sqlglot's tokens, then
blanked out of the text sqlglot parses, which keeps everything else at its place: every
offset sqlglot reports is an offset of the file, so errors name the file's own line and
column.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

import sqlglot
from sqlglot import Token, Tokenizer, TokenType, exp
from sqlglot.errors import ParseError, TokenError

from streams.sql.clauses import ClauseParser
from streams.sql.diagnostics import SourceText, SqlError
from streams.sql.statements import EMIT_MODES, Name, Statement, StatementKind

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


class _StatementParser(ClauseParser):
    """One `CREATE …` statement: its head, then the clauses ClauseParser reads."""

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
