"""History windows: how far behind its newest LSN each branch's history stays readable.

A branch's own window wins; else the tenant's, else the page server's default
(``pitr_window_s``). A fork (a branch with a parent) without its own window keeps at
most ``fork_pitr_window_s``: forks are mostly short-lived experiments, and a long window
there keeps every page version they wrote. A timeline keeps the longest window of the
branches naming it; one no branch names (kept for checkpoints or children) keeps the
tenant's window, which is main's unless main has its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from common.errors import InvalidArgumentError

BRANCH, TENANT, SERVER, FORK = "branch", "tenant", "page server default", "fork default"
MAX_HISTORY_S = 10 * 365 * 24 * 3600  # longer is a typo, not a plan


@dataclass(frozen=True)
class Window:
    """A history window in seconds and where it comes from (BRANCH, TENANT, SERVER, FORK)."""

    seconds: float
    source: str


def tenant_window(tenant_s: int | None, server_s: float) -> Window:
    """The window of a tenant's branches without their own and of its unnamed timelines."""
    return Window(float(tenant_s), TENANT) if tenant_s is not None else Window(server_s, SERVER)


def branch_window(branch_s: int | None, is_fork: bool, tenant_s: int | None,
                  server_s: float, fork_s: float) -> Window:
    """The window of one branch: its own, else the tenant's, capped at ``fork_s`` for a
    fork."""
    if branch_s is not None:
        return Window(float(branch_s), BRANCH)
    inherited = tenant_window(tenant_s, server_s)
    if is_fork and fork_s < inherited.seconds:
        return Window(fork_s, FORK)
    return inherited


def longest_window(branch_windows: Iterable[Window], unnamed: Window) -> Window:
    """The window GC keeps on a timeline: the longest of the branches naming it, or
    ``unnamed`` when none does."""
    return max(branch_windows, key=lambda window: window.seconds, default=unnamed)


def check_history_s(seconds: int) -> int:
    """``seconds`` if it is a window one may set; InvalidArgumentError otherwise."""
    if not 0 < seconds <= MAX_HISTORY_S:
        raise InvalidArgumentError(f"history window {seconds} s is out of range: give 1 s to "
                         f"{MAX_HISTORY_S // (365 * 24 * 3600)} years")
    return seconds
