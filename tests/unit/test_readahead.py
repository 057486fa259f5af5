"""Finding a FUSE mount's backing device in mountinfo, to raise its readahead."""

from __future__ import annotations

from pathlib import Path

import pytest

from compute.readahead import ReadaheadError, device_of

MOUNTINFO = """\
22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
61 22 0:52 / /srv/computes/shop/main/pgdata rw,nosuid,nodev shared:30 - fuse.strata strata rw
62 22 0:53 / /srv/computes/shop/with\\040space/pgdata rw - fuse.strata strata rw
63 61 0:54 / /srv/computes/shop/main/pgdata rw - fuse.strata strata rw
"""


def test_the_device_of_a_mount_point() -> None:
    assert device_of(Path("/"), MOUNTINFO) == "253:0"
    assert device_of(Path("/srv/computes/shop/with space/pgdata"), MOUNTINFO) == "0:53"


def test_the_newest_of_stacked_mounts_wins() -> None:
    assert device_of(Path("/srv/computes/shop/main/pgdata"), MOUNTINFO) == "0:54"


def test_a_directory_that_is_no_mount_point_is_an_error() -> None:
    with pytest.raises(ReadaheadError, match="not a mount point"):
        device_of(Path("/srv/computes/shop/other/pgdata"), MOUNTINFO)
