"""Compaction: L0 deltas into key-partitioned L1 deltas, and image layers where deltas stack up.

L0 deltas each cover the whole key space for a short LSN range, so a read of
one key touches all of them. Merging them into L1 deltas partitioned by key
bounds the files a read opens; image layers bound how many versions a read
must look past and let GC drop old deltas.

On a branch an image holds only the pages the branch itself wrote (a partial image,
tombstones for those that read as zeros): the pages it inherits unchanged stay its
ancestor's, read there at the branch point, so a fork never copies them.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from common.keys import (
    KEYSPACE_END,
    KEYSPACE_START,
    ZERO_PAGE,
    Relation,
    page_key,
    relation_block_range,
)
from pageserver.config import EngineConfig
from pageserver.layer import Layer
from pageserver.layer_file import LayerKind, LayerReader, LayerSummary
from pageserver.reads import read_metas, read_pages
from pageserver.timeline import MetaEntry, PageEntry, Timeline

READ_CHUNK = 4096  # pages read per call while materialising an image


@dataclass
class CompactionResult:
    l0_merged: int = 0
    l1_written: int = 0
    images_written: int = 0


def compact(timeline: Timeline, config: EngineConfig, force: bool = False) -> CompactionResult:
    """One compaction pass; ``force`` merges any L0s and images any stacked range.

    Passes over one timeline (the background one, an on-demand ``Compact``) run one after
    the other: two at once would both merge the same L0s, publishing duplicate layers.
    """
    result = CompactionResult()
    with timeline.compaction_lock:
        merge_l0(timeline, config, result, force)
        create_images(timeline, config, result, force)
    return result


# --- L0 -> L1 -------------------------------------------------------------------


def merge_l0(timeline: Timeline, config: EngineConfig, result: CompactionResult,
             force: bool = False) -> None:
    with timeline.lock:
        l0 = sorted((layer for layer in timeline.layers if layer.desc.level == 0),
                    key=lambda layer: layer.lsn_start)
    if not l0 or (len(l0) < config.l0_compaction_threshold and not (force and len(l0) > 1)):
        return
    with ExitStack() as held:  # every L0 is read until the last L1 is written
        readers = [held.enter_context(layer.reading()) for layer in l0]
        added = _merge_into_l1(timeline, config, l0, readers)
    timeline.replace_layers(added, l0)
    result.l0_merged += len(l0)
    result.l1_written += len(added)


def _merge_into_l1(timeline: Timeline, config: EngineConfig, l0: list[Layer],
                   readers: list[LayerReader]) -> list[Layer]:
    """Write the L1 deltas holding every entry of ``l0`` (read through ``readers``)."""
    bounds = _partition_bounds(_key_counts(l0), config.l1_target_entries)
    lsn_start, lsn_end = l0[0].lsn_start, max(layer.lsn_end for layer in l0)
    pages = _Peekable(heapq.merge(*(r.iter_pages() for r in readers), key=_entry_order))
    metas: list[MetaEntry] = sorted(
        (entry for r in readers for entry in r.metas()),
        key=lambda entry: (entry[0].encode(), entry[1]),
    )
    batches: list[tuple[int, int, int]] = sorted(
        (int(lsn), int(wal_lsn), int(ts)) for r in readers for lsn, wal_lsn, ts in r.batches()
    )
    added: list[Layer] = []
    for index, (start, end) in enumerate(itertools.pairwise(bounds)):
        first = index == 0
        summary = LayerSummary(LayerKind.DELTA, start, end, lsn_start, lsn_end)
        added.append(timeline.write_layer(
            summary, pages.take_below(end), metas if first else [],
            batches if first else [], level=1,
        ))
    return added


def _entry_order(entry: PageEntry) -> tuple[bytes, int, int]:
    return entry[0].to_bytes(), entry[1], entry[2]


def _key_counts(layers: list[Layer]) -> dict[Relation, tuple[np.ndarray, np.ndarray]]:
    """Per relation: its distinct blocks across ``layers`` and their version counts."""
    per_relation: dict[Relation, list[np.ndarray]] = {}
    for layer in layers:
        with layer.reading() as reader:
            for relation in reader.relations():
                per_relation.setdefault(relation, []).append(reader.page_index(relation)[0])
    counts: dict[Relation, tuple[np.ndarray, np.ndarray]] = {}
    for relation, parts in per_relation.items():
        blocks, versions = np.unique(np.concatenate(parts), return_counts=True)
        counts[relation] = (blocks, versions)
    return counts


def _partition_bounds(
    counts: dict[Relation, tuple[np.ndarray, np.ndarray]], target: int
) -> list[bytes]:
    """Key boundaries [KEYSPACE_START, ..., KEYSPACE_END] of ~``target`` entries each.

    ``counts`` maps a relation to its sorted distinct blocks and their entry counts;
    a boundary is the first key of a partition, so no key's versions are split.
    """
    relations = sorted((rel for rel in counts if len(counts[rel][0])), key=Relation.to_bytes)
    bounds = [KEYSPACE_START]
    if relations:
        starts = np.cumsum([0] + [len(counts[rel][0]) for rel in relations])
        totals = np.cumsum(np.concatenate([counts[rel][1] for rel in relations]))
        cuts = np.searchsorted(totals, np.arange(target, totals[-1], target), side="left") + 1
        for cut in np.unique(cuts[cuts < len(totals)]).tolist():
            index = int(np.searchsorted(starts, cut, side="right")) - 1
            relation = relations[index]
            bounds.append(page_key(relation, int(counts[relation][0][cut - starts[index]])))
    bounds.append(KEYSPACE_END)
    return bounds


class _Peekable:
    """A sorted entry stream consumed partition by partition."""

    def __init__(self, entries: Iterator[PageEntry]) -> None:
        self._entries = entries
        self._head: PageEntry | None = next(entries, None)

    def take_below(self, end: bytes) -> Iterator[PageEntry]:
        while self._head is not None and page_key(self._head[0], self._head[1]) < end:
            yield self._head
            self._head = next(self._entries, None)


# --- image layers ------------------------------------------------------------------


def create_images(timeline: Timeline, config: EngineConfig, result: CompactionResult,
                  force: bool = False) -> None:
    """Write image layers at the newest LSN where reads would search too many deltas.

    Inside the history window an image cannot replace the deltas it covers (reads in the
    window still need them), so it only adds bytes: a range gets one only once a read at
    the newest LSN would search ``image_read_threshold`` stacked deltas, or with
    ``force`` wherever any delta is stacked. Images where the deltas they cover can go
    are GC's (``images_at_cutoff``).
    """
    head = timeline.disk_consistent_lsn
    with timeline.lock:
        layers = list(timeline.layers)
    layer_set = frozenset(layer.desc.name for layer in layers)
    if not force and timeline.image_check == layer_set:
        return  # nothing changed since the last check found no range worth an image
    if force or _deltas(layers, head) >= config.image_read_threshold:
        def at_head(stacked: list[Layer], newest_image: int, keys: int, start: bytes,
                    end: bytes) -> int | None:
            return head if force or len(stacked) >= config.image_read_threshold else None
        written = _write_images(timeline, config, layers, head, at_head)
        result.images_written += written
        if written:
            return
    timeline.image_check = layer_set


def images_at_cutoff(timeline: Timeline, config: EngineConfig, cutoff: int) -> int:
    """Write images at ``cutoff`` (the published GC cutoff) over the key ranges where they
    let GC delete more than they add; how many.

    The deltas an image at the cutoff lets go are those wholly at or below it that no
    retained LSN (checkpoint, child branch point) below the cutoff still reads. A range
    gets an image when those hold ``image_gain`` page versions per key of the range (the
    image holds one), or when ``image_threshold`` of them are stacked.
    """
    with timeline.compaction_lock:
        with timeline.lock:
            layers = list(timeline.layers)
        retained = [p for p in timeline.retain_lsns() if p < cutoff]
        removable = [layer for layer in layers
                     if not layer.is_image and layer.lsn_end - 1 <= cutoff
                     and not any(layer.lsn_start <= p for p in retained)]
        if not removable:
            return 0  # no image could let anything go: nothing to read

        def at_cutoff(stacked: list[Layer], newest_image: int, keys: int, start: bytes,
                      end: bytes) -> int | None:
            going = [layer for layer in stacked if layer in removable]
            if not going or cutoff <= newest_image:
                return None
            if len(going) >= config.image_threshold:
                return cutoff
            versions = sum(_entries_in(layer, start, end) for layer in going)
            return cutoff if versions >= config.image_gain * keys else None
        return _write_images(timeline, config, layers, cutoff, at_cutoff)


def _entries_in(layer: Layer, start: bytes, end: bytes) -> int:
    """Page versions the layer holds with keys in ``[start, end)``."""
    total = 0
    with layer.reading() as reader:
        for relation in reader.relations():
            lo, hi = relation_block_range(relation, start, end)
            if lo < hi:
                blocks = reader.page_index(relation)[0]
                first, last = np.searchsorted(blocks, [lo, hi]).tolist()
                total += last - first
    return total


def _deltas(layers: list[Layer], lsn: int) -> int:
    """Delta layers wholly at or below ``lsn``: an upper bound on those stacked there."""
    return sum(1 for layer in layers if not layer.is_image and layer.lsn_end - 1 <= lsn)


def _write_images(timeline: Timeline, config: EngineConfig, layers: list[Layer], head: int,
                  choose: Callable[[list[Layer], int, int, bytes, bytes], int | None]) -> int:
    """Per key range of the keys visible at ``head``: ``choose(stacked deltas, LSN of the
    newest image, keys in the range, start, end)`` gives the LSN of the image to write,
    or None; how many were written. On a branch, the keys are its own (partial images)."""
    partial = timeline.ancestor is not None
    keys = visible_keys(timeline, head, own_only=partial)
    bounds = _partition_bounds(
        {rel: (blocks, np.ones(len(blocks), dtype=np.int64)) for rel, blocks in keys.items()},
        config.image_partition_pages,
    )
    added: list[Layer] = []
    for start, end in itertools.pairwise(bounds):
        newest_image = max(
            (layer.lsn_start for layer in layers
             if layer.is_image and layer.desc.key_start <= start and end <= layer.desc.key_end),
            default=-1,
        )
        stacked = [layer for layer in layers
                   if not layer.is_image and layer.lsn_end - 1 > newest_image
                   and layer.desc.key_start < end and start < layer.desc.key_end]
        lsn = None
        if stacked and newest_image < head:
            lsn = choose(stacked, newest_image, _keys_in(keys, start, end), start, end)
        if lsn is None:
            continue
        summary = LayerSummary(LayerKind.IMAGE, start, end, lsn, lsn + 1)
        metas = [(path, lsn, value) for path, value in sorted(
            read_metas(timeline, lsn).items(), key=lambda item: item[0].encode()
        )] if start == KEYSPACE_START else []
        added.append(timeline.write_layer(
            summary, _image_pages(timeline, keys, start, end, lsn, partial), metas, level=1,
            partial=partial,
        ))
    if added:
        timeline.replace_layers(added, [])
    return len(added)


def _keys_in(keys: dict[Relation, np.ndarray], start: bytes, end: bytes) -> int:
    """How many of ``keys`` (sorted blocks per relation) fall in ``[start, end)``."""
    total = 0
    for relation, blocks in keys.items():
        lo, hi = relation_block_range(relation, start, end)
        if lo < hi:
            first, last = np.searchsorted(blocks, [lo, hi]).tolist()
            total += last - first
    return total


def visible_keys(timeline: Timeline, lsn: int,
                 own_only: bool = False) -> dict[Relation, np.ndarray]:
    """Every (relation, block) with a stored version at or below ``lsn``, ancestors included
    unless ``own_only``.

    Memtables count too: an ancestor's pages below the branch point may not be flushed
    yet, and an image layer that missed them would hide them (an image holds every key of
    its range, so a key it lacks reads as absent).
    """
    per_relation: dict[Relation, list[np.ndarray]] = {}
    current: Timeline | None = timeline
    while current is not None:
        for source in current.read_sources():
            if source.lsn_start > lsn:
                continue
            if not isinstance(source, Layer):
                with current.lock:
                    in_memory = source.blocks_at(lsn)
                for relation, block_list in in_memory.items():
                    per_relation.setdefault(relation, []).append(
                        np.asarray(block_list, dtype=np.int64))
                continue
            with source.reading() as reader:
                for relation in reader.relations():
                    blocks, lsns = reader.page_index(relation)
                    per_relation.setdefault(relation, []).append(blocks[lsns <= lsn])
        lsn = min(lsn, current.branch_lsn)
        current = None if own_only else current.ancestor
    return {rel: np.unique(np.concatenate(parts)) for rel, parts in per_relation.items()}


def _image_pages(timeline: Timeline, keys: dict[Relation, np.ndarray], start: bytes,
                 end: bytes, lsn: int, partial: bool) -> Iterator[PageEntry]:
    """The pages of ``keys`` in ``[start, end)`` at ``lsn``; zeros are left out of a full
    image (absent reads as zeros) and are tombstones in a partial one (absent: inherited)."""
    for relation in sorted(keys, key=Relation.to_bytes):
        lo, hi = relation_block_range(relation, start, end)
        blocks = keys[relation]
        blocks = blocks[(blocks >= lo) & (blocks < hi)]
        for offset in range(0, len(blocks), READ_CHUNK):
            chunk = blocks[offset : offset + READ_CHUNK]
            for block, value in zip(chunk.tolist(),
                                    read_pages(timeline, relation, chunk, lsn), strict=True):
                if value != ZERO_PAGE:
                    yield relation, block, lsn, value
                elif partial:
                    yield relation, block, lsn, None
