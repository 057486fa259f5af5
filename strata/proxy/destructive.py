"""Which statements of a query destroy data, for undo: the careful look after the C
pre-filter (``strata/proxy/_suspect.c``) flagged a Query or Parse message.

Destructive: ``DROP`` of anything, ``TRUNCATE``, ``ALTER ... DROP`` (not ``DROP DEFAULT``,
``DROP NOT NULL``, ``DROP IDENTITY``, ``DROP EXPRESSION``), a ``DELETE`` or ``UPDATE``
without a ``WHERE`` at its own level (also inside a data-modifying CTE or after
``EXPLAIN ANALYZE``), and a ``DO`` block whose body names any of DROP, TRUNCATE, DELETE
or UPDATE (its dynamic SQL included). SQL-level prepared statements are read as what
they do to a session's prepared statements (``Prepared``): ``PREPARE name AS ...``
destroys nothing itself but says what its ``EXECUTE``s will, and ``DEALLOCATE`` and
``DISCARD ALL`` forget; ``strata.proxy.undo`` keeps the account. The lexer is the
pre-filter's (comments, the kinds of strings, quoted identifiers, parentheses, ``;``),
and every rule here is narrower than one there, so what this module finds the pre-filter
has flagged (tests/unit/test_destructive_sql.py checks both ways). Not seen: statements
that functions (also in ``CALL`` or ``SELECT f()``), triggers or rules run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

STATEMENT_CHARS: Final = 200  # what a finding keeps of its statement
_HARMLESS_DROPS: Final = frozenset({"DEFAULT", "NOT", "IDENTITY", "EXPRESSION"})
_BEFORE_SUBSTATEMENT: Final = frozenset({"AS", "ANALYZE", "ANALYSE", "VERBOSE", "BEGIN", "THEN",
                                         "ELSE", "LOOP"})
_TWO_WORD_OBJECTS: Final = frozenset({"MATERIALIZED", "FOREIGN", "ACCESS", "EVENT", "TEXT",
                                      "USER", "OWNED"})
_SPACES: Final = re.compile(r"\s+")
# In a DO block's body anywhere, also in the strings of its dynamic SQL (EXECUTE '...').
_DESTROYING_WORD: Final = re.compile(r"(?<![A-Za-z0-9_$\x80-\U0010ffff])"
                                     r"(?i:drop|truncate|delete|update)"
                                     r"(?![A-Za-z0-9_$\x80-\U0010ffff])", re.ASCII)
_ASCII_UPPER: Final = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class Finding:
    """A statement that destroys data: its kind (``drop-table``, ``truncate``,
    ``alter-table-drop``, ``delete-all``, ``update-all``, ``do-block``) and its text
    (whitespace collapsed, truncated)."""

    kind: str
    statement: str


@dataclass(frozen=True)
class Prepared:
    """A statement about SQL-level prepared statements: ``prepare`` (``found``: what the
    prepared statement destroys each time it runs), ``execute``, or ``deallocate``
    (``name`` None: all of them). ``name`` is as PostgreSQL keys it: folded to lower
    case unless quoted, so it matches the protocol's statement names."""

    verb: str
    name: str | None
    found: tuple[Finding, ...] = ()


@dataclass(frozen=True)
class _Token:
    # "word" (ASCII upper-cased, as PostgreSQL folds keywords), "string" (its body),
    # "(", ")", ";" or "other"
    kind: str
    text: str
    start: int
    end: int


def findings(sql: str) -> list[Finding]:
    """The destructive statements of ``sql``, in order (``EXECUTE``s not resolved)."""
    return [item for item in read(sql) if isinstance(item, Finding)]


def read(sql: str) -> list[Finding | Prepared]:
    """The statements of ``sql`` that destroy data or concern prepared statements, in
    order; read both ways when a string holds a backslash (standard_conforming_strings
    on or off), as the pre-filter does."""
    found, backslash = _read(sql, backslash=False)
    if not any(isinstance(item, Finding) for item in found) and backslash:
        found, _ = _read(sql, backslash=True)
    return found


