"""What a branch's history wrote after a point, by relation, from its layers alone.

A line of history is a chain of timelines, each holding the LSNs from its branch point
up. The page versions written in ``(since, upto]`` are the entries of the delta layers
and memtables of that chain in that range: their indexes give block and LSN without
decompressing a page. Image layers are left out (compaction writes every page of a range
into them, changed or not). Relations created or dropped in between are those whose
files exist at one end only; names come from the catalog at the end where the relation
exists (``pageserver.catalog``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from common.errors import NotFoundError
from common.keys import Relation
from common.ops import FileKind, FileMeta
from pageserver import catalog
from pageserver.memtable import Memtable
from pageserver.timeline import Timeline


@dataclass(frozen=True)
class Stretch:
    """The LSNs ``(lo, hi]`` of the line that one timeline holds."""

    timeline: Timeline
    lo: int
    hi: int


def stretches(timeline: Timeline, since: int, upto: int) -> list[Stretch]:
    """The timelines holding ``(since, upto]`` of ``timeline``'s line, newest first."""
    found: list[Stretch] = []
    current: Timeline | None = timeline
    hi = upto
    while current is not None and hi > since:
        lo = max(since, current.branch_lsn)
        found.append(Stretch(current, lo, hi))
        hi, current = current.branch_lsn, current.ancestor
    return found


@dataclass
class Written:
    """Page versions written per relation (every fork), as sets of blocks per fork."""

    blocks: dict[Relation, list[np.ndarray]] = field(default_factory=lambda: defaultdict(list))
    writes: dict[Relation, int] = field(default_factory=lambda: defaultdict(int))
    sources: int = 0
    complete: bool = True

    def add(self, relation: Relation, blocks: np.ndarray) -> None:
        if blocks.size:
            self.blocks[relation].append(blocks)
            self.writes[relation] += int(blocks.size)

    def pages(self, relation: Relation) -> int:
        return int(np.unique(np.concatenate(self.blocks[relation])).size)


def written(stretch_list: list[Stretch]) -> Written:
    """Walk the delta layers and memtables of each stretch for versions in its range."""
    found = Written()
    for stretch in stretch_list:
        timeline, lo, hi = stretch.timeline, stretch.lo, stretch.hi
        if timeline.gc_cutoff > lo and lo not in timeline.retain_lsns():
            found.complete = False
        for source in timeline.read_sources():
            if isinstance(source, Memtable):
                with timeline.lock:  # ingest adds to the open memtable
                    _memtable_versions(found, source, lo, hi)
                continue
            if source.is_image or source.lsn_end <= lo + 1 or source.lsn_start > hi:
                continue
            found.sources += 1
            with source.reading() as reader:
                for relation in reader.relations():
                    blocks, lsns = reader.page_index(relation)
                    found.add(relation, blocks[(lsns > lo) & (lsns <= hi)])
    return found


def _memtable_versions(found: Written, memtable: Memtable, lo: int, hi: int) -> None:
    if memtable.lsn_end <= lo + 1 or memtable.lsn_start > hi:
        return
    found.sources += 1
    for relation, blocks in memtable.pages.items():
        hits = [block for block, versions in blocks.items()
                for lsn, _ in versions if lo < lsn <= hi]
        found.add(relation, np.asarray(hits, dtype=np.uint32))


@dataclass(frozen=True)
class RelationChange:
    """One relation's changes, named."""

    relation: Relation  # fork 0
    database: str
    name: catalog.RelationName | None
    change: str  # written, created or dropped
    pages: int
    writes: int


@dataclass(frozen=True)
class Changes:
    """What ``changes`` found."""

    since_lsn: int
    upto_lsn: int
    relations: list[RelationChange]
    other_pages: int
    layers_read: int
    complete: bool


def _relations_of(files: dict[str, FileMeta]) -> set[Relation]:
    """The relations (fork 0, segment 0 and up) that files of a data directory hold."""
    found = set()
    for meta in files.values():
        if meta.kind == FileKind.FILE and meta.relation:
            relation = Relation.from_bytes(meta.relation)
            if not relation.is_synthetic:
                found.add(relation._replace(fork=0))
    return found


class _Catalog:
    """Names at one LSN, read once per database on first need."""

    def __init__(self, timeline: Timeline, lsn: int, files: dict[str, FileMeta]) -> None:
        self._timeline, self._lsn, self._files = timeline, lsn, files
        self._databases: dict[int, str] | None = None
        self._relations: dict[int, dict[int, catalog.RelationName]] = {}

    def read(self, path: str) -> bytes | None:
        if path not in self._files:
            return None
        try:
            return self._timeline.read_file(path, lsn=self._lsn)
        except NotFoundError:
            return None

    def database(self, db: int) -> str:
        if self._databases is None:
            self._databases = catalog.database_names(self.read)
        return self._databases.get(db, "")

    def name(self, relation: Relation) -> catalog.RelationName | None:
        if relation.db == 0:
            return None  # shared catalogs: global/
        if relation.db not in self._relations:
            self._relations[relation.db] = catalog.relation_names(self.read, relation.db)
        return self._relations[relation.db].get(relation.rel)


def changes(timeline: Timeline, since: int, upto: int) -> Changes:
    """The changes of ``timeline``'s line of history in ``(since, upto]``."""
    found = written(stretches(timeline, since, upto))
    before_files, after_files = timeline.list_files(since), timeline.list_files(upto)
    before, after = _relations_of(before_files), _relations_of(after_files)
    old, new = _Catalog(timeline, since, before_files), _Catalog(timeline, upto, after_files)
    pages: dict[Relation, int] = defaultdict(int)
    writes: dict[Relation, int] = defaultdict(int)
    other = 0
    for relation in found.blocks:
        if relation.is_synthetic:
            other += found.pages(relation)
            continue
        main = relation._replace(fork=0)
        pages[main] += found.pages(relation)
        writes[main] += found.writes[relation]
    listed = []
    for relation in sorted(set(pages) | (before ^ after)):
        if relation not in after:
            change, names = "dropped", old
        else:
            change, names = ("written" if relation in before else "created"), new
        listed.append(RelationChange(relation, names.database(relation.db),
                                     names.name(relation), change, pages.get(relation, 0),
                                     writes.get(relation, 0)))
    listed.sort(key=lambda item: (-item.pages, item.relation))
    return Changes(since, upto, listed, other, found.sources, found.complete)

