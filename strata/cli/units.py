"""Conversions between what people type or read and what the API speaks.

PostgreSQL WAL positions (``X/Y`` hex), wall-clock times (microseconds since the epoch),
byte counts (``38.2 MB``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SIZE_UNITS = ("kB", "MB", "GB", "TB", "PB")
_WAL_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")


def parse_wal_lsn(text: str) -> int:
    """A WAL position from PostgreSQL's ``X/Y`` form (two hex numbers of 32 bits)."""
    match = _WAL_LSN.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid WAL LSN {text!r}: use PostgreSQL's X/Y form, e.g. 0/16B3748")
    return int(match[1], 16) << 32 | int(match[2], 16)


def format_wal_lsn(value: int) -> str:
    """``value`` in PostgreSQL's ``X/Y`` form."""
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def parse_time_us(text: str) -> int:
    """Microseconds since the epoch from ISO 8601; a time without a zone is local time."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"invalid time {text!r}: use ISO 8601, e.g. 2024-05-01T12:30:00 or "
            "2024-05-01T10:30:00Z") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # interprets a naive time as local time
    return (moment - _EPOCH) // timedelta(microseconds=1)


def iso_time(time_us: int) -> str | None:
    """ISO 8601 in UTC for microseconds since the epoch; None for 0 (unset)."""
    if not time_us:
        return None
    return (_EPOCH + timedelta(microseconds=time_us)).isoformat()


def local_time(time_us: int, unset: str = "-") -> str:
    """A local wall-clock time to the second, for tables; ``unset`` for 0."""
    if not time_us:
        return unset
    moment = (_EPOCH + timedelta(microseconds=time_us)).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def human_size(size: int) -> str:
    """Bytes in decimal units with one decimal, e.g. ``38.2 MB``."""
    if size < 1000:
        return f"{size} B"
    value, units = size / 1000, list(_SIZE_UNITS)
    while value >= 1000 and len(units) > 1:
        value, units = value / 1000, units[1:]
    return f"{value:.1f} {units[0]}"
