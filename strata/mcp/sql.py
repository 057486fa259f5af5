"""Run an agent's SQL on a branch through the proxy, within limits: a read-only
transaction unless writing was asked for (and allowed), a statement timeout that a
watchdog enforces even if the SQL changes the setting, and a cap on the rows and bytes
returned.

Reads stream rows and stop (cancelling the query) at the cap, so a ``SELECT *`` of a big
table never lands in the server's memory; writes run to completion first (a cancelled
``INSERT ... RETURNING`` would undo the insert) and only their returned rows are capped.
Several statements in one call run as a script; its last result is returned.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, cast

import psycopg
from psycopg import sql as pgsql

from common.errors import first_line

CONNECT_TIMEOUT_S = 120  # the proxy starts a stopped compute on connect
_WATCHDOG_GRACE_S = 2.0  # after the server's own statement_timeout had its chance


@dataclass(frozen=True)
class Limits:
    """Caps of one run_sql call."""

    max_rows: int
    max_bytes: int
    timeout_s: float


class SqlError(Exception):
    """PostgreSQL refused or failed the SQL; the message is its own."""


def run(uri: str, statement: str, *, write: bool, limits: Limits) -> dict[str, Any]:
    """Run ``statement`` on the database ``uri`` names; its result, capped."""
    started = time.monotonic()
    try:
        with psycopg.connect(uri, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            conn.read_only = not write
            timer = threading.Timer(limits.timeout_s + _WATCHDOG_GRACE_S, conn.cancel_safe)
            timer.start()
            try:
                with conn.transaction():
                    conn.execute(pgsql.SQL("SET LOCAL statement_timeout = {}").format(
                        int(limits.timeout_s * 1000)))
                    result = (_script(conn, statement, limits) if write
                              else _read(conn, statement, limits))
            finally:
                timer.cancel()
    except psycopg.Error as exc:
        raise SqlError(_message(exc)) from None
    return {**result, "read_only": not write,
            "elapsed_ms": round((time.monotonic() - started) * 1000, 1)}


class _Cut(Exception):
    """Rows reached a cap: the streaming query was cancelled; roll its savepoint back."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__("cut")
        self.result = result


def _read(conn: psycopg.Connection[Any], statement: str, limits: Limits) -> dict[str, Any]:
    """Stream one statement's rows up to the caps; several statements run as a script."""
    with conn.cursor() as cursor:
        try:
            with conn.transaction():  # a savepoint: a cut or a script starts again from it
                rows = cast(Generator[Any, None, None], cursor.stream(statement))
                try:
                    result = _capped(cursor, rows, limits)
                finally:
                    rows.close()  # at a cap: cancels the query and drains what came
                if result["truncated"]:
                    raise _Cut(result)
                return result
        except _Cut as cut:
            return cut.result
        except psycopg.errors.SyntaxError as exc:
            if "multiple commands" not in str(exc):
                raise
    return _script(conn, statement, limits)


def _script(conn: psycopg.Connection[Any], statement: str, limits: Limits) -> dict[str, Any]:
    """Run ``statement`` (one or several) to completion; the last result, capped."""
    with conn.cursor() as cursor:
        cursor.execute(statement.encode())  # bytes: no parameters, so any '%' stays as is
        while cursor.nextset():
            pass
        rows = iter(cursor.fetchall() if cursor.description else ())
        return _capped(cursor, rows, limits)


def _capped(cursor: psycopg.Cursor[Any], rows: Any, limits: Limits) -> dict[str, Any]:
    """The cursor's columns and ``rows`` up to ``limits``; whether and why they were cut."""
    kept: list[list[Any]] = []
    size = 0
    cut_by = None
    for row in rows:
        if len(kept) >= limits.max_rows:
            cut_by = "max_rows"
            break
        values = [_jsonable(value) for value in row]
        size += len(json.dumps(values, default=str))
        if size > limits.max_bytes:
            cut_by = "max_bytes"
            break
        kept.append(values)
    columns = [column.name for column in cursor.description or ()]
    return {"columns": columns, "rows": kept, "row_count": len(kept),
            "truncated": cut_by is not None, "truncated_by": cut_by,
            "status": cursor.statusmessage}


def _jsonable(value: Any) -> Any:
    """A column value as JSON holds it: numbers, text, booleans and null as they are,
    bytes as base64, everything else (numeric, dates, arrays, ...) as PostgreSQL's text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return str(value)


def _message(exc: psycopg.Error) -> str:
    """PostgreSQL's message (and SQLSTATE) on one line, or the driver's."""
    primary, state = exc.diag.message_primary, exc.diag.sqlstate
    if primary:
        return f"{primary} (SQLSTATE {state})" if state else primary
    return first_line(exc)
