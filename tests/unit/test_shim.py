"""The FUSE adapter's own decisions without a mount: synchronous handles and direct I/O.

``StrataFS`` is called as mfusepy would call it, over a real page cache in a temporary
directory and the fake page server of ``test_branch_view``, which records the batches
that were made durable (and fails on demand).
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import mfusepy as fuse
import pytest

from common.keys import PAGE_SIZE
from common.ops import Create, FileKind, Write
from compute.page_cache import MIB, PageCache
from compute.shim import StrataFS, StrataFUSE, is_direct
from compute.view import Node
from tests.unit.test_branch_view import FakeReader, FakeWriter

SEGMENT = "/pg_wal/000000010000000000000001"


@pytest.fixture
def shim(tmp_path: Path) -> Iterator[tuple[StrataFS, FakeWriter]]:
    tree = {"": Node("", FileKind.DIR, 0o700), "pg_wal": Node("pg_wal", FileKind.DIR, 0o700)}
    writer = FakeWriter()
    with PageCache(tmp_path / "cache", 64 * PAGE_SIZE / MIB) as cache:
        fs = StrataFS(tree, cache, FakeReader(), writer, tmp_path / "scratch", 0, 0)
        yield fs, writer


@pytest.mark.parametrize("flag", [os.O_DSYNC, os.O_SYNC])
def test_a_write_on_a_synchronous_handle_is_durable_when_it_returns(
        shim: tuple[StrataFS, FakeWriter], flag: int) -> None:
    fs, writer = shim
    plain = fs.create("/base_file", 0o600, os.O_RDWR)
    fs.write("/base_file", b"a" * PAGE_SIZE, 0, plain)
    fh = fs.create(SEGMENT, 0o600, os.O_RDWR | flag)
    assert writer.batches == []  # creating is not a durability point
    fs.write(SEGMENT, b"w" * PAGE_SIZE, 0, fh)
    # Everything written before, on any file, was shipped with it, in order.
    assert [type(op) for op in writer.ops] == [Create, Write, Create, Write]
    assert writer.ops[-1] == Write(SEGMENT.strip("/"), 0, b"w" * PAGE_SIZE)


def test_a_write_on_an_ordinary_handle_waits_for_fsync(
        shim: tuple[StrataFS, FakeWriter]) -> None:
    fs, writer = shim
    fs.create(SEGMENT, 0o600, os.O_RDWR)
    fh = fs.open(SEGMENT, os.O_RDWR)
    fs.write(SEGMENT, b"w" * PAGE_SIZE, 0, fh)
    assert writer.batches == []
    fs.fsync(SEGMENT, 1, fh)
    assert writer.ops[-1] == Write(SEGMENT.strip("/"), 0, b"w" * PAGE_SIZE)


def test_a_synchronous_write_the_page_server_does_not_take_fails_and_stays_queued(
        shim: tuple[StrataFS, FakeWriter]) -> None:
    fs, writer = shim
    fh = fs.create(SEGMENT, 0o600, os.O_RDWR | os.O_DSYNC)
    writer.accept = 0
    with pytest.raises(OSError) as failed:
        fs.write(SEGMENT, b"w" * PAGE_SIZE, 0, fh)
    assert failed.value.errno == errno.EIO
    writer.accept = None
    fs.fsync(SEGMENT, 1, fh)
    assert writer.ops[-1] == Write(SEGMENT.strip("/"), 0, b"w" * PAGE_SIZE)


def test_a_released_handle_number_is_not_synchronous_for_the_next_open(
        shim: tuple[StrataFS, FakeWriter]) -> None:
    fs, writer = shim
    fh = fs.create(SEGMENT, 0o600, os.O_RDWR | os.O_DSYNC)
    fs.release(SEGMENT, fh)
    other = fs.open(SEGMENT, os.O_RDWR)
    fs.write(SEGMENT, b"w" * PAGE_SIZE, 0, other)
    assert [type(op) for op in writer.ops] == []


def test_only_wal_segments_are_opened_with_direct_io() -> None:
    assert is_direct(SEGMENT.strip("/"))
    for rel in ("base/5/16384", "pg_wal/archive_status", "pg_wal/xlogtemp.77",
                "global/pg_control", "pg_wal/00000002.history"):
        assert not is_direct(rel), rel


@pytest.mark.parametrize(("path", "direct"), [(SEGMENT, 1), ("/base/5/16384", 0)])
def test_the_mount_sets_direct_io_on_the_open_of_a_segment(path: str, direct: int) -> None:
    info = fuse.fuse_file_info()
    StrataFUSE._choose_caching(path.encode(), ctypes.pointer(info))
    assert info.direct_io == direct


def test_the_mount_answers_a_read_in_the_kernels_buffer(
        shim: tuple[StrataFS, FakeWriter], tmp_path: Path) -> None:
    fs, _ = shim
    fh = fs.create("/base", 0o600)
    fs.write("/base", b"a" * PAGE_SIZE + b"b" * PAGE_SIZE, 0, fh)
    mount = StrataFUSE.__new__(StrataFUSE)  # no mount: only the read callback
    mount.operations = fs
    buffer = (ctypes.c_byte * (PAGE_SIZE + 8))()
    ctypes.memset(buffer, ord("#"), len(buffer))
    info = fuse.fuse_file_info()
    info.fh = fh
    pointer = ctypes.cast(buffer, ctypes.POINTER(ctypes.c_byte))
    assert mount.read(b"/base", pointer, PAGE_SIZE, PAGE_SIZE // 2,
                      ctypes.pointer(info)) == PAGE_SIZE
    assert bytes(buffer) == b"a" * (PAGE_SIZE // 2) + b"b" * (PAGE_SIZE // 2) + b"#" * 8