def _read(sql: str, *, backslash: bool) -> tuple[list[Finding | Prepared], bool]:
    saw: list[bool] = []
    tokens = list(_tokens(sql, backslash, saw))
    found: list[Finding | Prepared] = []
    statement: list[_Token] = []
    for token in [*tokens, _Token(";", ";", len(sql), len(sql))]:
        if token.kind != ";":
            statement.append(token)
            continue
        if statement:
            item = (_prepared(statement, sql) if statement[0].text == "PREPARE"
                    else _finding(statement, sql) or _prepared(statement, sql))
            if item is not None:
                found.append(item)
        statement = []
    return found, bool(saw)


def _finding(statement: list[_Token], sql: str) -> Finding | None:
    kind = _classify(statement)
    if kind is None:
        return None
    text = sql[statement[0].start:statement[-1].end]
    return Finding(kind, _SPACES.sub(" ", text)[:STATEMENT_CHARS])


def _prepared(statement: list[_Token], sql: str) -> Prepared | None:
    """``PREPARE``, ``EXECUTE`` (also after ``EXPLAIN ANALYZE`` or ``CREATE TABLE ... AS``),
    ``DEALLOCATE`` or ``DISCARD ALL``; None for any other statement."""
    words = [t.text if t.kind == "word" else "" for t in statement]
    if words[0] == "PREPARE" and len(statement) > 1:
        as_at = next((i for i, w in enumerate(words) if w == "AS"), len(statement))
        body = _finding(statement[as_at + 1:], sql) if as_at + 1 < len(statement) else None
        return Prepared("prepare", _name(statement[1], sql), (body,) if body else ())
    if words[0] == "DEALLOCATE":
        named = [t for t in statement[1:] if not (t.kind == "word" and t.text == "PREPARE")]
        everything = not named or (named[0].kind == "word" and named[0].text == "ALL")
        return Prepared("deallocate", None if everything else _name(named[0], sql))
    if words[:2] == ["DISCARD", "ALL"]:
        return Prepared("deallocate", None)
    for index, word in enumerate(words[:-1]):
        previous = statement[index - 1] if index else None
        if word == "EXECUTE" and (previous is None or previous.kind == ")" or (
                previous.kind == "word" and previous.text in _BEFORE_SUBSTATEMENT)):
            return Prepared("execute", _name(statement[index + 1], sql))
    return None


def _name(token: _Token, sql: str) -> str:
    """An identifier as PostgreSQL keys it: a quoted one as written, else ASCII lower case."""
    text = sql[token.start:token.end]
    if text.startswith('"'):
        return text[1:-1].replace('""', '"')
    return text.translate(_ASCII_LOWER)


def _classify(statement: list[_Token]) -> str | None:
    """The kind of destruction ``statement`` does, or None."""
    first = statement[0].text if statement[0].kind == "word" else ""
    words = [t.text for t in statement if t.kind == "word"]
    if first == "DROP":
        return "drop-" + _object_of(words[1:])
    if first == "TRUNCATE":
        return "truncate"
    if first == "ALTER" and _alter_drops(statement):
        return "alter-" + _object_of(words[1:]) + "-drop"
    if first == "DO":
        bodies = [t.text for t in statement if t.kind == "string"]
        return "do-block" if bodies and _DESTROYING_WORD.search(bodies[0]) else None
    return _unbounded_change(statement)


def _object_of(words: list[str]) -> str:
    """``table``, ``schema``, ``materialized-view`` ... from the words after the verb."""
    if not words:
        return "object"
    taken = words[:2] if words[0] in _TWO_WORD_OBJECTS and len(words) > 1 else words[:1]
    name = "-".join(re.sub(r"[^a-z0-9]", "", w.lower()) for w in taken).strip("-")
    return name or "object"


def _alter_drops(statement: list[_Token]) -> bool:
    """Whether an ALTER drops something other than a default, NOT NULL, identity or
    generation expression, at its top level."""
    depth = 0
    for index, token in enumerate(statement):
        depth += (token.kind == "(") - (token.kind == ")")
        if depth == 0 and token.kind == "word" and token.text == "DROP":
            after = statement[index + 1] if index + 1 < len(statement) else None
            if after is None or after.kind != "word" or after.text not in _HARMLESS_DROPS:
                return True
    return False


