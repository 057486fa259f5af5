"""File-system semantics of a batch: turn file operations into page and metadata versions.

The applier validates the whole batch against the current file tree before
anything is committed, so a batch is applied entirely or not at all. Pages
are keyed by relation: a rename moves metadata only, never pages. Shrinking
or removing a file writes tombstones for the blocks it loses that hold a
version, so a later hole in a re-created file reads as zeros, never as stale
bytes.

What a batch costs the server follows the bytes it carries, not the sizes it
names: growing a file (by a truncate or a write far past its end) stores no
pages, and a shrink tombstones only blocks that are stored (``StoredBlocks``).
A file keyed by a RelTag is one PostgreSQL segment and never grows past one
(``RELSEG_BLOCKS``), which PostgreSQL never does either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from common.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from common.keys import (
    PAGE_SIZE,
    RELATION_BYTES,
    RELSEG_BLOCKS,
    Relation,
    path_slot,
)
from common.ops import (
    MAX_OPS_PER_BATCH,
    Batch,
    Chmod,
    Create,
    FileKind,
    FileMeta,
    FileOp,
    Mkdir,
    Rename,
    Rmdir,
    Truncate,
    Unlink,
    Write,
)
from common.pages import blocks_for, cut_page, truncate_tail, write_slices

MAX_FILE_SIZE = RELSEG_BLOCKS * PAGE_SIZE * 64  # 64 GB in one file is plenty for PGDATA
MAX_SEGMENT_SIZE = RELSEG_BLOCKS * PAGE_SIZE  # a relation segment file: 1 GB, as in PostgreSQL

PageReader = Callable[[Relation, int], bytes]
StoredBlocks = Callable[[Relation, int, int], Iterable[int]]
"""The blocks in ``[lo, hi)`` of a relation that hold a version (``reads.stored_blocks``)."""


def normalize_path(path: str) -> str:
    """Validate a PGDATA-relative path; the root directory is the empty string."""
    if path.startswith("/") or path.endswith("/") or "\x00" in path:
        raise InvalidArgumentError(f"invalid path {path!r}: must be relative, without '/' at ends")
    if path == "":
        return path
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidArgumentError(f"invalid path {path!r}: empty, '.' or '..' component")
    return path


def parent_of(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


@dataclass
class Effects:
    """The versions one batch produces, all at the batch's LSN."""

    pages: dict[tuple[Relation, int], bytes | None] = field(default_factory=dict)
    metas: dict[str, FileMeta | None] = field(default_factory=dict)


