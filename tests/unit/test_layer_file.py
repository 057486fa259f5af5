"""Layer file format: roundtrips, point lookups, writer validation and corruption detection."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

import lz4.block
import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.errors import CorruptionError
from common.keys import KEYSPACE_END, KEYSPACE_START, PAGE_SIZE, Relation, meta_key, page_key
from pageserver import layer_file
from pageserver.layer_file import (
    FOOTER_SIZE,
    LayerKind,
    LayerReader,
    LayerSummary,
    read_summary,
    write_layer,
)

REL_A = Relation(1663, 5, 16384, 0)
REL_B = Relation(1663, 5, 16385, 0)
REL_C = Relation(1663, 5, 16385, 2)
MISSING = Relation(1663, 5, 99999, 0)

PageEntry = tuple[Relation, int, int, bytes | None]
MetaEntry = tuple[str, int, bytes | None]


def page(seed: int) -> bytes:
    """A distinct, compressible 8 KB page."""
    return bytes([seed % 251]) * 4096 + seed.to_bytes(8, "big") * 512


def random_page(seed: int) -> bytes:
    """A distinct incompressible page (stored raw)."""
    return np.random.default_rng(seed).integers(0, 256, PAGE_SIZE, dtype=np.uint8).tobytes()


def delta(lsn_start: int, lsn_end: int, key_start: bytes = KEYSPACE_START,
          key_end: bytes = KEYSPACE_END) -> LayerSummary:
    return LayerSummary(LayerKind.DELTA, key_start, key_end, lsn_start, lsn_end)


DELTA_PAGES: list[PageEntry] = [
    (REL_A, 0, 100, page(1)),
    (REL_A, 0, 120, page(2)),
    (REL_A, 0, 150, None),
    (REL_A, 3, 110, random_page(3)),
    (REL_A, 7, 100, page(4)),
    (REL_B, 0, 199, page(5)),
    (REL_C, 2, 130, None),
    (REL_C, 2, 140, page(6)),
]
DELTA_METAS: list[MetaEntry] = [
    ("base/5/16384", 100, b"meta-a1"),
    ("base/5/16384", 150, b"meta-a2"),
    ("base/5/16385", 101, None),
    ("global/pg_control", 190, b""),
]
DELTA_BATCHES = [(100, 5000, 1_700_000_000_000_000), (120, 5100, 1_700_000_000_000_500),
                 (199, 5900, 1_700_000_000_009_000)]


@pytest.fixture
def delta_path(tmp_path: Path) -> Path:
    path = tmp_path / "delta.layer"
    write_layer(path, delta(100, 200), DELTA_PAGES, DELTA_METAS, DELTA_BATCHES)
    return path


def read_everything(reader: LayerReader) -> None:
    """Read every piece of data the layer holds (values, metas, batches)."""
    list(reader.iter_pages())
    reader.metas()
    reader.batches()


# -- roundtrips ---------------------------------------------------------------------------


def test_delta_roundtrip(delta_path: Path) -> None:
    size = delta_path.stat().st_size
    assert not delta_path.with_name(delta_path.name + ".tmp").exists()
    with LayerReader(delta_path, name="delta-1") as reader:
        assert reader.name == "delta-1"
        assert reader.size == size
        assert reader.summary == delta(100, 200)
        assert reader.relations() == [REL_A, REL_B, REL_C]
        assert list(reader.iter_pages()) == DELTA_PAGES
        assert reader.read_values(np.arange(len(DELTA_PAGES))) == [p[3] for p in DELTA_PAGES]
        assert reader.read_values(np.array([4, 0, 4])) == [page(4), page(1), page(4)]
        assert reader.metas() == DELTA_METAS
        batches = reader.batches()
        assert batches.dtype == np.uint64 and batches.shape == (3, 3)
        assert batches.tolist() == [list(b) for b in DELTA_BATCHES]
        blocks, lsns = reader.page_index(REL_A)
        assert blocks.dtype == np.uint32 and lsns.dtype == np.uint64
        assert blocks.tolist() == [0, 0, 0, 3, 7]
        assert lsns.tolist() == [100, 120, 150, 110, 100]
        empty_blocks, empty_lsns = reader.page_index(MISSING)
        assert empty_blocks.size == 0 and empty_lsns.size == 0


def test_write_returns_size_and_accepts_generators(tmp_path: Path) -> None:
    path = tmp_path / "gen.layer"

    def pages() -> Iterator[PageEntry]:
        yield from DELTA_PAGES

    size = write_layer(path, delta(100, 200), pages(), iter(DELTA_METAS),
                       np.array(DELTA_BATCHES, dtype=np.uint64))
    assert size == path.stat().st_size
    with LayerReader(path) as reader:
        assert list(reader.iter_pages()) == DELTA_PAGES
        assert reader.batches().tolist() == [list(b) for b in DELTA_BATCHES]


def test_image_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "image.layer"
    summary = LayerSummary(LayerKind.IMAGE, page_key(REL_A, 0), page_key(REL_A, 1000), 500, 501)
    pages: list[PageEntry] = [(REL_A, b, 500, page(b) if b != 9 else None) for b in range(0, 40, 3)]
    write_layer(path, summary, pages, [])
    with LayerReader(path) as reader:
        assert reader.summary == summary
        assert list(reader.iter_pages()) == pages
        assert reader.metas() == [] and reader.batches().shape == (0, 3)
        idx, lsns = reader.find_pages(REL_A, np.array([3, 4, 9, 39, 0]), 500)
        assert idx.tolist() == [1, -1, 3, 13, 0]
        assert lsns.tolist() == [500, 0, 500, 500, 500]
        assert reader.read_values(idx[idx >= 0]) == [page(3), None, page(39), page(0)]
        assert reader.find_pages(REL_A, np.array([3]), 499)[0].tolist() == [-1]
        assert reader.find_pages(REL_A, np.array([3]), 10**12)[0].tolist() == [1]
    assert read_summary(path) == summary


def test_image_with_metas(tmp_path: Path) -> None:
    path = tmp_path / "image.layer"
    summary = LayerSummary(LayerKind.IMAGE, KEYSPACE_START, KEYSPACE_END, 7, 8)
    metas: list[MetaEntry] = [("PG_VERSION", 7, b"16"), ("base/5/16384", 7, b"x" * 1000)]
    write_layer(path, summary, [(REL_B, 1, 7, page(1))], metas)
    with LayerReader(path) as reader:
        assert reader.metas() == metas
        assert list(reader.iter_pages()) == [(REL_B, 1, 7, page(1))]


def test_empty_layer(tmp_path: Path) -> None:
    path = tmp_path / "empty.layer"
    write_layer(path, delta(1, 2), [], [])
    with LayerReader(path) as reader:
        assert reader.relations() == [] and list(reader.iter_pages()) == []
        assert reader.metas() == [] and reader.batches().shape == (0, 3)
        idx, lsns = reader.find_pages(REL_A, np.array([0, 1], dtype=np.uint32), 1)
        assert idx.tolist() == [-1, -1] and lsns.tolist() == [0, 0]
        assert reader.read_values(np.array([], dtype=np.int64)) == []


# -- find_pages ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lsn", "expected_index", "expected_lsn"),
    [
        (50, -1, 0),  # below the layer
        (99, -1, 0),
        (100, 0, 100),  # exactly the first version
        (119, 0, 100),  # between versions
        (120, 1, 120),
        (149, 1, 120),
        (150, 2, 150),  # the tombstone is the newest version
        (199, 2, 150),
        (10**15, 2, 150),  # far above the layer
    ],
)
def test_find_pages_versions(
    delta_path: Path, lsn: int, expected_index: int, expected_lsn: int
) -> None:
    with LayerReader(delta_path) as reader:
        idx, lsns = reader.find_pages(REL_A, np.array([0], dtype=np.uint32), lsn)
        assert idx.dtype == np.int64 and lsns.dtype == np.uint64
        assert (idx.tolist(), lsns.tolist()) == ([expected_index], [expected_lsn])


def test_find_pages_unsorted_duplicates_and_absent(delta_path: Path) -> None:
    with LayerReader(delta_path) as reader:
        blocks = np.array([7, 3, 0, 7, 5, 2**32 - 1, 3, 8], dtype=np.int64)
        idx, lsns = reader.find_pages(REL_A, blocks, 115)
        assert idx.tolist() == [4, 3, 0, 4, -1, -1, 3, -1]
        assert lsns.tolist() == [100, 110, 100, 100, 0, 0, 110, 0]
        assert reader.read_values(idx[idx >= 0]) == [page(4), random_page(3), page(1), page(4),
                                                      random_page(3)]
        idx, _ = reader.find_pages(REL_C, np.array([2, 2, 1]), 135)
        assert idx.tolist() == [6, 6, -1]
        assert reader.read_values(idx[:1]) == [None]
        idx, lsns = reader.find_pages(MISSING, np.array([0, 1, 2]), 150)
        assert idx.tolist() == [-1, -1, -1] and lsns.tolist() == [0, 0, 0]
        assert reader.find_pages(REL_A, np.array([], dtype=np.uint32), 150)[0].size == 0


def test_find_pages_and_read_values_reject_bad_arguments(delta_path: Path) -> None:
    with LayerReader(delta_path) as reader:
        for bad in (np.array([-1]), np.array([2**32]), np.array([[1]]), np.array([1.0])):
            with pytest.raises(ValueError):
                reader.find_pages(REL_A, bad, 150)
        for bad_index in (-1, len(DELTA_PAGES)):
            with pytest.raises(ValueError):
                reader.read_values(np.array([bad_index]))


entry_sets = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 12), st.integers(0, 20), st.booleans()),
    max_size=40,
    unique_by=lambda e: e[:3],
)
queries = st.lists(
    st.tuples(st.integers(0, 3), st.lists(st.integers(0, 14), max_size=8), st.integers(-2, 23)),
    min_size=1,
    max_size=6,
)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw_entries=entry_sets, lsn_start=st.sampled_from([0, 1000, 2**40]), lookups=queries)
def test_find_pages_matches_oracle(
    tmp_path: Path,
    raw_entries: list[tuple[int, int, int, bool]],
    lsn_start: int,
    lookups: list[tuple[int, list[int], int]],
) -> None:
    relations = [REL_A, REL_B, REL_C, MISSING]
    entries = [
        (relations[r], block, lsn_start + off, None if tomb else page(n))
        for n, (r, block, off, tomb) in enumerate(raw_entries)
    ]
    entries.sort(key=lambda e: (e[0].to_bytes(), e[1], e[2]))
    path = tmp_path / "prop.layer"
    write_layer(path, delta(lsn_start, lsn_start + 21), entries, [])
    with LayerReader(path) as reader:
        assert list(reader.iter_pages()) == entries
        for r, blocks, lsn_delta in lookups:
            relation, lsn = relations[r], max(0, lsn_start + lsn_delta)
            idx, lsns = reader.find_pages(relation, np.array(blocks, dtype=np.int64), lsn)
            for i, block in enumerate(blocks):
                matches = [n for n, e in enumerate(entries)
                           if e[0] == relation and e[1] == block and e[2] <= lsn]
                want = matches[-1] if matches else -1
                assert idx[i] == want
                assert lsns[i] == (entries[want][2] if matches else 0)
            found = idx[idx >= 0]
            assert reader.read_values(found) == [entries[n][3] for n in found.tolist()]


def test_concurrent_readers(delta_path: Path) -> None:
    with LayerReader(delta_path) as reader:
        blocks = np.array([0, 3, 7, 1, 0, 3], dtype=np.uint32)

        def lookup(lsn: int) -> list[bytes | None]:
            idx, _ = reader.find_pages(REL_A, blocks, lsn)
            return reader.read_values(idx[idx >= 0])

        lsns = [100 + i % 100 for i in range(400)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lookup, lsns))
        assert results == [lookup(lsn) for lsn in lsns]


# -- writer validation --------------------------------------------------------------------

P = page(0)
RANGE_A = (page_key(REL_A, 0), page_key(REL_A, 10))

INVALID_LAYERS: dict[str, tuple[LayerSummary, list[PageEntry], list[MetaEntry],
                                list[tuple[int, int, int]]]] = {
    "unsorted blocks": (delta(100, 200), [(REL_A, 5, 100, P), (REL_A, 4, 100, P)], [], []),
    "unsorted relations": (delta(100, 200), [(REL_B, 0, 100, P), (REL_A, 0, 100, P)], [], []),
    "unsorted lsns": (delta(100, 200), [(REL_A, 5, 110, P), (REL_A, 5, 100, P)], [], []),
    "duplicate page": (delta(100, 200), [(REL_A, 5, 100, P), (REL_A, 5, 100, None)], [], []),
    "lsn below range": (delta(100, 200), [(REL_A, 5, 99, P)], [], []),
    "lsn at range end": (delta(100, 200), [(REL_A, 5, 200, P)], [], []),
    "lsn offset >= 2**32": (delta(0, 2**33), [(REL_A, 5, 2**32, P)], [], []),
    "short page": (delta(100, 200), [(REL_A, 5, 100, P[:-1])], [], []),
    "empty page": (delta(100, 200), [(REL_A, 5, 100, b"")], [], []),
    "long page": (delta(100, 200), [(REL_A, 5, 100, P + b"x")], [], []),
    "block past key range": (delta(100, 200, *RANGE_A), [(REL_A, 10, 100, P)], [], []),
    "relation outside key range": (delta(100, 200, *RANGE_A), [(REL_B, 1, 100, P)], [], []),
    "block beyond u32": (delta(100, 200), [(REL_A, 2**32, 100, P)], [], []),
    "negative block": (delta(100, 200), [(REL_A, -1, 100, P)], [], []),
    "relation field beyond u32": (delta(100, 200), [(Relation(1663, 5, 2**32, 0), 0, 100, P)],
                                  [], []),
    "unsorted metas": (delta(100, 200), [], [("b", 100, b""), ("a", 100, b"")], []),
    "duplicate meta": (delta(100, 200), [], [("a", 100, b""), ("a", 100, None)], []),
    "meta lsn out of range": (delta(100, 200), [], [("a", 200, b"")], []),
    "meta outside key range": (delta(100, 200, *RANGE_A), [], [("a", 100, b"")], []),
    "unsorted batches": (delta(100, 200), [], [], [(120, 1, 1), (110, 1, 1)]),
    "batch out of range": (delta(100, 200), [], [], [(200, 1, 1)]),
    "negative batch field": (delta(100, 200), [], [], [(100, -1, 1)]),
    "image with batches": (LayerSummary(LayerKind.IMAGE, KEYSPACE_START, KEYSPACE_END, 5, 6),
                           [], [], [(5, 1, 1)]),
    "image spanning two lsns": (LayerSummary(LayerKind.IMAGE, KEYSPACE_START, KEYSPACE_END,
                                             5, 7), [], [], []),
    "empty lsn range": (delta(100, 100), [], [], []),
    "empty key range": (delta(100, 200, b"\x01", b"\x01"), [], [], []),
}


@pytest.mark.parametrize("case", sorted(INVALID_LAYERS))
def test_writer_rejects_invalid_input(tmp_path: Path, case: str) -> None:
    summary, pages, metas, batches = INVALID_LAYERS[case]
    path = tmp_path / "bad.layer"
    with pytest.raises(ValueError):
        write_layer(path, summary, pages, metas, batches)
    assert os.listdir(tmp_path) == []  # no layer and no leftover .tmp


def test_writer_accepts_range_edges(tmp_path: Path) -> None:
    """Keys and LSNs exactly at the inclusive starts and just below the exclusive ends."""
    summary = delta(100, 2**32 + 100, page_key(REL_A, 0), page_key(REL_A, 10))
    pages: list[PageEntry] = [(REL_A, 0, 100, P), (REL_A, 9, 2**32 + 99, P)]
    write_layer(tmp_path / "edges.layer", summary, pages, [])
    with LayerReader(tmp_path / "edges.layer") as reader:
        assert list(reader.iter_pages()) == pages
        idx, lsns = reader.find_pages(REL_A, np.array([9]), 2**40)
        assert idx.tolist() == [1] and lsns.tolist() == [2**32 + 99]


# -- corruption ---------------------------------------------------------------------------


def layout(raw: bytes) -> dict[str, tuple[int, int]]:
    """Regions of a layer file, decoded independently per docs/FORMAT.md."""
    header_length = struct.unpack_from("<I", raw, 12)[0]
    footer = struct.unpack_from("<9Q", raw, len(raw) - FOOTER_SIZE)
    stored = raw[footer[6] : footer[6] + footer[7]]
    version = struct.unpack_from("<H", raw, 8)[0]
    index = zstandard.ZstdDecompressor().decompress(stored) if version >= 3 \
        else lz4.block.decompress(stored)
    relation_count, _, entry_count = struct.unpack_from("<IIQ", index)
    pos = 16 + 8 * (relation_count + 1)
    offsets = np.frombuffer(index, "<u8", entry_count, pos)
    lengths = np.frombuffer(index, "<u4", entry_count, pos + 16 * entry_count)
    regions = {
        "header": (0, header_length),
        "meta": (footer[2], footer[3]),
        "batch": (footer[4], footer[5]),
        "index": (footer[6], footer[7]),
        "footer": (len(raw) - FOOTER_SIZE, FOOTER_SIZE),
    }
    for n, (offset, length) in enumerate(zip(offsets.tolist(), lengths.tolist(), strict=True)):
        if length:
            regions[f"entry {n}"] = (offset, length)
    return regions


def test_layout_matches_documented_format(delta_path: Path) -> None:
    raw = delta_path.read_bytes()
    regions = layout(raw)
    assert raw[:8] == raw[-8:] == b"STRLAYR1"
    assert struct.unpack_from("<HB", raw, 8) == (3, LayerKind.DELTA)
    assert struct.unpack_from("<QQ", raw, 16) == (100, 200)
    covered = sorted(regions.values())
    assert covered[0][0] == 0 and sum(length for _, length in covered) == len(raw)
    assert all(a + n == b for (a, n), (b, _) in pairwise(covered))
    start, length = regions["entry 3"]  # the incompressible page is stored raw, tag 0
    assert raw[start + 4 : start + length] == b"\x00" + random_page(3)
    assert zlib.crc32(raw[start + 4 : start + length]) == struct.unpack_from("<I", raw, start)[0]


def test_every_single_byte_flip_is_detected(tmp_path: Path, delta_path: Path) -> None:
    raw = delta_path.read_bytes()
    raw_start, raw_length = layout(raw)["entry 3"]
    raw_payload = range(raw_start + 4, raw_start + raw_length)
    positions = [p for p in range(len(raw)) if p not in raw_payload or p % 97 == 0]
    target = tmp_path / "flipped.layer"
    for position in positions:
        flipped = bytearray(raw)
        flipped[position] ^= 0x01 if position % 2 else 0xFF
        target.write_bytes(flipped)
        with pytest.raises(CorruptionError):
            with LayerReader(target) as reader:
                read_everything(reader)
            pytest.fail(f"flip at byte {position} went unnoticed")


@pytest.mark.parametrize("region", ["meta", "batch", "entry 0", "entry 3"])
def test_corruption_is_local_to_the_damaged_section(
    tmp_path: Path, delta_path: Path, region: str
) -> None:
    raw = bytearray(delta_path.read_bytes())
    start, length = layout(bytes(raw))[region]
    raw[start + length // 2] ^= 0x10
    target = tmp_path / "damaged.layer"
    target.write_bytes(raw)
    readers: dict[str, Callable[[LayerReader], object]] = {
        "meta": LayerReader.metas,
        "batch": LayerReader.batches,
        "entry 0": lambda r: r.read_values(np.array([0])),
        "entry 3": lambda r: r.read_values(np.array([3])),
    }
    with LayerReader(target, name="L-42") as reader:
        with pytest.raises(CorruptionError, match=f"L-42.*{region}"):
            readers[region](reader)
        assert reader.find_pages(REL_A, np.array([7]), 150)[0].tolist() == [4]
        assert reader.read_values(np.array([4])) == [page(4)]  # other frames still readable
        if region != "meta":
            assert reader.metas() == DELTA_METAS


@pytest.mark.parametrize("keep", [0, 1, 20, 60, 500, -FOOTER_SIZE - 1, -FOOTER_SIZE, -9, -1])
def test_truncated_file_is_corrupt(tmp_path: Path, delta_path: Path, keep: int) -> None:
    raw = delta_path.read_bytes()
    target = tmp_path / "short.layer"
    target.write_bytes(raw[:keep])
    with pytest.raises(CorruptionError, match=r"short\.layer"):
        LayerReader(target)


def test_not_a_layer_file(tmp_path: Path) -> None:
    target = tmp_path / "junk"
    target.write_bytes(os.urandom(4096))
    with pytest.raises(CorruptionError):
        LayerReader(target)
    with pytest.raises(CorruptionError):
        read_summary(target)


def test_unsupported_version_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "future.layer"
    monkeypatch.setattr(layer_file, "FORMAT_VERSION", 4)
    write_layer(path, delta(1, 2), [], [])
    monkeypatch.undo()
    with pytest.raises(CorruptionError, match="unsupported format version 4"):
        LayerReader(path)
    with pytest.raises(CorruptionError, match="unsupported format version 4"):
        read_summary(path)


# -- read_summary -------------------------------------------------------------------------


def test_read_summary(tmp_path: Path, delta_path: Path) -> None:
    assert read_summary(delta_path) == delta(100, 200)
    summary = LayerSummary(LayerKind.DELTA, meta_key("base"), page_key(REL_B, 7), 3, 2**63)
    path = tmp_path / "ranged.layer"
    write_layer(path, summary, [(REL_A, 1, 3, None)], [("base/5", 4, b"m")])
    assert read_summary(path) == summary
    raw = bytearray(path.read_bytes())
    raw[20] ^= 0x04  # inside lsn_start
    path.write_bytes(raw)
    with pytest.raises(CorruptionError, match="header checksum"):
        read_summary(path)
    path.write_bytes(raw[:30])
    with pytest.raises(CorruptionError, match="truncated"):
        read_summary(path)


# -- patches, zstd (format 3), and format 1 and 2 files ----------------------------------


def wal_page_versions(count: int, record: int = 300) -> list[bytes]:
    """The versions of a WAL page as PostgreSQL rewrites it: each one the last plus a
    record of ``record`` distinct bytes, zeros after it, and a header field that moves."""
    rng = np.random.default_rng(count)
    versions = []
    page = bytearray(PAGE_SIZE)
    for n in range(count):
        at = 24 + (n * record) % (PAGE_SIZE - 24 - record)
        page[at:at + record] = rng.integers(0, 256, record, dtype=np.uint8).tobytes()
        page[16:20] = n.to_bytes(4, "little")
        versions.append(bytes(page))
    return versions


def frame_tags(raw: bytes) -> list[int]:
    """The encoding byte of every frame, in entry order (docs/FORMAT.md)."""
    regions = layout(raw)
    return [raw[regions[name][0] + 4] for name in sorted(
        (n for n in regions if n.startswith("entry ")), key=lambda n: int(n.split()[1]))]


def test_versions_of_a_page_are_stored_as_patches(tmp_path: Path) -> None:
    versions = wal_page_versions(100)
    entries: list[PageEntry] = [(REL_A, 5, 10 + n, v) for n, v in enumerate(versions)]
    entries += [(REL_A, 6, 10, page(1)), (REL_A, 6, 11, None), (REL_A, 6, 12, page(2))]
    # Each commit also versions its segment's metadata and adds a batch record.
    metas: list[MetaEntry] = [("pg_wal/000000010000000000000001", 10 + n,
                               bytes(31) + n.to_bytes(8, "big") + bytes(16)) for n in range(100)]
    batches = [(10 + n, 0x1000000 + 300 * n, 1_700_000_000_000_000 + 1000 * n)
               for n in range(100)]
    path = tmp_path / "wal.layer"
    size = write_layer(path, delta(10, 200), entries, metas, batches)
    # Each version costs about its new record (300 random bytes), not a page; a whole
    # page (random, hence raw) starts each chain. Metas and batches are packed.
    assert size < 100 * (300 + 40) + 4 * (PAGE_SIZE + 100) + 2 * PAGE_SIZE + 100 * 40
    tags = frame_tags(path.read_bytes())
    whole = [n for n, tag in enumerate(tags[:100]) if tag in (0, 4)]
    assert whole == list(range(0, 100, layer_file.MAX_PATCH_CHAIN + 1))  # chains bounded
    assert tags[100:] == [4, 4]  # a version after a tombstone is stored whole (zstd)
    with LayerReader(path) as reader:
        assert list(reader.iter_pages()) == entries
        order = np.random.default_rng(7).permutation(len(entries))
        assert reader.read_values(order) == [entries[n][3] for n in order.tolist()]
        idx, _ = reader.find_pages(REL_A, np.array([5, 5]), 10 + 64)
        assert reader.read_values(idx) == [versions[64], versions[64]]
        assert reader.metas() == metas
        assert reader.batches().tolist() == [list(b) for b in batches]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.lists(st.tuples(st.integers(0, PAGE_SIZE - 1), st.binary(max_size=40)),
                               max_size=6), min_size=1, max_size=45),
       tombstone_at=st.integers(-1, 44))
def test_edited_versions_roundtrip(tmp_path: Path, edits: list[list[tuple[int, bytes]]],
                                   tombstone_at: int) -> None:
    entries: list[PageEntry] = []
    current = bytearray(page(3))
    for n, changes in enumerate(edits):
        for at, data in changes:
            current[at:at + len(data)] = data[:PAGE_SIZE - at]
        entries.append((REL_B, 1, n, None if n == tombstone_at else bytes(current)))
    path = tmp_path / "edits.layer"
    write_layer(path, delta(0, 50), entries, [])
    with LayerReader(path) as reader:
        assert list(reader.iter_pages()) == entries
        assert reader.read_values(np.arange(len(entries))[::-1]) == [
            e[3] for e in reversed(entries)]


def test_a_damaged_base_fails_the_patches_over_it(tmp_path: Path) -> None:
    versions = wal_page_versions(3)
    path = tmp_path / "chain.layer"
    write_layer(path, delta(1, 10), [(REL_A, 0, 1 + n, v) for n, v in enumerate(versions)], [])
    raw = bytearray(path.read_bytes())
    start, length = layout(bytes(raw))["entry 0"]
    raw[start + length // 2] ^= 0x20
    path.write_bytes(raw)
    with LayerReader(path, name="L-7") as reader, \
            pytest.raises(CorruptionError, match=r"L-7.*entry 0.*checksum"):
        reader.read_values(np.array([2]))


def test_format_1_files_stay_readable() -> None:
    """A file written by the format 1 writer (kept as test data) reads as it did."""
    path = Path(__file__).parent / "data" / "layer-format-1.layer"
    assert struct.unpack_from("<H", path.read_bytes(), 8) == (1,)
    with LayerReader(path) as reader:
        assert reader.format_version == 1
        assert list(reader.iter_pages()) == DELTA_PAGES
        assert reader.read_values(np.arange(len(DELTA_PAGES))[::-1]) == [
            p[3] for p in reversed(DELTA_PAGES)]
        assert reader.metas() == DELTA_METAS
        assert reader.batches().tolist() == [list(b) for b in DELTA_BATCHES]
    assert read_summary(path) == delta(100, 200)


def format_2_pages() -> list[PageEntry]:
    """What ``tests/unit/data/layer-format-2.layer`` holds: the fixture's pages with a chain
    of raw patches (REL_B block 0) and of lz4 patches (REL_B block 1) after the first four."""
    edited, current = [], bytearray(page(7))
    for n in range(5):
        current[100 + 300 * n: 400 + 300 * n] = bytes([n + 1]) * 300
        edited.append(bytes(current))
    return (DELTA_PAGES[:5] + [(REL_B, 0, 160 + n, v) for n, v in enumerate(wal_page_versions(40))]
            + [(REL_B, 1, 150 + n, v) for n, v in enumerate(edited)] + DELTA_PAGES[6:])


def test_format_2_files_stay_readable() -> None:
    """A file written by the format 2 writer (lz4 pages and patches, lz4 sections) reads
    as it did, every encoding of format 2 included."""
    path = Path(__file__).parent / "data" / "layer-format-2.layer"
    raw = path.read_bytes()
    assert struct.unpack_from("<H", raw, 8) == (2,)
    assert sorted(set(frame_tags(raw))) == [0, 1, 2, 3]
    pages = format_2_pages()
    with LayerReader(path) as reader:
        assert reader.format_version == 2
        assert list(reader.iter_pages()) == pages
        assert reader.read_values(np.arange(len(pages))[::-1]) == [
            p[3] for p in reversed(pages)]
        assert reader.metas() == DELTA_METAS
        assert reader.batches().tolist() == [list(b) for b in DELTA_BATCHES]


def test_format_3_stores_pages_and_patches_as_zstd(tmp_path: Path) -> None:
    """Compressible pages and patches are zstd frames (tags 4 and 5), smaller than lz4
    stores them; sections are zstd frames too."""
    pages = format_2_pages()
    path = tmp_path / "zstd.layer"
    write_layer(path, delta(100, 200), pages, DELTA_METAS, DELTA_BATCHES)
    raw = path.read_bytes()
    assert sorted(set(frame_tags(raw))) == [0, 2, 4, 5]
    regions = layout(raw)
    for name in ("meta", "batch", "index"):
        start, length = regions[name]
        assert zstandard.frame_content_size(raw[start:start + length]) > 0
    assert len(raw) < (Path(__file__).parent / "data" / "layer-format-2.layer").stat().st_size
    with LayerReader(path) as reader:
        assert list(reader.iter_pages()) == pages


def test_a_format_2_encoding_in_a_format_3_file_is_corrupt(tmp_path: Path) -> None:
    """Each version admits only its own encodings: an lz4 tag in a format 3 file is
    refused, not guessed at."""
    path = tmp_path / "mixed.layer"
    write_layer(path, delta(100, 200), DELTA_PAGES, DELTA_METAS, DELTA_BATCHES)
    raw = bytearray(path.read_bytes())
    start, length = layout(bytes(raw))["entry 0"]
    assert raw[start + 4] == 4
    raw[start + 4] = 1  # claims an lz4 page
    raw[start:start + 4] = struct.pack("<I", zlib.crc32(raw[start + 4:start + length]))
    path.write_bytes(raw)
    with LayerReader(path, name="L-9") as reader, \
            pytest.raises(CorruptionError, match=r"L-9.*entry 0.*unknown value encoding 1"):
        reader.read_values(np.array([0]))
