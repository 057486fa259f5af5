"""A point of a branch's history typed as one word, as ``strata connect BRANCH@POINT`` and
``strata branch changes --since POINT`` take it.

In this order: digits are an LSN (the page server's), ``X/Y`` a WAL position, a time as
``--at-time`` reads it (ISO 8601, ``now``, ``-10m``, ``10 minutes ago``), and any other
name a checkpoint.
"""

from __future__ import annotations

import re
from typing import Final

from common.client import HistoryPoint
from common.names import is_valid_name
from strata.cli.units import parse_time_us, parse_wal_lsn

_WAL: Final = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")
FORMS: Final = ("an LSN (digits), a WAL position (X/Y), a time (ISO 8601, now, -10m, "
                "'10 minutes ago') or a checkpoint name")


def parse_point(text: str) -> HistoryPoint:
    """The point ``text`` names; ValueError saying the forms if it names none."""
    typed = text.strip()
    if typed.isdigit():
        return HistoryPoint(lsn=int(typed))
    if _WAL.fullmatch(typed):
        return HistoryPoint(wal_lsn=parse_wal_lsn(typed))
    try:
        return HistoryPoint(time_us=parse_time_us(typed))
    except ValueError as exc:
        if is_valid_name(typed):
            return HistoryPoint(checkpoint=typed)
        raise ValueError(f"{text!r} is no point of history: give {FORMS}") from exc
