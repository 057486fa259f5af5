"""The history window arithmetic: a branch's own window wins, then the tenant's, then the
page server's; forks without their own keep at most the fork default; a timeline keeps
the longest window of the branches naming it."""

from __future__ import annotations

import pytest

from common.errors import InvalidArgumentError
from pageserver.history import (
    BRANCH,
    FORK,
    MAX_HISTORY_S,
    SERVER,
    TENANT,
    Window,
    branch_window,
    check_history_s,
    longest_window,
    tenant_window,
)

DAY, HOUR = 86400.0, 3600.0


def test_main_follows_the_tenant_then_the_server() -> None:
    assert branch_window(None, False, None, DAY, HOUR) == Window(DAY, SERVER)
    assert branch_window(None, False, 7200, DAY, HOUR) == Window(7200.0, TENANT)
    assert branch_window(60, False, 7200, DAY, HOUR) == Window(60.0, BRANCH)


def test_a_fork_without_its_own_window_keeps_at_most_the_fork_default() -> None:
    assert branch_window(None, True, None, DAY, HOUR) == Window(HOUR, FORK)
    assert branch_window(None, True, 7 * 86400, DAY, HOUR) == Window(HOUR, FORK)
    # a tenant window shorter than the fork default applies to forks as it is
    assert branch_window(None, True, 600, DAY, HOUR) == Window(600.0, TENANT)
    assert branch_window(None, True, None, 60.0, HOUR) == Window(60.0, SERVER)
    # a fork's own window is never capped
    assert branch_window(2 * 86400, True, None, DAY, HOUR) == Window(2 * DAY, BRANCH)


def test_a_timeline_keeps_the_longest_window_naming_it() -> None:
    unnamed = tenant_window(None, DAY)
    assert longest_window([], unnamed) == Window(DAY, SERVER)
    assert longest_window([Window(HOUR, FORK), Window(60.0, BRANCH)], unnamed) \
        == Window(HOUR, FORK)


def test_windows_one_may_set() -> None:
    assert check_history_s(1) == 1 and check_history_s(MAX_HISTORY_S) == MAX_HISTORY_S
    for wrong in (0, -5, MAX_HISTORY_S + 1):
        with pytest.raises(InvalidArgumentError, match="out of range"):
            check_history_s(wrong)
