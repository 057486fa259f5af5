"""Immutable layer files: the on-disk unit of the LSM store.

A *delta* layer holds page and metadata versions for a key range and an LSN
range ``[lsn_start, lsn_end)``; an *image* layer holds every present key of a
key range at one LSN. The byte layout is specified in ``docs/FORMAT.md``:
header, one checksummed frame per page value, then the metadata, batch and
index sections, then a fixed-size footer. The writer streams values to disk so
a layer never has to fit in memory; the reader mmaps the file, verifies the
header, footer and index at open, and checks each value frame when it is read.

Since format 2 a frame holds either the whole page (lz4 or raw) or a patch: the
byte ranges that changed since the entry before it, the previous version of the
same page in this layer (``pageserver/page_patch.py``). Every commit rewrites
PostgreSQL's last WAL page, so a layer would otherwise keep one 8 KB page per
commit where the WAL grew by a few hundred bytes. Chains never cross layers, so
GC, compaction and branches see whole pages as before, and at most
``MAX_PATCH_CHAIN`` patches follow a whole page, which bounds what a read of one
version decodes. The meta and batch sections are lz4 blocks in format 2: each commit
adds a metadata version of its WAL segment and a batch record, alike but for a few
bytes. Format 3 stores the same frames and sections compressed with zstd instead of
lz4 (``pageserver/zstd_codec.py``, RFC 0028): about half the bytes on PostgreSQL pages.
Format 1 files (whole pages, plain sections) and format 2 files stay readable.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from itertools import pairwise
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, NamedTuple

import lz4.block
import numpy as np
from numpy.typing import NDArray

from common.durable import replaced_durably
from common.errors import CorruptionError
from common.keys import (
    META_PREFIX,
    PAGE_SIZE,
    RELATION_BYTES,
    Relation,
    relation_block_range,
)
from pageserver import zstd_codec
from pageserver.page_patch import PatchError, apply_patch, make_patch

MAGIC = b"STRLAYR1"
FORMAT_VERSION = 3  # what the writer writes
# 1: every frame a whole page; 2: tagged frames, patches, lz4; 3: the same with zstd
READABLE_VERSIONS = (1, 2, 3)
MAX_PATCH_CHAIN = 32  # patches in a row before the writer stores a whole page again

# The first payload byte of a format 2 frame: how the rest encodes the page.
_PAGE_RAW = 0  # the page, 8192 bytes
_PAGE_LZ4 = 1  # the page as an lz4 block
_PATCH_RAW = 2  # runs (page_patch) over the entry before it
_PATCH_LZ4 = 3  # the same runs as an lz4 block with its size stored
_PAGE_ZSTD = 4  # the page as a zstd frame (format 3)
_PATCH_ZSTD = 5  # the runs of a patch as a zstd frame (format 3)
_PATCHES = (_PATCH_RAW, _PATCH_LZ4, _PATCH_ZSTD)
_ENCODINGS = {2: (_PAGE_RAW, _PAGE_LZ4, _PATCH_RAW, _PATCH_LZ4),
              3: (_PAGE_RAW, _PAGE_ZSTD, _PATCH_RAW, _PATCH_ZSTD)}  # by format version
_MAX_PATCH = 2 * PAGE_SIZE  # more than any patch of one page can hold (runs and headers)

_U32_MAX = 0xFFFFFFFF
_U64_MAX = 0xFFFFFFFFFFFFFFFF
_META_DELETED = _U32_MAX  # meta value_length marking a deleted path
_KEY_MAX = 0xFFFF  # key_start / key_end are length-prefixed with a u16

# magic, version, kind, flags, header_length, lsn_start, lsn_end, key_start_len, key_end_len
_HEADER = struct.Struct("<8sHBBIQQHH")
_FOOTER_BODY = struct.Struct("<QQQQQQQQQIIIIIIHBB")  # the fields of _Footer
_FOOTER = struct.Struct(f"<{_FOOTER_BODY.size}sI8s")
FOOTER_SIZE = _FOOTER.size  # 112
_INDEX_HEAD = struct.Struct("<IIQ")  # relation_count, reserved, entry_count
_META_RECORD = struct.Struct("<IQI")  # path_length, lsn, value_length
_U32 = struct.Struct("<I")
_BATCH_BYTES = 24  # lsn, wal_lsn, timestamp_us: three u64
_ITER_CHUNK = 128  # entries decoded per step by iter_pages
_MAX_SECTION = 1 << 32  # what a packed section may unpack to (its lengths are u32s)


class _Footer(NamedTuple):
    """The footer fields before its checksum, in file order."""

    values_offset: int
    values_length: int
    meta_offset: int
    meta_length: int
    batch_offset: int
    batch_length: int
    index_offset: int
    index_length: int
    entry_count: int
    relation_count: int
    meta_count: int
    meta_crc: int
    batch_crc: int
    index_crc: int
    header_crc: int
    format_version: int
    kind: int
    reserved: int


class LayerKind(IntEnum):
    """Delta: all versions in an LSN range. Image: every present key at one LSN."""

    DELTA = 1
    IMAGE = 2


@dataclass(frozen=True)
class LayerSummary:
    """What a layer covers: keys ``[key_start, key_end)`` x LSNs ``[lsn_start, lsn_end)``."""

    kind: LayerKind
    key_start: bytes
    key_end: bytes
    lsn_start: int
    lsn_end: int


# ---------------------------------------------------------------------------
# Writer


def write_layer(
    path: Path,
    summary: LayerSummary,
    pages: Iterable[tuple[Relation, int, int, bytes | None]],
    metas: Iterable[tuple[str, int, bytes | None]],
    batches: Sequence[tuple[int, int, int]] | NDArray[np.uint64] = (),
) -> int:
    """Write a layer atomically (``path.tmp``, fsync, rename) and return its size.

    ``pages`` is consumed once and streamed to disk, so it may be a generator
    over a layer larger than memory. ``batches`` are (lsn, wal_lsn,
    timestamp_us) triples, or an (n, 3) array as ``LayerReader.batches()``
    returns. Raises ValueError when the input breaks the layer's invariants
    (order, uniqueness, ranges, page size).
    """
    _check_summary(summary)
    batch_rows = _check_batches(summary, batches)
    with replaced_durably(path, buffering=1 << 20) as out:
        size = _write_body(out, summary, pages, metas, batch_rows)
    return size


def _check_summary(summary: LayerSummary) -> None:
    """Reject summaries no reader could accept."""
    if not isinstance(summary.kind, LayerKind):
        raise ValueError(f"unknown layer kind {summary.kind!r}")
    if not 0 <= summary.lsn_start < summary.lsn_end <= _U64_MAX:
        raise ValueError(f"bad LSN range [{summary.lsn_start}, {summary.lsn_end})")
    if summary.kind is LayerKind.IMAGE and summary.lsn_end != summary.lsn_start + 1:
        raise ValueError("an image layer covers exactly one LSN: lsn_end must be lsn_start + 1")
    if not summary.key_start < summary.key_end:
        raise ValueError("empty key range")
    if max(len(summary.key_start), len(summary.key_end)) > _KEY_MAX:
        raise ValueError(f"key range bounds longer than {_KEY_MAX} bytes")


def _check_batches(
    summary: LayerSummary, batches: Sequence[tuple[int, int, int]] | NDArray[np.uint64]
) -> NDArray[np.uint64]:
    """Validate batch records (sorted, unique, inside the LSN range) into an (n, 3) array."""
    if len(batches) and summary.kind is LayerKind.IMAGE:
        raise ValueError("image layers carry no batch records")
    rows: list[tuple[int, int, int]] = []
    for raw in batches:
        lsn, wal_lsn, ts = (int(x) for x in raw)
        if not summary.lsn_start <= lsn < summary.lsn_end:
            raise ValueError(f"batch lsn {lsn} outside the layer's LSN range")
        if rows and lsn <= rows[-1][0]:
            raise ValueError(f"batch records not sorted by unique lsn at lsn {lsn}")
        if not (0 <= wal_lsn <= _U64_MAX and 0 <= ts <= _U64_MAX):
            raise ValueError(f"batch record at lsn {lsn} does not fit u64")
        rows.append((lsn, wal_lsn, ts))
    return np.array(rows, dtype="<u8").reshape(-1, 3)


def _write_body(
    out: BinaryIO,
    summary: LayerSummary,
    pages: Iterable[tuple[Relation, int, int, bytes | None]],
    metas: Iterable[tuple[str, int, bytes | None]],
    batch_rows: NDArray[np.uint64],
) -> int:
    """Write header, value frames, sections and footer; return the file size."""
    header = _encode_header(summary)
    out.write(header)
    header_crc = _U32.unpack_from(header, len(header) - 4)[0]
    values_offset = len(header)

    index = _IndexBuilder(summary, values_offset)
    for relation, block, lsn, value in pages:
        frame = index.add(relation, block, lsn, value)
        if frame:
            out.write(frame)
    meta_offset = index.offset

    meta_length, meta_count, meta_crc = _write_metas(out, summary, metas)

    batch_offset = meta_offset + meta_length
    batch_bytes = _packed_section(batch_rows.tobytes())
    out.write(batch_bytes)

    index_offset = batch_offset + len(batch_bytes)
    index_bytes, relation_count, entry_count = index.finish()
    out.write(index_bytes)

    footer = _Footer(
        values_offset=values_offset,
        values_length=meta_offset - values_offset,
        meta_offset=meta_offset,
        meta_length=meta_length,
        batch_offset=batch_offset,
        batch_length=len(batch_bytes),
        index_offset=index_offset,
        index_length=len(index_bytes),
        entry_count=entry_count,
        relation_count=relation_count,
        meta_count=meta_count,
        meta_crc=meta_crc,
        batch_crc=zlib.crc32(batch_bytes),
        index_crc=zlib.crc32(index_bytes),
        header_crc=header_crc,
        format_version=FORMAT_VERSION,
        kind=summary.kind,
        reserved=0,
    )
    footer_body = _FOOTER_BODY.pack(*footer)
    out.write(_FOOTER.pack(footer_body, zlib.crc32(footer_body), MAGIC))
    return index_offset + len(index_bytes) + FOOTER_SIZE


def _write_metas(
    out: BinaryIO, summary: LayerSummary, metas: Iterable[tuple[str, int, bytes | None]]
) -> tuple[int, int, int]:
    """Validate and write the meta section; return its stored length, record count and
    CRC."""
    plain = bytearray()
    count = 0
    prev: tuple[bytes, int] | None = None
    for path, lsn, value in metas:
        raw_path = path.encode()
        if prev is not None and (raw_path, lsn) <= prev:
            raise ValueError(f"meta entries not sorted/unique at {path!r} lsn {lsn}")
        prev = (raw_path, lsn)
        _check_lsn(summary, lsn, f"meta {path!r}")
        if not summary.key_start <= META_PREFIX + raw_path < summary.key_end:
            raise ValueError(f"meta key {path!r} outside the layer's key range")
        if value is not None and len(value) >= _META_DELETED:
            raise ValueError(f"meta value of {path!r} too large")
        value_length = _META_DELETED if value is None else len(value)
        plain += _META_RECORD.pack(len(raw_path), lsn, value_length) + raw_path + (value or b"")
        count += 1
    if count > _U32_MAX:
        raise ValueError("too many meta entries")
    stored = _packed_section(bytes(plain))
    out.write(stored)
    return len(stored), count, zlib.crc32(stored)


def _packed_section(plain: bytes) -> bytes:
    """A meta, batch or index section as stored: empty, or a zstd frame."""
    return zstd_codec.compress(plain) if plain else b""


def _check_lsn(summary: LayerSummary, lsn: int, what: str) -> None:
    if not summary.lsn_start <= lsn < summary.lsn_end:
        raise ValueError(f"{what}: lsn {lsn} outside [{summary.lsn_start}, {summary.lsn_end})")


class _IndexBuilder:
    """Validates page entries in order, frames their values and accumulates the index."""

    def __init__(self, summary: LayerSummary, values_offset: int) -> None:
        self.summary = summary
        self.offset = values_offset  # where the next frame goes
        self.rel_keys: list[bytes] = []
        self.rel_start = array("Q")
        self.value_offset = array("Q")
        self.block = array("I")
        self.lsn_offset = array("I")
        self.value_length = array("I")
        self._prev: tuple[int, int] = (-1, -1)  # (block, lsn) of the last entry
        self._prev_value: bytes | None = None  # the last entry's page (None: tombstone)
        self._chain = 0  # patches since the last whole page of this block
        self._blocks_allowed = (0, 0)

    def add(self, relation: Relation, block: int, lsn: int, value: bytes | None) -> bytes:
        """Record one page entry; return its value frame (empty for a tombstone)."""
        try:
            rel = relation.to_bytes()
        except struct.error as exc:
            raise ValueError(f"bad relation {relation!r}: {exc}") from None
        if not self.rel_keys or rel != self.rel_keys[-1]:
            if self.rel_keys and rel < self.rel_keys[-1]:
                raise ValueError(f"page entries not sorted: relation {relation} out of order")
            self.rel_keys.append(rel)
            self.rel_start.append(len(self.block))
            self._prev = (-1, -1)
            self._blocks_allowed = relation_block_range(
                relation, self.summary.key_start, self.summary.key_end
            )
        what = f"page {relation} block {block} lsn {lsn}"
        if (block, lsn) <= self._prev:
            raise ValueError(f"page entries not sorted/unique at {what}")
        base = self._prev_value if self._prev[0] == block else None
        self._prev = (block, lsn)
        self._prev_value = value
        lo, hi = self._blocks_allowed
        if not lo <= block < hi:
            raise ValueError(f"{what}: key outside the layer's key range")
        _check_lsn(self.summary, lsn, what)
        if lsn - self.summary.lsn_start > _U32_MAX:
            raise ValueError(f"{what}: lsn is 2**32 or more past lsn_start")
        self.block.append(block)
        self.lsn_offset.append(lsn - self.summary.lsn_start)
        if value is None:
            self.value_offset.append(0)
            self.value_length.append(0)
            return b""
        if len(value) != PAGE_SIZE:
            raise ValueError(f"{what}: value is {len(value)} bytes, expected {PAGE_SIZE}")
        payload = self._payload(value, base)
        frame = _U32.pack(zlib.crc32(payload)) + payload
        self.value_offset.append(self.offset)
        self.value_length.append(len(frame))
        self.offset += len(frame)
        return frame

    def _payload(self, value: bytes, base: bytes | None) -> bytes:
        """The smaller of the whole page and, while the chain is short enough, its patch
        over ``base`` (the previous version of the page in this layer)."""
        packed = zstd_codec.compress(value)
        whole = bytes([_PAGE_ZSTD]) + packed if len(packed) < PAGE_SIZE \
            else bytes([_PAGE_RAW]) + bytes(value)  # incompressible: stored raw
        if base is None or self._chain >= MAX_PATCH_CHAIN:
            self._chain = 0
            return whole
        runs = make_patch(base, value)
        packed_runs = zstd_codec.compress(runs) if runs else b""
        patch = bytes([_PATCH_ZSTD]) + packed_runs if runs and len(packed_runs) < len(runs) \
            else bytes([_PATCH_RAW]) + runs
        if len(patch) >= len(whole):
            self._chain = 0
            return whole
        self._chain += 1
        return patch

    def finish(self) -> tuple[bytes, int, int]:
        """The stored (zstd-compressed) index section, relation count and entry count."""
        entries = len(self.block)
        relations = len(self.rel_keys)
        body = b"".join(
            [
                _INDEX_HEAD.pack(relations, 0, entries),
                _le(self.rel_start, "<u8"),
                np.array([entries], dtype="<u8").tobytes(),
                _le(self.value_offset, "<u8"),
                _le(self.block, "<u4"),
                _le(self.lsn_offset, "<u4"),
                _le(self.value_length, "<u4"),
                *self.rel_keys,
            ]
        )
        return _packed_section(body), relations, entries


def _le(values: array[int], dtype: str) -> bytes:
    """Serialise a native-endian array as the given little-endian numpy dtype."""
    return np.frombuffer(values, dtype=values.typecode).astype(dtype).tobytes()


def _encode_header(summary: LayerSummary) -> bytes:
    length = _HEADER.size + len(summary.key_start) + len(summary.key_end) + 4
    body = (
        _HEADER.pack(
            MAGIC,
            FORMAT_VERSION,
            summary.kind,
            0,
            length,
            summary.lsn_start,
            summary.lsn_end,
            len(summary.key_start),
            len(summary.key_end),
        )
        + summary.key_start
        + summary.key_end
    )
    return body + _U32.pack(zlib.crc32(body))


# ---------------------------------------------------------------------------
# Reader


def read_summary(path: Path) -> LayerSummary:
    """Read and verify only the header of a layer file."""
    with open(path, "rb") as f:
        head = f.read(_HEADER.size)
        if len(head) < _HEADER.size:
            raise CorruptionError(f"layer {path}: truncated header")
        key_start_length, key_end_length = _HEADER.unpack(head)[-2:]
        rest = f.read(key_start_length + key_end_length + 4)
    summary, _, _, _ = _decode_header(head + rest, str(path))
    return summary


def _decode_header(buf: bytes | mmap.mmap, name: str) -> tuple[LayerSummary, int, int, int]:
    """Verify the header at the start of ``buf``: (summary, header length, header crc,
    format version)."""
    if len(buf) < _HEADER.size + 4:
        raise CorruptionError(f"layer {name}: truncated header")
    magic, version, kind, flags, length, lsn_start, lsn_end, ks_len, ke_len = (
        _HEADER.unpack_from(buf)
    )
    if magic != MAGIC:
        raise CorruptionError(f"layer {name}: bad header magic {magic!r}")
    # Magic and version sit at the same place in every format version, so an
    # unknown version is reported before anything version-specific is parsed.
    if version not in READABLE_VERSIONS:
        raise CorruptionError(f"layer {name}: unsupported format version {version}")
    if length != _HEADER.size + ks_len + ke_len + 4 or length > len(buf):
        raise CorruptionError(f"layer {name}: bad or truncated header length {length}")
    crc = _U32.unpack_from(buf, length - 4)[0]
    if zlib.crc32(buf[: length - 4]) != crc:
        raise CorruptionError(f"layer {name}: header checksum mismatch")
    if kind not in (LayerKind.DELTA, LayerKind.IMAGE) or flags != 0:
        raise CorruptionError(f"layer {name}: bad kind {kind} or flags {flags}")
    keys = bytes(buf[_HEADER.size : length - 4])
    summary = LayerSummary(
        LayerKind(kind), keys[:ks_len], keys[ks_len:], lsn_start, lsn_end
    )
    try:
        _check_summary(summary)
    except ValueError as exc:
        raise CorruptionError(f"layer {name}: inconsistent header: {exc}") from None
    return summary, length, crc, version


class LayerReader:
    """Read-only, thread-safe access to one layer file.

    Only the page index is held in memory (about 28 bytes per entry); values,
    metadata and batch records are read from the mmap on demand and verified
    on every read.
    """

    summary: LayerSummary
    size: int
    name: str

    def __init__(self, path: Path, name: str | None = None) -> None:
        self.name = name if name is not None else str(path)
        with open(path, "rb") as f:
            self.size = os.fstat(f.fileno()).st_size
            if self.size < _HEADER.size + 4 + FOOTER_SIZE:
                raise self._corrupt(f"truncated file ({self.size} bytes)")
            self._mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            self._open()
        except BaseException:
            self._mm.close()
            raise

    def _corrupt(self, what: str) -> CorruptionError:
        return CorruptionError(f"layer {self.name}: {what}")

    def _open(self) -> None:
        """Verify header, footer and section layout, then load the index."""
        summary, header_length, header_crc, version = _decode_header(self._mm, self.name)
        self.summary = summary
        self.format_version = version
        body, footer_crc, magic = _FOOTER.unpack_from(self._mm, self.size - FOOTER_SIZE)
        if magic != MAGIC:
            raise self._corrupt("bad footer magic (truncated file?)")
        if zlib.crc32(body) != footer_crc:
            raise self._corrupt("footer checksum mismatch")
        footer = _Footer._make(_FOOTER_BODY.unpack(body))
        if (footer.format_version, footer.kind, footer.reserved, footer.header_crc) != (
            version, summary.kind, 0, header_crc
        ):
            raise self._corrupt("footer does not match header")
        expected = header_length
        for offset, length in [
            (footer.values_offset, footer.values_length),
            (footer.meta_offset, footer.meta_length),
            (footer.batch_offset, footer.batch_length),
            (footer.index_offset, footer.index_length),
        ]:
            if offset != expected:
                raise self._corrupt("sections are not contiguous")
            expected = offset + length
        if expected != self.size - FOOTER_SIZE:
            raise self._corrupt("section lengths do not add up to the file size")
        if (version == 1 and footer.batch_length % _BATCH_BYTES) or (
            summary.kind is LayerKind.IMAGE and footer.batch_length
        ):
            raise self._corrupt(f"bad batch section length {footer.batch_length}")
        self._footer = footer
        stored = self._mm[footer.index_offset : expected]
        if zlib.crc32(stored) != footer.index_crc:
            raise self._corrupt("index checksum mismatch")
        raw = self._unpacked(stored, "index")
        self._load_index(
            raw, footer.relation_count, footer.entry_count, header_length, footer.meta_offset
        )

    def _load_index(
        self, raw: bytes, relations: int, entries: int, values_start: int, values_end: int
    ) -> None:
        """Map the index arrays over ``raw`` and check their invariants."""
        want = _INDEX_HEAD.size + 8 * (relations + 1) + 20 * entries + RELATION_BYTES * relations
        if len(raw) != want or _INDEX_HEAD.unpack_from(raw) != (relations, 0, entries):
            raise self._corrupt("index size does not match its counts")
        pos = _INDEX_HEAD.size

        def take(dtype: str, count: int) -> NDArray[Any]:
            nonlocal pos
            arr = np.frombuffer(raw, dtype=dtype, count=count, offset=pos)
            pos += arr.nbytes
            return arr

        self._rel_start: NDArray[np.uint64] = take("<u8", relations + 1)
        self._value_offset: NDArray[np.uint64] = take("<u8", entries)
        self._block: NDArray[np.uint32] = take("<u4", entries)
        self._lsn_offset: NDArray[np.uint32] = take("<u4", entries)
        self._value_length: NDArray[np.uint32] = take("<u4", entries)
        rel_keys = [raw[p : p + RELATION_BYTES] for p in range(pos, len(raw), RELATION_BYTES)]
        starts = self._rel_start.tolist()
        if (
            starts[0] != 0
            or starts[-1] != entries
            or any(a >= b for a, b in pairwise(starts))
            or any(a >= b for a, b in pairwise(rel_keys))
        ):
            raise self._corrupt("relation table is not sorted")
        self._relations = {key: (starts[i], starts[i + 1]) for i, key in enumerate(rel_keys)}
        self._rel_keys = rel_keys
        # The search key: entries sort by it within a relation.
        self._keys = (self._block.astype(np.uint64) << np.uint64(32)) | self._lsn_offset
        ascending = self._keys[1:] > self._keys[:-1]
        ascending[np.asarray(starts[1:-1], dtype=np.int64) - 1] = True
        if not ascending.all():
            raise self._corrupt("index entries are not sorted")
        if entries and int(self._lsn_offset.max()) >= self.summary.lsn_end - self.summary.lsn_start:
            raise self._corrupt("index entry outside the layer's LSN range")
        present = self._value_length != 0
        ends = self._value_offset + self._value_length
        if not (
            (self._value_offset[present] >= values_start).all()
            and (ends[present] <= values_end).all()
            and (self._value_length[present] > 4).all()
        ):
            raise self._corrupt("index points outside the value section")

    # -- pages ---------------------------------------------------------------

    def relations(self) -> list[Relation]:
        """The relations that have at least one entry in this layer, sorted."""
        return [Relation.from_bytes(key) for key in self._rel_keys]

    def find_pages(
        self, relation: Relation, blocks: NDArray[np.integer[Any]], lsn: int
    ) -> tuple[NDArray[np.int64], NDArray[np.uint64]]:
        """Newest entry at or below ``lsn`` for each of ``blocks`` (1-D, any order).

        Returns ``(entry_index, entry_lsn)``: -1 / 0 where this layer has no
        entry of the block at or below ``lsn``. Vectorised: one searchsorted
        over the relation's slice of ``block << 32 | lsn_offset`` keys.
        """
        blocks = np.asarray(blocks)
        if blocks.ndim != 1 or blocks.dtype.kind not in "iu":
            raise ValueError("blocks must be a 1-D integer array")
        if blocks.size and (int(blocks.min()) < 0 or int(blocks.max()) > _U32_MAX):
            raise ValueError("block numbers must fit u32")
        index = np.full(blocks.shape[0], -1, dtype=np.int64)
        entry_lsn = np.zeros(blocks.shape[0], dtype=np.uint64)
        span = self._relations.get(relation.to_bytes())
        if span is None or lsn < self.summary.lsn_start or not blocks.size:
            return index, entry_lsn
        start, end = span
        wanted = blocks.astype(np.uint64)
        query = (wanted << np.uint64(32)) | np.uint64(min(lsn - self.summary.lsn_start, _U32_MAX))
        pos = np.searchsorted(self._keys[start:end], query, side="right").astype(np.int64) + (
            start - 1
        )
        safe = np.maximum(pos, start)
        hit = (pos >= start) & (self._block[safe] == wanted)
        index[hit] = pos[hit]
        entry_lsn[hit] = self._lsn_offset[pos[hit]].astype(np.uint64) + np.uint64(
            self.summary.lsn_start
        )
        return index, entry_lsn

    def read_values(self, entry_indexes: NDArray[np.integer[Any]]) -> list[bytes | None]:
        """Decode and verify the values of the given entries (None = tombstone); a patch
        is laid over the versions before it, back to the page's last whole version."""
        idx = np.asarray(entry_indexes, dtype=np.int64)
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= self._block.shape[0]):
            raise ValueError("entry index out of range")
        out: list[bytes | None] = []
        for i, offset, length in zip(idx.tolist(), self._value_offset[idx].tolist(),
                                     self._value_length[idx].tolist(), strict=True):
            payload = self._frame_payload(i, offset, length)
            if payload is None or not self._is_patch(payload):
                out.append(None if payload is None else self._decode(i, payload, None))
            else:
                out.append(self._value_at(i, payload))
        return out

    def _value_at(self, i: int, payload: bytes) -> bytes:
        """The page entry ``i`` (a patch with ``payload``) encodes: the versions it rests
        on are decoded from the last whole one forward."""
        chain = [(i, payload)]  # this entry and the patches it rests on, newest first
        j = i
        while True:
            if j == self._relation_start(j) or self._block[j - 1] != self._block[j]:
                raise self._entry_corrupt(j, "patch without an earlier version")
            j -= 1
            earlier = self._payload(j)
            if earlier is None:
                raise self._entry_corrupt(j + 1, "patch over a tombstone")
            chain.append((j, earlier))
            if not self._is_patch(earlier):
                break
        j, encoded = chain.pop()
        page = self._decode(j, encoded, None)  # the whole page the chain starts from
        for j, encoded in reversed(chain):
            page = self._decode(j, encoded, page)
        return page

    def _relation_start(self, i: int) -> int:
        rel = int(np.searchsorted(self._rel_start, i, side="right")) - 1
        return int(self._rel_start[rel])

    def _payload(self, i: int) -> bytes | None:
        """The verified payload of entry ``i``'s frame; None for a tombstone."""
        return self._frame_payload(i, int(self._value_offset[i]), int(self._value_length[i]))

    def _frame_payload(self, i: int, offset: int, length: int) -> bytes | None:
        if length == 0:
            return None
        payload = self._mm[offset + 4 : offset + length]
        if zlib.crc32(payload) != _U32.unpack_from(self._mm, offset)[0]:
            raise self._entry_corrupt(i, "value frame checksum mismatch")
        return payload

    def _is_patch(self, payload: bytes) -> bool:
        return self.format_version >= 2 and payload[0] in _PATCHES

    def _decode(self, i: int, payload: bytes, base: bytes | None) -> bytes:
        """The page entry ``i``'s payload encodes; ``base`` is the previous entry's page,
        which a patch is laid over."""
        if self.format_version == 1:  # no encoding byte: raw if a page long, else lz4
            return payload if len(payload) == PAGE_SIZE else self._decompressed(i, payload)
        tag, body = payload[0], memoryview(payload)[1:]
        if tag not in _ENCODINGS[self.format_version]:
            raise self._entry_corrupt(i, f"unknown value encoding {tag}")
        if tag == _PAGE_RAW:
            if len(body) != PAGE_SIZE:
                raise self._entry_corrupt(i, "raw value frame is not a page")
            return bytes(body)
        if tag == _PAGE_LZ4:
            return self._decompressed(i, body)
        if tag == _PAGE_ZSTD:
            try:
                page = zstd_codec.decompress(body, PAGE_SIZE)
            except zstd_codec.ZstdError as exc:
                raise self._entry_corrupt(i, f"bad zstd page: {exc}") from None
            if len(page) != PAGE_SIZE:
                raise self._entry_corrupt(i, "value frame does not decompress to a page")
            return page
        if base is None:
            raise self._entry_corrupt(i, "patch without an earlier version")
        try:
            if tag == _PATCH_LZ4:
                runs = lz4.block.decompress(body)
            elif tag == _PATCH_ZSTD:
                runs = zstd_codec.decompress(body, _MAX_PATCH)
            else:
                runs = bytes(body)
            return apply_patch(base, runs)
        except (lz4.block.LZ4BlockError, zstd_codec.ZstdError, PatchError) as exc:
            raise self._entry_corrupt(i, f"bad patch: {exc}") from None

    def _decompressed(self, i: int, payload: bytes | memoryview) -> bytes:
        """A whole page from an lz4 block."""
        try:
            value: bytes = lz4.block.decompress(payload, uncompressed_size=PAGE_SIZE)
        except lz4.block.LZ4BlockError:
            value = b""
        if len(value) != PAGE_SIZE:
            raise self._entry_corrupt(i, "value frame does not decompress to a page")
        return value

    def _entry_corrupt(self, i: int, what: str) -> CorruptionError:
        relation, block, lsn = self._entry_key(i)
        return self._corrupt(f"entry {i} ({relation} block {block} lsn {lsn}): {what}")

    def _entry_key(self, i: int) -> tuple[Relation, int, int]:
        rel = int(np.searchsorted(self._rel_start, i, side="right")) - 1
        lsn = int(self._lsn_offset[i]) + self.summary.lsn_start
        return Relation.from_bytes(self._rel_keys[rel]), int(self._block[i]), lsn

    def iter_pages(self) -> Iterator[tuple[Relation, int, int, bytes | None]]:
        """Every page entry in key order, each patch laid over the page decoded before it."""
        lsn_start = self.summary.lsn_start
        for key in self._rel_keys:
            relation = Relation.from_bytes(key)
            start, end = self._relations[key]
            previous: tuple[int, bytes | None] = (-1, None)  # block, page of the last entry
            for chunk in range(start, end, _ITER_CHUNK):
                stop = min(chunk + _ITER_CHUNK, end)
                blocks = self._block[chunk:stop].tolist()
                lsns = self._lsn_offset[chunk:stop].tolist()
                offsets = self._value_offset[chunk:stop].tolist()
                lengths = self._value_length[chunk:stop].tolist()
                for i, block, lsn_offset, offset, length in zip(
                        range(chunk, stop), blocks, lsns, offsets, lengths, strict=True):
                    payload = self._frame_payload(i, offset, length)
                    value = None if payload is None else self._decode(
                        i, payload, previous[1] if previous[0] == block else None)
                    previous = (block, value)
                    yield relation, block, lsn_start + lsn_offset, value

    def page_index(self, relation: Relation) -> tuple[NDArray[np.uint32], NDArray[np.uint64]]:
        """Blocks and LSNs of every entry of ``relation``, sorted by (block, lsn)."""
        start, end = self._relations.get(relation.to_bytes(), (0, 0))
        lsns = self._lsn_offset[start:end].astype(np.uint64) + np.uint64(self.summary.lsn_start)
        return self._block[start:end].astype(np.uint32), lsns

    # -- metadata and batches ------------------------------------------------------

    def _section(self, offset: int, length: int, crc: int, what: str) -> bytes:
        """A verified meta or batch section, unpacked (format 2 stores it as lz4, format 3
        as zstd)."""
        raw = self._mm[offset : offset + length]
        if zlib.crc32(raw) != crc:
            raise self._corrupt(f"{what} section checksum mismatch")
        if self.format_version == 1 or not raw:
            return raw
        return self._unpacked(raw, what)

    def _unpacked(self, stored: bytes, what: str) -> bytes:
        """A packed section's bytes: an lz4 block with its size (formats 1 and 2; format 1
        packs only the index) or a zstd frame (format 3)."""
        try:
            if self.format_version < 3:
                plain: bytes = lz4.block.decompress(stored)
                return plain
            return zstd_codec.decompress(stored, _MAX_SECTION)
        except (lz4.block.LZ4BlockError, zstd_codec.ZstdError) as exc:
            raise self._corrupt(f"{what} section does not decompress: {exc}") from None

    def metas(self) -> list[tuple[str, int, bytes | None]]:
        """All metadata entries, sorted by (path, lsn); None = path deleted."""
        f = self._footer
        raw = self._section(f.meta_offset, f.meta_length, f.meta_crc, "meta")
        out: list[tuple[str, int, bytes | None]] = []
        pos = 0
        try:
            for _ in range(f.meta_count):
                path_length, lsn, value_length = _META_RECORD.unpack_from(raw, pos)
                pos += _META_RECORD.size
                path = raw[pos : pos + path_length].decode()
                pos += path_length
                value: bytes | None = None
                if value_length != _META_DELETED:
                    value = raw[pos : pos + value_length]
                    pos += value_length
                out.append((path, lsn, value))
        except (struct.error, UnicodeDecodeError) as exc:
            raise self._corrupt(f"malformed meta section: {exc}") from None
        if pos != len(raw):
            raise self._corrupt("meta section length does not match its records")
        return out

    def batches(self) -> NDArray[np.uint64]:
        """Batch records as an (n, 3) array of (lsn, wal_lsn, timestamp_us)."""
        f = self._footer
        raw = self._section(f.batch_offset, f.batch_length, f.batch_crc, "batch")
        if len(raw) % _BATCH_BYTES:
            raise self._corrupt(f"bad batch section length {len(raw)}")
        return np.frombuffer(raw, dtype="<u8").astype(np.uint64).reshape(-1, 3)

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Unmap the file; the reader must not be used afterwards."""
        self._mm.close()

    def __enter__(self) -> LayerReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
