"""BRANCH@POINT and --since: digits, X/Y, times and checkpoint names, in that order."""

from __future__ import annotations

import time

import pytest

from common.client import HistoryPoint
from strata.cli.points import parse_point


def test_each_form_names_its_kind_of_point() -> None:
    assert parse_point("42") == HistoryPoint(lsn=42)
    assert parse_point("0/16B3F28") == HistoryPoint(wal_lsn=0x16B3F28)
    assert parse_point("before-migration") == HistoryPoint(checkpoint="before-migration")
    ago = parse_point("-10m").time_us
    assert ago is not None and abs(time.time() * 1e6 - 600e6 - ago) < 5e6
    assert parse_point("2026-11-25T18:00:00+00:00").time_us == 1795629600 * 1_000_000


def test_what_names_no_point_is_refused_with_the_forms() -> None:
    with pytest.raises(ValueError, match="checkpoint name"):
        parse_point("no such/thing")
    with pytest.raises(ValueError, match="checkpoint name"):
        parse_point("+10m")
