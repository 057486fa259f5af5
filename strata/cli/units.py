"""Conversions between what people type or read and what the API speaks.

PostgreSQL WAL positions (``X/Y`` hex), wall-clock times (microseconds since the epoch;
typed as ISO 8601 or as a time ago), byte counts (``38.2 MB``, typed as ``10GB``).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SIZE_UNITS = ("kB", "MB", "GB", "TB", "PB")
_WAL_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")
_NUMBER = r"\d{1,12}(?:\.\d{1,6})?"
_AGO = re.compile(  # a time ago, lowercase: "-10m", "10m ago", "10 minutes ago"
    rf"-\s*(?P<back>{_NUMBER})\s*(?P<unit>[a-z]+)"
    rf"|(?P<ago>{_NUMBER})\s*(?P<ago_unit>[a-z]+)\s+ago")
_AHEAD = re.compile(rf"\+\s*{_NUMBER}\s*[a-z]+|in\s+{_NUMBER}\s*[a-z]+")  # "+10m", "in 2h"
_SIZE = re.compile(rf"(?P<amount>{_NUMBER})\s*(?P<unit>[kKMGTP]i?B|B)?")
_SIZE_FACTORS = {
    "B": 1, **{unit: 1000 ** (power + 1) for power, unit in enumerate(_SIZE_UNITS)},
    **{f"{unit[0].upper()}iB": 1024 ** (power + 1) for power, unit in enumerate(_SIZE_UNITS)},
}
_TIME_UNITS_S = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
    **dict.fromkeys(("w", "week", "weeks"), 604800),
}
_TIME_FORMS = ("use ISO 8601 (2026-11-25T18:00, local time without a zone; "
               "2026-11-25T17:00Z), now, or a time ago: -10m, '10 minutes ago', '2h ago'")


def parse_wal_lsn(text: str) -> int:
    """A WAL position from PostgreSQL's ``X/Y`` form (two hex numbers of 32 bits)."""
    match = _WAL_LSN.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid WAL position {text!r}: use PostgreSQL's X/Y form, "
                         "e.g. 0/16B3748")
    return int(match[1], 16) << 32 | int(match[2], 16)


def format_wal_lsn(value: int) -> str:
    """``value`` in PostgreSQL's ``X/Y`` form."""
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def parse_time_us(text: str, now_us: int | None = None) -> int:
    """Microseconds since the epoch from what people type for a time: ISO 8601 (a time
    without a zone is local time), ``now``, or a time ago: ``-10m``, ``10m ago``,
    ``10 minutes ago``, ``2h ago`` (units s, m, h, d, w, spelled short or long), counted
    back from ``now_us`` (default: this machine's clock)."""
    typed = text.strip().lower()
    ago = _AGO.fullmatch(typed)
    if typed == "now" or ago is not None:
        now = time.time_ns() // 1000 if now_us is None else now_us
        moment_us = now - (_span_us(text, ago) if ago is not None else 0)
    else:
        if _AHEAD.fullmatch(typed):
            raise ValueError(f"invalid time {text!r}: it is in the future, which has no "
                             "state yet; use a time ago, e.g. -10m")
        try:
            moment = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ValueError(f"invalid time {text!r}: {_TIME_FORMS}") from None
        if moment.tzinfo is None:
            moment = moment.astimezone()  # interprets a naive time as local time
        moment_us = (moment - _EPOCH) // timedelta(microseconds=1)
    if moment_us < 0:
        raise ValueError(f"invalid time {text!r}: it is before 1970")
    return moment_us


def _span_us(text: str, ago: re.Match[str]) -> int:
    """The span of a time ago (a match of ``_AGO`` in ``text``), in microseconds."""
    amount, unit = ago["back"] or ago["ago"], ago["unit"] or ago["ago_unit"]
    seconds = _TIME_UNITS_S.get(unit)
    if seconds is None:
        raise ValueError(f"invalid time {text!r}: unknown unit {unit!r}; use s, m, h, d or w "
                         "(or seconds, minutes, hours, days, weeks)")
    return round(float(amount) * seconds * 1_000_000)


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


def parse_size(text: str) -> int:
    """Bytes from what people type: ``10GB``, ``512 MB``, ``1.5GiB``, ``4096`` (bytes)."""
    match = _SIZE.fullmatch(text.strip())
    unit = (match["unit"] or "B") if match is not None else ""
    factor = _SIZE_FACTORS.get(unit.replace("KB", "kB"))
    if match is None or factor is None:
        raise ValueError(f"invalid size {text!r}: use a number of bytes with a unit, e.g. "
                         "10GB, 512MB or 1GiB")
    return round(float(match["amount"]) * int(factor))


def human_size(size: int) -> str:
    """Bytes in decimal units with one decimal, e.g. ``38.2 MB``."""
    if size < 1000:
        return f"{size} B"
    value, units = size / 1000, list(_SIZE_UNITS)
    while value >= 1000 and len(units) > 1:
        value, units = value / 1000, units[1:]
    return f"{value:.1f} {units[0]}"


def human_duration(seconds: float) -> str:
    """``24h``, ``90m``, ``1s``: the largest unit that divides it."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
