"""SQL text to a sqlglot tree: nesting limits, positions for errors, the fields read."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlglot
from sqlglot import Tokenizer, TokenType, exp
from sqlglot.errors import ParseError, TokenError

from streams.core.errors import ExpressionError

# --- parsing ---------------------------------------------------------------------------


MAX_NESTING = 50
_NESTING_HELP = (
    f"expression too deeply nested (limit {MAX_NESTING}): parentheses, CASE, NOT and operator "
    "chains count; write a long OR list as x IN (...)"
)
# sqlglot's parser recurses ~20 Python frames per nesting level; the guard below makes
# room for MAX_NESTING levels without touching the C stack (Python-to-Python calls do not
# use it since 3.11)
_FRAMES_PER_LEVEL = 25


@contextmanager
def _nesting_guard(source: str) -> Iterator[None]:
    """Room on the Python stack for an expression of MAX_NESTING levels, and a
    RecursionError, should one still happen, reported as the nesting limit."""
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1  # type: ignore[assignment]
    needed = depth + MAX_NESTING * _FRAMES_PER_LEVEL + 200
    previous = sys.getrecursionlimit()
    if needed > previous:
        sys.setrecursionlimit(needed)
    try:
        yield
    except RecursionError:
        raise ExpressionError(_NESTING_HELP, str(source), None) from None
    finally:
        if needed > previous:
            sys.setrecursionlimit(previous)


_PREFIX_TOKENS = frozenset({TokenType.NOT, TokenType.DASH, TokenType.PLUS, TokenType.TILDE})
_VALUE_END_TOKENS = frozenset(
    {
        TokenType.VAR,
        TokenType.NUMBER,
        TokenType.STRING,
        TokenType.R_PAREN,
        TokenType.NULL,
        TokenType.TRUE,
        TokenType.FALSE,
        TokenType.END,
        TokenType.IDENTIFIER,
        TokenType.STAR,
    }
)


def _check_token_nesting(source: str) -> None:
    """Parentheses, CASE and prefix operators nested past MAX_NESTING, found from the
    tokens before sqlglot's recursive parser sees them."""
    upper = source.upper()
    openers = sum(source.count(c) for c in "(-+~") + upper.count("NOT") + upper.count("CASE")
    if openers <= MAX_NESTING:  # cannot nest that deep: skip tokenizing twice
        return
    try:
        tokens = Tokenizer().tokenize(source)
    except Exception:  # the parser reports syntax errors with their position
        return
    open_levels = 0
    prefix_run = 0
    previous: Any = None
    for token in tokens:
        kind = token.token_type
        if kind in (TokenType.L_PAREN, TokenType.CASE):
            open_levels += 1
        elif kind in (TokenType.R_PAREN, TokenType.END):
            open_levels = max(0, open_levels - 1)
        if kind in _PREFIX_TOKENS and previous not in _VALUE_END_TOKENS:
            prefix_run += 1
        else:
            prefix_run = 0
        if open_levels + prefix_run > MAX_NESTING:
            raise ExpressionError(_NESTING_HELP, source, token.start)
        previous = kind


def _tree_depth(tree: exp.Expr) -> int:
    deepest = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_NESTING:
            break
        stack.extend((child, depth + 1) for child in node.iter_expressions())
    return deepest


def _parse(source: str) -> exp.Expr:
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("empty expression", str(source), None)
    _check_token_nesting(source)
    try:
        tree = sqlglot.parse_one(source)
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        position = _offset(source, first.get("line"), first.get("col"))
        reason = str(first.get("description") or exc).split(" for <class")[0]
        raise ExpressionError(f"syntax error: {reason}", source, position) from None
    except TokenError:
        raise ExpressionError(
            "syntax error: unterminated quoted text or a character SQL does not allow", source, None
        ) from None
    if tree is None:
        raise ExpressionError("empty expression", source, None)
    if _tree_depth(tree) > MAX_NESTING:
        raise ExpressionError(_NESTING_HELP, source, None)
    return tree


def _offset(source: str, line: int | None, col: int | None) -> int | None:
    """sqlglot reports 1-based line/col of a token's end; turn it into a 0-based offset."""
    if line is None or col is None:
        return None
    lines = source.split("\n")
    offset = sum(len(text) + 1 for text in lines[: line - 1]) + col - 1
    return max(0, min(offset, len(source) - 1))


def _position(node: exp.Expr) -> int | None:
    """The earliest source offset of any token in `node` (sqlglot keeps some, not all)."""
    starts = [int(child.meta["start"]) for child in node.walk() if "start" in child.meta]
    return min(starts) if starts else None


def _column_path(node: exp.Expr) -> list[str] | None:
    if isinstance(node, exp.Column):
        parts = [node.args.get(k) for k in ("catalog", "db", "table", "this")]
        return [p.name for p in parts if p is not None]
    if isinstance(node, exp.Dot):
        head = _column_path(node.this)
        if head is None or not isinstance(node.expression, exp.Identifier):
            return None
        return [*head, node.expression.name]
    return None


def _only_field(tree: exp.Expr) -> str | None:
    """The field name when `tree` is a top-level field and nothing else."""
    path = _column_path(tree) if isinstance(tree, exp.Column) else None
    return path[0] if path is not None and len(path) == 1 else None


def _top_level_fields(tree: exp.Expr) -> frozenset[str]:
    names = set()
    for node in tree.walk():
        path = _column_path(node) if isinstance(node, exp.Column) else None
        if path:
            names.add(path[0])
    return frozenset(names)
