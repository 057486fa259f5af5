"""The read path: newest version at or below an LSN across memtables, layers and ancestors.

Sources of one timeline are visited newest first (by the end of their LSN
range). A block stops being searched once the version found for it is at least
as new as anything a later source could hold. A delta layer answers with its
newest version <= the read LSN; an image layer at LSN ``c`` answers for every
key of its key range (a key it lacks is absent at ``c``), except a partial image
(a branch's: it holds every key the branch itself wrote up to ``c``, tombstones
included), which answers like a delta: a key it lacks is one the branch inherits.
Whatever a timeline cannot answer continues in its ancestor at ``min(lsn, branch_lsn)``. Layer
lookups are vectorised over the batch of blocks with numpy.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator
from typing import Protocol

import numpy as np

from common.keys import PAGE_PREFIX, ZERO_PAGE, Relation, meta_key, relation_block_range
from pageserver.layer import Layer
from pageserver.layer_file import LayerReader
from pageserver.memtable import Memtable, newest_version


class ReadableTimeline(Protocol):
    """What the read path needs from a timeline."""

    @property
    def lock(self) -> threading.RLock: ...

    @property
    def ancestor(self) -> ReadableTimeline | None: ...

    @property
    def branch_lsn(self) -> int: ...

    def read_sources(self) -> list[Memtable | Layer]:
        """Memtables and layers, sorted by the end of their LSN range, newest first."""
        ...


def read_pages(
    timeline: ReadableTimeline, relation: Relation, blocks: np.ndarray, lsn: int
) -> list[bytes]:
    """The 8 KB images of ``blocks`` of ``relation`` as of ``lsn`` (zeros where absent)."""
    blocks = np.asarray(blocks, dtype=np.int64)
    count = len(blocks)
    best = np.full(count, -1, dtype=np.int64)  # LSN of the version picked so far
    pick_layer = np.full(count, -1, dtype=np.int64)  # index into `layers`, -1: in `direct`
    pick_entry = np.zeros(count, dtype=np.int64)
    direct: dict[int, bytes | None] = {}  # picks from memtables, and image-absent keys
    layers: list[Layer] = []
    current: ReadableTimeline | None = timeline
    remaining = np.arange(count)
    while current is not None and remaining.size:
        for source in current.read_sources():
            if source.lsn_start > lsn:
                continue
            candidates = remaining[best[remaining] < min(source.lsn_end - 1, lsn)]
            if not candidates.size:
                break
            if isinstance(source, Memtable):
                with current.lock:
                    for pos in candidates.tolist():
                        found = source.get_page(relation, int(blocks[pos]), lsn)
                        if found is not None and found[0] > best[pos]:
                            best[pos], pick_layer[pos], direct[pos] = found[0], -1, found[1]
                continue
            improved, entries, lsns = _search_layer(
                source, relation, blocks[candidates], lsn, best[candidates]
            )
            picked = candidates[improved]
            best[picked] = lsns
            hit = entries >= 0
            pick_layer[picked[hit]] = len(layers)
            pick_entry[picked[hit]] = entries[hit]
            pick_layer[picked[~hit]] = -1
            for pos in picked[~hit].tolist():
                direct[pos] = None
            layers.append(source)
        remaining = remaining[best[remaining] < 0]
        lsn = min(lsn, current.branch_lsn)
        current = current.ancestor
    result = [ZERO_PAGE] * count
    for pos, value in direct.items():
        if pick_layer[pos] < 0 and value is not None:
            result[pos] = value
    for layer_no in np.unique(pick_layer[pick_layer >= 0]).tolist():
        positions = np.flatnonzero(pick_layer == layer_no)
        with layers[layer_no].reading() as reader:
            values = reader.read_values(pick_entry[positions])
        for pos, value in zip(positions.tolist(), values, strict=True):
            if value is not None:
                result[pos] = value
    return result


def stored_blocks(
    timeline: ReadableTimeline, relation: Relation, lo: int, hi: int, lsn: int
) -> np.ndarray:
    """The sorted blocks in ``[lo, hi)`` of ``relation`` that hold any version (a page or a
    tombstone) at or below ``lsn``, ancestors included.

    Every other block of the range reads as zeros already, so these are the only ones a
    shrink must tombstone: its cost follows the data stored, never the size a file names.
    """
    found: list[np.ndarray] = []
    current: ReadableTimeline | None = timeline
    while current is not None:
        for source in current.read_sources():
            if source.lsn_start > lsn:
                continue
            if isinstance(source, Memtable):
                with current.lock:
                    found.append(np.asarray(source.blocks_in(relation, lo, hi, lsn),
                                            dtype=np.int64))
                continue
            covered_lo, covered_hi = relation_block_range(
                relation, source.desc.key_start, source.desc.key_end)
            if covered_hi <= lo or covered_lo >= hi:
                continue  # not this layer's keys: no need to open (or download) it
            with source.reading() as reader:
                blocks, lsns = reader.page_index(relation)
            first, last = np.searchsorted(blocks, [lo, hi]).tolist()
            found.append(blocks[first:last][lsns[first:last] <= lsn].astype(np.int64))
        lsn = min(lsn, current.branch_lsn)
        current = current.ancestor
    return np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)


def _search_layer(
    layer: Layer, relation: Relation, blocks: np.ndarray, lsn: int, best: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which blocks this layer improves on, their entries (-1: absent) and LSNs."""
    with layer.reading() as reader:
        return _search_reader(layer, reader, relation, blocks, lsn, best)