def _unbounded_change(statement: list[_Token]) -> str | None:
    """``delete-all`` or ``update-all`` for the first DELETE or UPDATE that begins a
    (sub)statement and has no WHERE at its own level."""
    previous: _Token | None = None
    for index, token in enumerate(statement):
        begins = previous is None or previous.kind in ("(", ")") or (
            previous.kind == "word" and previous.text in _BEFORE_SUBSTATEMENT)
        if (begins and token.kind == "word" and token.text in ("DELETE", "UPDATE")
                and not _has_where(statement[index + 1:])):
            return "delete-all" if token.text == "DELETE" else "update-all"
        previous = token
    return None


def _has_where(rest: list[_Token]) -> bool:
    """Whether a WHERE follows at the level ``rest`` starts at, before that level ends."""
    depth = 0
    for token in rest:
        if token.kind == "(":
            depth += 1
        elif token.kind == ")":
            depth -= 1
            if depth < 0:
                return False
        elif depth == 0 and token.kind == "word" and token.text == "WHERE":
            return True
    return False


def _is_ident_start(char: str) -> bool:
    return ("a" <= char.lower() <= "z") or char == "_" or char >= "\x80"


def _is_tag_char(char: str) -> bool:
    return _is_ident_start(char) or "0" <= char <= "9"


def _skip_string(sql: str, at: int, backslash: bool, saw: list[bool] | None) -> int:
    """The end of a '...' string whose body starts at ``at``."""
    while at < len(sql):
        char = sql[at]
        if char == "\\":
            if saw is not None:
                saw.append(True)
            at += 2 if backslash else 1
        elif char == "'":
            if sql[at + 1:at + 2] == "'":
                at += 2
            else:
                return at + 1
        else:
            at += 1
    return len(sql)


def _tokens(sql: str, backslash: bool, saw: list[bool]) -> Iterator[_Token]:
    """PostgreSQL's lexing as far as undo needs it, as the pre-filter does it."""
    at, end = 0, len(sql)
    while at < end:
        char = sql[at]
        if char in " \t\n\r\f\v":
            at += 1
        elif sql.startswith("--", at):
            newline = sql.find("\n", at)
            at = end if newline < 0 else newline
        elif sql.startswith("/*", at):
            level, at = 1, at + 2
            while at < end and level:
                if sql.startswith("/*", at):
                    level, at = level + 1, at + 2
                elif sql.startswith("*/", at):
                    level, at = level - 1, at + 2
                else:
                    at += 1
        elif char == "'":
            close = _skip_string(sql, at + 1, backslash, saw)
            yield _Token("string", sql[at + 1:close - 1].replace("''", "'"), at, close)
            at = close
        elif char == '"':
            close = at + 1
            while close < end:
                if sql[close] == '"':
                    if sql[close + 1:close + 2] == '"':
                        close += 2
                        continue
                    close += 1
                    break
                close += 1
            yield _Token("other", sql[at:close], at, close)
            at = close
        elif char == "$":
            tag_end = at + 1
            if tag_end < end and _is_ident_start(sql[tag_end]):
                while tag_end < end and _is_tag_char(sql[tag_end]):
                    tag_end += 1
            if tag_end < end and sql[tag_end] == "$":
                tag = sql[at:tag_end + 1]
                close = sql.find(tag, tag_end + 1)
                body_end = end if close < 0 else close
                yield _Token("string", sql[tag_end + 1:body_end], at,
                             end if close < 0 else close + len(tag))
                at = end if close < 0 else close + len(tag)
            else:
                yield _Token("other", "$", at, at + 1)
                at += 1
        elif _is_ident_start(char):
            start = at
            while at < end and (_is_tag_char(sql[at]) or sql[at] == "$"):
                at += 1
            if at - start == 1 and char in "eE" and sql[at:at + 1] == "'":
                close = _skip_string(sql, at + 1, True, None)
                yield _Token("string", sql[at + 1:close - 1], start, close)
                at = close
            else:
                yield _Token("word", sql[start:at].translate(_ASCII_UPPER), start, at)
        else:
            yield _Token(char if char in "();" else "other", char, at, at + 1)
            at += 1
