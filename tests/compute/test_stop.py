"""Stopping a compute whose mount is busy: the unmount is retried while something still
has the mount open, and a mount that stays busy is an error that says so, not a wait for
a mount daemon that was never told to exit."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from common.client import StrataClient
from common.supervisor import Child, wait_exit
from compute.node import ComputeError, ComputeNode, ComputeStatus
from compute.unmount import mounted
from tests.compute.conftest import TENANT
from tests.servers import PageServerProcess


@contextmanager
def holding(node: ComputeNode) -> Iterator[subprocess.Popen[bytes]]:
    """A process working inside the compute's mount (which makes an unmount busy)."""
    holder = subprocess.Popen(["sleep", "600"], cwd=node.spec.mountpoint)
    try:
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_a_stop_waits_for_a_busy_mount_to_be_let_go(
        cluster: tuple[PageServerProcess, StrataClient],
        make_compute: Callable[..., ComputeNode], caplog: pytest.LogCaptureFixture) -> None:
    cluster[1].create_branch(TENANT, "held")
    node = make_compute("held")
    node.start()
    caplog.set_level(logging.DEBUG, logger="compute.unmount")
    failed: list[BaseException] = []

    def stop() -> None:
        try:
            node.stop()
        except BaseException as exc:  # reported by the test's own thread
            failed.append(exc)

    with holding(node) as holder:
        stopping = threading.Thread(target=stop)
        stopping.start()
        deadline = time.monotonic() + 60
        while "is busy" not in caplog.text and stopping.is_alive() \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "is busy" in caplog.text, failed or "the unmount was never refused"
        holder.kill()  # let go while the stop still waits
        stopping.join()
    assert failed == []
    assert node.status() is ComputeStatus.STOPPED
    assert not mounted(node.spec.mountpoint)


def test_a_mount_that_stays_busy_is_a_clear_error(
        cluster: tuple[PageServerProcess, StrataClient],
        make_compute: Callable[..., ComputeNode]) -> None:
    cluster[1].create_branch(TENANT, "stuck")
    node = make_compute("stuck")
    node.start()
    assert node.pids is not None
    os.kill(node.pids.postmaster, signal.SIGINT)  # PostgreSQL gone first, at its own pace
    assert wait_exit(Child(node.pids.postmaster, b"postgres", Path()), 120)
    with holding(node), pytest.raises(ComputeError) as raised:
        node.stop(timeout_s=3)  # so this is the unmount's time alone
    assert "busy" in raised.value.message and str(node.spec.mountpoint) in raised.value.message
    assert mounted(node.spec.mountpoint)
    node.stop()  # let go: the stop goes through
    assert node.status() is ComputeStatus.STOPPED
