"""Byte-range patches between page versions: exact roundtrips, malformed patches refused."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.keys import PAGE_SIZE
from pageserver.page_patch import PatchError, apply_patch, make_patch


def random_page(seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, PAGE_SIZE, dtype=np.uint8).tobytes()


@given(seed=st.integers(0, 2**32), edits=st.lists(st.tuples(
    st.integers(0, PAGE_SIZE - 1), st.binary(min_size=1, max_size=64)), max_size=10))
def test_patch_turns_the_old_page_into_the_new(seed: int,
                                               edits: list[tuple[int, bytes]]) -> None:
    old = random_page(seed)
    new = bytearray(old)
    for at, data in edits:
        new[at:at + len(data)] = data[:PAGE_SIZE - at]
    patch = make_patch(old, bytes(new))
    assert apply_patch(old, patch) == bytes(new)
    assert len(patch) <= 4 * len(edits) + sum(len(d) for _, d in edits) + 8 * len(edits)


def test_appended_bytes_cost_their_length() -> None:
    old = bytes(100) + b"x" * 1000 + bytes(PAGE_SIZE - 1100)
    new = old[:1100] + b"y" * 300 + old[1400:]
    patch = make_patch(old, new)
    assert patch == struct.pack("<HH", 1100, 300) + b"y" * 300
    assert make_patch(new, new) == b""
    assert apply_patch(new, b"") == new


def test_pages_only() -> None:
    with pytest.raises(ValueError):
        make_patch(b"short", bytes(PAGE_SIZE))


@pytest.mark.parametrize("patch", [
    b"\x00",  # a run header cut short
    struct.pack("<HH", PAGE_SIZE - 2, 4) + b"abcd",  # past the page
    struct.pack("<HH", 10, 5) + b"ab",  # fewer bytes than the run says
    struct.pack("<HH", 10, 0),  # an empty run
    struct.pack("<HH", 20, 2) + b"ab" + struct.pack("<HH", 10, 2) + b"cd",  # out of order
])
def test_malformed_patches_are_refused(patch: bytes) -> None:
    with pytest.raises(PatchError):
        apply_patch(bytes(PAGE_SIZE), patch)