class BatchApplier:
    """Applies one batch at ``lsn`` over ``files`` without mutating it."""

    def __init__(
        self,
        files: dict[str, FileMeta],
        relations_in_use: set[tuple[bytes, int]],
        read_page: PageReader,
        stored_blocks: StoredBlocks,
        lsn: int,
        timestamp_us: int,
    ) -> None:
        self._files = files
        self._in_use = relations_in_use
        self._read_page = read_page
        self._stored_blocks = stored_blocks
        self._batch_blocks: dict[Relation, set[int]] = {}  # blocks this batch wrote
        self._lsn = lsn
        self._now = timestamp_us
        self.effects = Effects()
        self._released: set[tuple[bytes, int]] = set()
        self._claimed: set[tuple[bytes, int]] = set()

    def apply(self, batch: Batch) -> Effects:
        if len(batch.ops) >= MAX_OPS_PER_BATCH:
            raise InvalidArgumentError(f"batch has {len(batch.ops)} operations, limit is "
                                       f"{MAX_OPS_PER_BATCH - 1}")
        for index, op in enumerate(batch.ops):
            self._apply_op(index, op)
        return self.effects

    # --- the current view: this batch's changes over the committed tree ----

    def meta(self, path: str) -> FileMeta | None:
        if path in self.effects.metas:
            return self.effects.metas[path]
        return self._files.get(path)

    def _require(self, path: str, kind: FileKind | None = None) -> FileMeta:
        meta = self.meta(path) if path else _ROOT
        if meta is None:
            raise NotFoundError(f"no such file or directory: {path!r}")
        if kind is not None and meta.kind != kind:
            what = "a directory" if kind == FileKind.DIR else "a regular file"
            raise InvalidArgumentError(f"{path!r} is not {what}")
        return meta

    def _require_new(self, path: str) -> None:
        if path == "" or self.meta(path) is not None:
            raise AlreadyExistsError(f"file exists: {path!r}")
        self._require(parent_of(path), FileKind.DIR)

    def _children(self, directory: str) -> list[str]:
        prefix = directory + "/" if directory else ""
        names = {p for p in self._files if p.startswith(prefix)}
        names.update(p for p in self.effects.metas if p.startswith(prefix))
        return sorted(p for p in names if self.meta(p) is not None)

    def _page(self, meta: FileMeta, index: int) -> bytes:
        key = (Relation.from_bytes(meta.relation), meta.block_offset + index)
        if key in self.effects.pages:
            return self.effects.pages[key] or bytes(PAGE_SIZE)
        return self._read_page(*key)

    def _set_page(self, meta: FileMeta, index: int, value: bytes | None) -> None:
        relation, block = Relation.from_bytes(meta.relation), meta.block_offset + index
        self.effects.pages[(relation, block)] = value
        self._batch_blocks.setdefault(relation, set()).add(block)

    def _set_meta(self, path: str, meta: FileMeta | None) -> None:
        self.effects.metas[path] = meta

    # --- operations --------------------------------------------------------

    def _apply_op(self, index: int, op: FileOp) -> None:
        match op:
            case Write(path, offset, data):
                self._write(normalize_path(path), offset, data)
            case Truncate(path, size):
                self._truncate(normalize_path(path), size)
            case Create(path, mode, relation):
                self._create(normalize_path(path), mode, index, relation)
            case Unlink(path):
                path = normalize_path(path)
                meta = self._require(path, FileKind.FILE)
                self._drop_pages(meta, 0)
                self._release(meta)
                self._set_meta(path, None)
            case Rename(src, dst):
                self._rename(normalize_path(src), normalize_path(dst))
            case Mkdir(path, mode):
                path = normalize_path(path)
                self._require_new(path)
                self._set_meta(path, FileMeta(FileKind.DIR, 0, mode & 0o7777, b"", 0, self._now))
            case Rmdir(path):
                path = normalize_path(path)
                self._require(path, FileKind.DIR)
                if path == "":
                    raise InvalidArgumentError("cannot remove the root directory")
                if self._children(path):
                    raise InvalidArgumentError(f"directory not empty: {path!r}")
                self._set_meta(path, None)
            case Chmod(path, mode):
                path = normalize_path(path)
                meta = self._require(path)
                if path == "":
                    raise InvalidArgumentError("cannot chmod the root directory")
                self._set_meta(path, replace(meta, mode=mode & 0o7777, mtime_us=self._now))
            case _:
                raise InvalidArgumentError(f"unknown operation {op!r}")

    def _create(self, path: str, mode: int, index: int, chosen: bytes) -> None:
        self._require_new(path)
        natural = path_slot(path)
        if chosen:
            slot = self._chosen_slot(path, chosen, natural)
        else:
            slot = self._derived_slot(natural, index)
        self._claimed.add(slot)
        self._released.discard(slot)
        self._set_meta(path, FileMeta(FileKind.FILE, 0, mode & 0o7777, *slot, self._now))

    def _derived_slot(self, natural: tuple[bytes, int] | None,
                      index: int) -> tuple[bytes, int]:
        """The path's RelTag if it is free, else a synthetic relation unique to this op."""
        if natural is not None and not self._relation_busy(natural):
            return natural
        return (Relation.synthetic((self._lsn << 20) | index).to_bytes(), 0)

    def _chosen_slot(self, path: str, chosen: bytes, natural: tuple[bytes, int] | None
                     ) -> tuple[bytes, int]:
        """The writer's choice of relation, if well-formed and not used by a live file."""
        if len(chosen) != RELATION_BYTES:
            raise InvalidArgumentError(f"create {path!r}: a relation is {RELATION_BYTES} bytes")
        slot = natural if natural is not None and natural[0] == chosen else (chosen, 0)
        if self._relation_busy(slot):
            raise InvalidArgumentError(
                f"create {path!r}: relation {Relation.from_bytes(chosen)} is in use")
        return slot

    def _relation_busy(self, slot: tuple[bytes, int]) -> bool:
        if slot in self._claimed:
            return True
        return slot in self._in_use and slot not in self._released

    def _release(self, meta: FileMeta) -> None:
        slot = (meta.relation, meta.block_offset)
        self._claimed.discard(slot)
        self._released.add(slot)

    def _write(self, path: str, offset: int, data: bytes) -> None:
        meta = self._require(path, FileKind.FILE)
        end = offset + len(data)
        if offset < 0 or end > _size_limit(meta):
            raise InvalidArgumentError(f"write to {path!r} at {offset}+{len(data)} is beyond "
                                       f"its size limit of {_size_limit(meta)} bytes")
        if not data:
            return
        for piece in write_slices(offset, data):
            if piece.whole:
                self._set_page(meta, piece.index, bytes(piece.data))
                continue
            old = piece.index < blocks_for(meta.size)
            page = self._page(meta, piece.index) if old else bytes(PAGE_SIZE)
            self._set_page(meta, piece.index, piece.onto(page))
        self._set_meta(path, replace(meta, size=max(meta.size, end), mtime_us=self._now))

    def _truncate(self, path: str, size: int) -> None:
        meta = self._require(path, FileKind.FILE)
        if size < 0 or size > _size_limit(meta):
            raise InvalidArgumentError(f"truncate of {path!r} to {size} is beyond its size "
                                       f"limit of {_size_limit(meta)} bytes")
        if size < meta.size:
            keep, tail = truncate_tail(size)
            self._drop_pages(meta, keep)
            if tail:
                self._set_page(meta, keep - 1, cut_page(self._page(meta, keep - 1), tail))
        self._set_meta(path, replace(meta, size=size, mtime_us=self._now))

    def _drop_pages(self, meta: FileMeta, keep: int) -> None:
        """Tombstone the blocks from ``keep`` on that hold a version (stored, or written
        by this batch); the others read as zeros already."""
        relation = Relation.from_bytes(meta.relation)
        lo, hi = meta.block_offset + keep, meta.block_offset + blocks_for(meta.size)
        if lo >= hi:
            return
        doomed = {int(block) for block in self._stored_blocks(relation, lo, hi)}
        doomed.update(b for b in self._batch_blocks.get(relation, ()) if lo <= b < hi)
        for block in sorted(doomed):
            self._set_page(meta, block - meta.block_offset, None)

    def _rename(self, src: str, dst: str) -> None:
        meta = self._require(src)
        if src == "":
            raise InvalidArgumentError("cannot rename the root directory")
        if src == dst:
            return
        self._require(parent_of(dst), FileKind.DIR)
        target = self.meta(dst) if dst else _ROOT
        if meta.kind == FileKind.DIR:
            if dst.startswith(src + "/"):
                raise InvalidArgumentError(f"cannot move {src!r} into itself ({dst!r})")
            if target is not None and (target.kind != FileKind.DIR or self._children(dst)):
                raise InvalidArgumentError(f"rename target {dst!r} is not an empty directory")
            for child in self._children(src):
                child_meta = self.meta(child)
                self._set_meta(child, None)
                self._set_meta(dst + child[len(src):], child_meta)
        elif target is not None:
            if target.kind == FileKind.DIR:
                raise InvalidArgumentError(f"rename target {dst!r} is a directory")
            self._drop_pages(target, 0)
            self._release(target)
        self._set_meta(src, None)
        self._set_meta(dst, meta)


def _size_limit(meta: FileMeta) -> int:
    """The largest size ``meta``'s file may have: one segment for a RelTag's file (its
    next segment's blocks follow), else MAX_FILE_SIZE."""
    synthetic = Relation.from_bytes(meta.relation).is_synthetic
    return MAX_FILE_SIZE if synthetic else MAX_SEGMENT_SIZE


_ROOT = FileMeta(FileKind.DIR, 0, 0o700, b"", 0, 0)
