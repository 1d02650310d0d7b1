"""A cursor over one statement's tokens (sqlglot's), with the reading every clause shares:
names, parenthesized lists, durations; its errors name the token they are about."""

from __future__ import annotations

import difflib
import re

from sqlglot import Token, TokenType

from streams.sql.diagnostics import SqlError
from streams.sql.statements import DURATION_UNITS, Duration, Name

WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NOT_A_NAME = frozenset(
    {TokenType.WITH, TokenType.ALIAS, TokenType.L_PAREN, TokenType.R_PAREN, TokenType.SELECT}
)


class TokenCursor:
    """The tokens of statement `number` of `text`, read front to back."""

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

    def expect(self, kind: TokenType, text: str) -> Token:
        token = self.peek()
        if token is None or token.token_type != kind:
            raise self.error(f"expected '{text}', got {self.where()}")
        return self.take()

    def parse_name(self, what: str) -> Name:
        token = self.peek()
        if token is None or token.token_type in NOT_A_NAME:
            raise self.error(f"expected {what}, got {self.where()}")
        if token.token_type == TokenType.IDENTIFIER:
            self.take()
            return Name(token.text, True, token.start)
        if token.token_type == TokenType.STRING or not WORD.match(token.text):
            raise self.error(
                f"expected {what}, got {self.where()} "
                '(names are words; quote others with double quotes: "my-name")'
            )
        self.take()
        return Name(token.text, False, token.start)

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
