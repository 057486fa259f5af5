"""Unmounting a compute's FUSE mount, which ends its mount daemon's loop.

The kernel refuses (EBUSY) while a process still has a file or its working directory in
the mount: a backend of a postmaster that has just exited, say. That passes, so a busy
mount is retried until the deadline; any other failure, or one still busy then, is an
error that says what ``fusermount3`` said, instead of a wait for a daemon that was never
told to exit.
"""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path
from typing import Final

from compute.readahead import ReadaheadError, device_of

log = logging.getLogger(__name__)
_MOUNTINFO: Final = Path("/proc/self/mountinfo")
_RETRY_S: Final = 0.1


class UnmountError(Exception):
    """The mount is still there: the message says what ``fusermount3`` answered."""


def mounted(mountpoint: Path) -> bool:
    """Whether a file system is mounted at ``mountpoint`` (read from mountinfo: a ``stat``
    would be a request to the mount daemon)."""
    try:
        device_of(mountpoint, _MOUNTINFO.read_text())
    except ReadaheadError:
        return False
    return True


def unmount(mountpoint: Path, timeout_s: float) -> int:
    """``fusermount3 -u`` the mount at ``mountpoint``, retried while the kernel says it is
    busy, for up to ``timeout_s``; how many attempts were busy. Nothing mounted there
    (any more) is not an error."""
    deadline = time.monotonic() + timeout_s
    busy = 0
    while True:
        done = subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True,
                              text=True, check=False)
        if done.returncode == 0 or not mounted(mountpoint):
            return busy
        said = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        if "busy" not in said.lower():
            raise UnmountError(said)
        busy += 1
        log.debug("%s is busy: unmount again", mountpoint)
        if time.monotonic() >= deadline:
            raise UnmountError(f"{said} ({busy} attempts in {timeout_s:g} s)")
        time.sleep(_RETRY_S)
