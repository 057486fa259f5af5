"""Durations as people write them (``90s``, ``5m``, ``2h``): server flags, CLI options, the
proxy's suspend timeout."""

from __future__ import annotations

import math

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(text: str | float | int) -> float:
    """Seconds from ``90``, ``90s``, ``5m``, ``2h``, ``7d`` or ``1w``."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        value = text.strip().lower()
        unit = _UNITS.get(value[-1:]) if value else None
        try:
            seconds = float(value[:-1]) * unit if unit else float(value)
        except ValueError:
            raise ValueError(f"invalid duration {text!r}: use e.g. 90s, 5m, 2h or 7d") from None
    if seconds < 0:
        raise ValueError(f"invalid duration {text!r}: must not be negative")
    return seconds


def parse_duration_s(text: str) -> int:
    """Whole seconds (rounded up) of :func:`parse_duration`."""
    return math.ceil(parse_duration(text))