def _search_reader(
    layer: Layer, reader: LayerReader, relation: Relation, blocks: np.ndarray, lsn: int,
    best: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, hi = relation_block_range(relation, layer.desc.key_start, layer.desc.key_end)
    inside = (blocks >= lo) & (blocks < hi)
    nothing = np.empty(0, np.int64)
    if layer.is_image and not layer.desc.partial:  # answers for every key in its range
        improved = inside & (best < layer.lsn_start)
        if not improved.any():
            return improved, nothing, nothing
        entries, _ = reader.find_pages(relation, blocks[improved], lsn)
        return improved, entries, np.full(len(entries), layer.lsn_start, dtype=np.int64)
    improved = np.zeros(len(blocks), dtype=bool)
    candidates = np.flatnonzero(inside)
    if not candidates.size:
        return improved, nothing, nothing
    entries, entry_lsns = reader.find_pages(relation, blocks[candidates], lsn)
    found_lsns = entry_lsns.astype(np.int64)
    better = (entries >= 0) & (found_lsns > best[candidates])
    improved[candidates[better]] = True
    return improved, entries[better], found_lsns[better]


def read_metas(
    timeline: ReadableTimeline, lsn: int, paths: Collection[str] | None = None
) -> dict[str, bytes]:
    """Encoded metadata of every live path (or of ``paths`` only) as of ``lsn``."""
    best: dict[str, tuple[int, bytes | None]] = {}
    covered: list[tuple[bytes, bytes, int]] = []  # image key ranges and their LSN
    current: ReadableTimeline | None = timeline
    while current is not None:
        for source in current.read_sources():
            if source.lsn_start > lsn:
                continue
            image_paths: set[str] = set()
            for path, version in _source_metas(current, source, lsn, paths):
                image_paths.add(path)
                previous = best.get(path)
                if previous is not None:
                    if version[0] > previous[0]:
                        best[path] = version
                elif not _is_covered(covered, path, version[0]):
                    best[path] = version
            if isinstance(source, Layer) and source.is_image \
                    and source.desc.key_start < PAGE_PREFIX:  # else it holds pages only
                start, end, at = source.desc.key_start, source.desc.key_end, source.lsn_start
                for path, version in best.items():
                    if version[0] < at and path not in image_paths \
                            and start <= meta_key(path) < end:
                        best[path] = (at, None)
                covered.append((start, end, at))
        lsn = min(lsn, current.branch_lsn)
        current = current.ancestor
    return {path: value for path, (_, value) in best.items() if value is not None}


def _is_covered(covered: list[tuple[bytes, bytes, int]], path: str, lsn: int) -> bool:
    key = meta_key(path)
    return any(start <= key < end and at >= lsn for start, end, at in covered)


def _source_metas(
    timeline: ReadableTimeline, source: Memtable | Layer, lsn: int,
    paths: Collection[str] | None,
) -> Iterator[tuple[str, tuple[int, bytes | None]]]:
    """The newest version <= ``lsn`` of each path in one source."""
    if isinstance(source, Memtable):
        with timeline.lock:
            table = dict(source.metas) if paths is None else {
                p: source.metas[p] for p in paths if p in source.metas
            }
            found = [(p, newest_version(v, lsn)) for p, v in table.items()]
    else:
        versions = source.meta_versions()
        wanted = versions.keys() if paths is None else [p for p in paths if p in versions]
        found = [(p, newest_version(versions[p], lsn)) for p in wanted]
    for path, version in found:
        if version is not None:
            yield path, version
