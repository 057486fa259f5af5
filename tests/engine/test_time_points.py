"""Branch points given as a time: which times are usable, and errors that name them."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from common.errors import BelowGcCutoffError, OutOfRangeError
from common.keys import PAGE_SIZE
from common.ops import Batch, Create, Mkdir, Write
from pageserver.at_time import FUTURE_TOLERANCE_US
from pageserver.engine import Engine
from pageserver.tenant import BranchPoint, Tenant

REL_PATH = "base/5/16384"
SECOND = 1_000_000
HOUR = 3600 * SECOND


def _now_us() -> int:
    return time.time_ns() // 1000


def _iso(time_us: int) -> str:
    """How the errors write a time in ISO 8601, rounded up to the second."""
    seconds = -(-time_us // SECOND)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _tenant_written_at(engine: Engine, stamps: list[int]) -> Tenant:
    """Tenant "t" whose main has one batch per stamp (LSN i+1 at ``stamps[i]``), page 0
    of REL_PATH holding the batch's index in each."""
    tenant = engine.create_tenant("t")
    main = tenant.branch("main")
    main.ingest(Batch((Mkdir("base"), Mkdir("base/5"), Create(REL_PATH)),
                      timestamp_us=stamps[0]))
    for index, stamp in enumerate(stamps[1:], start=1):
        main.ingest(Batch((Write(REL_PATH, 0, bytes([index]) * PAGE_SIZE),),
                          timestamp_us=stamp))
    return tenant


def test_a_time_before_the_first_write_names_the_usable_range(engine: Engine) -> None:
    first = _now_us() - HOUR + 400_000  # not on a whole second: the error rounds it up
    tenant = _tenant_written_at(engine, [first, first + 60 * SECOND])
    with pytest.raises(OutOfRangeError) as raised:
        tenant.create_branch("yesterday", at=BranchPoint(time_us=first - 86400 * SECOND))
    message = str(raised.value)
    assert not isinstance(raised.value, BelowGcCutoffError)
    assert message.startswith("no state of branch 'main' is as old as ")
    assert f": its usable times run from {_local_text(first)} ({_iso(first)}), its first " \
        "write, to now" in message
    assert "by the page server's clock" in message
    # Either end of the range, typed back, is accepted.
    oldest = tenant.create_branch("oldest", at=BranchPoint(time_us=-(-first // SECOND) * SECOND))
    assert oldest.branch_lsn == 1
    assert tenant.create_branch("now", at=BranchPoint(time_us=_now_us())).branch_lsn == 2


def test_future_times_are_refused_beyond_the_skew_tolerance(engine: Engine) -> None:
    first = _now_us() - HOUR
    tenant = _tenant_written_at(engine, [first, first + SECOND])
    with pytest.raises(OutOfRangeError) as raised:
        tenant.create_branch("tomorrow", at=BranchPoint(time_us=_now_us() + HOUR))
    message = str(raised.value)
    assert " is in the future: the usable times of branch 'main' run from " in message
    assert f"({_iso(first)}), its first write, to now, " in message
    within = _now_us() + FUTURE_TOLERANCE_US // 2  # clock skew: counts as now
    assert tenant.create_branch("skewed", at=BranchPoint(time_us=within)).branch_lsn == 2
    with pytest.raises(OutOfRangeError, match="is in the future"):
        tenant.create_branch("later", at=BranchPoint(time_us=_now_us() + 3 * SECOND))
    with pytest.raises(OutOfRangeError, match="is in the future"):
        tenant.restore_branch("skewed", BranchPoint(time_us=_now_us() + HOUR))


def test_gc_moves_the_oldest_usable_time_and_the_error_says_so(engine: Engine) -> None:
    start = _now_us() - HOUR
    stamps = [start + index * 10 * SECOND for index in range(6)]
    tenant = _tenant_written_at(engine, stamps)
    tenant.create_checkpoint("main", "pinned", lsn=2)
    child = tenant.create_branch("child", at=BranchPoint(lsn=3))
    engine.flush("t")
    engine.compact("t", force=True)
    engine.gc("t", cutoff_lsn=5)
    main = tenant.branch("main")
    assert main.gc_cutoff == 5 and main.oldest_readable_lsn() == 5
    assert child.oldest_readable_lsn() == 3  # its branch point: main keeps it readable

    with pytest.raises(BelowGcCutoffError) as raised:
        tenant.create_branch("gone", at=BranchPoint(time_us=stamps[3] + SECOND))  # LSN 4
    message = str(raised.value)
    assert message.startswith("no state of branch 'main' is as old as ")
    assert f"run from {_local_text(stamps[4])} ({_iso(stamps[4])}), the oldest state GC " \
        "kept (LSN 5), to now" in message
    assert tenant.create_branch("kept", at=BranchPoint(time_us=stamps[4])).branch_lsn == 5
    # A checkpoint keeps its own LSN readable below the cutoff, by time too.
    assert tenant.create_branch("pin", at=BranchPoint(time_us=stamps[1])).branch_lsn == 2

    with pytest.raises(BelowGcCutoffError, match=r"GC kept \(LSN 3\), to now") as below:
        tenant.create_branch("before-child", parent="child",
                             at=BranchPoint(time_us=stamps[0] + SECOND))  # main's LSN 1
    assert f"its usable times run from {_local_text(stamps[2])}" in str(below.value)
    assert tenant.create_branch("at-child", parent="child",
                                at=BranchPoint(time_us=stamps[5])).branch_lsn == 3


def test_a_branch_without_writes_has_no_usable_time(engine: Engine) -> None:
    tenant = engine.create_tenant("empty")
    with pytest.raises(OutOfRangeError, match="branch 'main' has no writes yet, so no time"):
        tenant.create_branch("x", at=BranchPoint(time_us=_now_us()))


def _local_text(time_us: int) -> str:
    """How the errors write a time in local time, rounded up to the second."""
    seconds = -(-time_us // SECOND)
    return datetime.fromtimestamp(seconds, UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
