"""click parameter types for what users type: durations, sizes, WAL positions and times."""

from __future__ import annotations

from typing import Any

import click

from common.durations import parse_duration_s
from strata.cli.units import parse_size, parse_time_us, parse_wal_lsn


class Duration(click.ParamType[str]):
    """A duration such as ``90s``, ``5m``, ``2h``, ``7d`` or ``1w``; kept as typed."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        try:
            parse_duration_s(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return str(value).strip()


class History(click.ParamType[int]):
    """A history window such as ``30m`` or ``7d``, as whole seconds; ``default`` (or 0):
    0, which puts the default back."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().lower()
        if text in ("default", "0", "0s"):
            return 0
        try:
            return parse_duration_s(text)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Size(click.ParamType[int]):
    """A byte count such as ``10GB``, ``512MB``, ``1GiB`` or ``4096``, as an integer."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class WalLsn(click.ParamType[int]):
    """A PostgreSQL WAL position ``X/Y``, as an integer."""

    name = "X/Y"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_wal_lsn(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class Timestamp(click.ParamType[int]):
    """A time as :func:`parse_time_us` reads it (ISO 8601, ``now``, ``-10m``, ``2h ago``),
    as microseconds since the epoch.

    ``@NAME`` is refused with the checkpoint option to use instead: a checkpoint is not a
    time, and naming it where a time goes would give a second way to say the same.
    """

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value)
        if text.startswith("@"):
            option = param.opts[0] if param is not None and param.opts else "--at-time"
            self.fail(f"{text!r} names a checkpoint, not a time: use "
                      f"{option.replace('-time', '-checkpoint')} {text[1:]}", param, ctx)
        try:
            return parse_time_us(text)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Duration()
HISTORY = History()
SIZE = Size()
WAL_LSN = WalLsn()
TIMESTAMP = Timestamp()
LSN = click.IntRange(min=0)
