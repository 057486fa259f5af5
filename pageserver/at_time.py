"""Which state of a branch a wall-clock time names, and what to say when none does.

A time names the last durable batch at or before it (docs/DESIGN.md, "Two kinds of
LSN"). The usable times of a branch run from its oldest batch that GC has kept to now,
by this page server's clock, which also stamps the batches. An older time has no state
(yet, or any more); a later one names a state not written yet, which a branch cut now
would not contain, so it is refused, beyond a second of tolerated clock skew between the
caller's machine and this one. The errors name the usable range in local time and in
ISO 8601 (UTC), to the second, rounded so that either end, typed back, is accepted.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np

from common.errors import BelowGcCutoffError, OutOfRangeError
from pageserver.timeline import Timeline

FUTURE_TOLERANCE_US = 1_000_000
_SECOND_US = 1_000_000


def lsn_at_time(timeline: Timeline, history: np.ndarray, time_us: int, branch: str) -> int:
    """The LSN of the last durable batch at or before ``time_us`` in ``history`` (the
    timeline's ``batch_history()``), if GC kept it; ``branch`` names it in errors."""
    if not history.size:
        raise OutOfRangeError(f"branch {branch!r} has no writes yet, so no time names a "
                              "state of it")
    now = time.time_ns() // 1000
    if time_us > now + FUTURE_TOLERANCE_US:
        raise OutOfRangeError(f"{_local(time_us)} is in the future: the usable times of "
                              f"branch {branch!r} {_usable_range(timeline, history, now)}")
    hits = np.flatnonzero(history[:, 2] <= np.uint64(max(time_us, 0)))
    if hits.size:
        lsn = int(history[hits[-1], 0])
        try:
            timeline.check_above_gc_cutoff(lsn)
            return lsn
        except BelowGcCutoffError:
            pass
    error = BelowGcCutoffError if _collected(timeline.oldest_readable_lsn()) \
        else OutOfRangeError
    raise error(f"no state of branch {branch!r} is as old as {_local(time_us)}: its usable "
                f"times {_usable_range(timeline, history, now)}")


def _usable_range(timeline: Timeline, history: np.ndarray, now: int) -> str:
    """Which times name a state: from the oldest batch GC kept to ``now``."""
    floor = timeline.oldest_readable_lsn()
    kept = history[history[:, 0] >= np.uint64(floor)]
    if not kept.size:
        return f"are none: GC removed all history below LSN {floor}"
    oldest = _both(_round_up(int(kept[0, 2])))
    why = f"the oldest state GC kept (LSN {floor})" if _collected(floor) else "its first write"
    return f"run from {oldest}, {why}, to now, {_both(_round_up(now))} by the page server's clock"


def _collected(floor: int) -> bool:
    """Whether GC removed written history: a line's LSNs run from 1 without gaps."""
    return floor > 1


def _round_up(time_us: int) -> int:
    return -(-time_us // _SECOND_US) * _SECOND_US


def _local(time_us: int) -> str:
    """Local time to the second, with its zone: ``2026-11-27 10:00:02 CET``."""
    moment = datetime.fromtimestamp(time_us // _SECOND_US, UTC).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z")


def _both(time_us: int) -> str:
    """Local time and ISO 8601 in UTC: ``2026-11-27 10:00:02 CET (2026-11-27T09:00:02Z)``."""
    iso = datetime.fromtimestamp(time_us // _SECOND_US, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{_local(time_us)} ({iso})"
