"""Zstandard compression for layer files (format 3): page payloads and packed sections.

zstd's entropy stage compresses what lz4's match finder cannot: hex digests, numbers
and tuple headers that do not repeat byte for byte. On PostgreSQL pages it stores
about half of what lz4 did (RFC 0028). A compression or decompression context costs
tens of microseconds to create, more than a page takes to decode, so each thread keeps
one of each.
"""

from __future__ import annotations

import threading
from typing import Final

import zstandard

LEVEL: Final = 3  # zstd's default; levels above it cost more time than they save bytes


class _Contexts(threading.local):
    """One compressor and one decompressor per thread (neither is thread-safe)."""

    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(level=LEVEL, write_checksum=False)
        self.decompressor = zstandard.ZstdDecompressor()


_contexts = _Contexts()


class ZstdError(ValueError):
    """Bytes that are not a zstd frame, or decode to more than allowed."""


def compress(data: bytes) -> bytes:
    """``data`` as one zstd frame that records its decompressed size."""
    compressed: bytes = _contexts.compressor.compress(data)
    return compressed


def decompress(frame: bytes | memoryview, max_size: int) -> bytes:
    """The bytes of a zstd frame from ``compress``; ZstdError if it is not one or
    would hold more than ``max_size`` bytes."""
    try:
        size = zstandard.frame_content_size(frame)
        if size < 0 or size > max_size:
            raise ZstdError(f"zstd frame of {size} bytes (at most {max_size} expected)")
        plain: bytes = _contexts.decompressor.decompress(frame)
    except zstandard.ZstdError as exc:
        raise ZstdError(f"not a zstd frame: {exc}") from None
    if len(plain) != size:
        raise ZstdError("zstd frame decodes to a different size than it records")
    return plain
