"""The kernel's readahead window of a FUSE mount, raised so sequential scans stream.

A FUSE mount gets its own backing device (``/sys/class/bdi/<major>:<minor>``) whose
readahead defaults to 128 KB: a sequential scan then asks the mount daemon for 128 KB at
a time, each a page-server round trip when the pages are not cached. A larger window
lets the kernel ask for more ahead of the reader, so the daemon's prefetch sees larger
requests. Setting it needs root, and the mount's device number, which
``/proc/self/mountinfo`` gives without touching the mount (a ``stat`` would be a FUSE
request).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

READ_AHEAD_KB: Final = 8192
_MOUNTINFO: Final = Path("/proc/self/mountinfo")
_BDI: Final = Path("/sys/class/bdi")


class ReadaheadError(Exception):
    """The mount was not found, or its readahead could not be set."""


def device_of(mountpoint: Path, mountinfo: str) -> str:
    """``major:minor`` of the file system mounted at ``mountpoint`` (the last mount there
    wins, as it hides the earlier ones). Only the directories above it are resolved: the
    mount point itself is not touched, which would be a request to its daemon."""
    target = str(mountpoint.parent.resolve() / mountpoint.name)
    found = None
    for line in mountinfo.splitlines():
        fields = line.split()
        # mount ID, parent ID, major:minor, root, mount point (octal escapes for spaces)
        if len(fields) > 4 and _unescape(fields[4]) == target:
            found = fields[2]
    if found is None:
        raise ReadaheadError(f"{target} is not a mount point")
    return found


def set_read_ahead(mountpoint: Path, kb: int = READ_AHEAD_KB) -> None:
    """Set the readahead window of the mount at ``mountpoint`` to ``kb``."""
    device = device_of(mountpoint, _MOUNTINFO.read_text())
    try:
        (_BDI / device / "read_ahead_kb").write_text(f"{kb}\n")
    except OSError as exc:
        raise ReadaheadError(f"cannot set read_ahead_kb of {mountpoint} ({device}): "
                             f"{exc.strerror}") from exc


def _unescape(field: str) -> str:
    r"""A mountinfo path: space, tab, newline and backslash are written as \ooo."""
    for code in ("040", "011", "012", "134"):
        field = field.replace(f"\\{code}", chr(int(code, 8)))
    return field
