"""Where layer files are read from on this machine: in place, or from a bounded cache.

With the local-directory store a layer's object is already a file on this disk, so it is
read where it is (one copy: ``RemoteStorage.local_path``). With S3 the layers read are
downloaded into ``root`` (``<tenant>/<timeline>/<layer>``), which is held to
``limit_bytes``: past it, the least recently used files that no read is using are
deleted, to be downloaded again when next read. The cache is only ever a copy: losing it
costs downloads, never data.

Every file the cache holds has an entry, the layer handle using it if one is open
(files found at start-up have none until a handle opens them).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pageserver.remote import RemoteStorage

if TYPE_CHECKING:
    from pageserver.layer import Layer

log = logging.getLogger(__name__)
DEFAULT_LIMIT_BYTES = 8 * 1024**3


@dataclass(frozen=True)
class CacheStats:
    """What the cache did since start-up, and what it holds now."""

    in_place: bool  # layers are read where the object store keeps them
    limit_bytes: int
    bytes: int  # of files in the cache now
    files: int
    hits: int  # layer reads served from a file on disk
    misses: int  # layer reads that had to download the file first
    evictions: int
    evicted_bytes: int
    downloaded_bytes: int


@dataclass
class _Entry:
    size: int
    layer: Layer | None  # the handle reading this file, if any


class LayerCache:
    """Local files of layers: in place for a local store, else a bounded LRU cache."""

    def __init__(self, root: Path, storage: RemoteStorage,
                 limit_bytes: int = DEFAULT_LIMIT_BYTES) -> None:
        if limit_bytes <= 0:
            raise ValueError(f"the layer cache limit must be positive, not {limit_bytes}")
        self.root = root
        self.limit_bytes = limit_bytes
        self._storage = storage
        self.in_place = storage.local_path("probe") is not None
        self._lock = threading.Lock()
        self._entries: OrderedDict[Path, _Entry] = OrderedDict()  # least recent first
        self._bytes = 0
        self._hits = self._misses = self._evictions = 0
        self._evicted_bytes = self._downloaded_bytes = 0
        if self.in_place:
            self._drop_copies()
        else:
            self._adopt_files()

    def path_of(self, cache_path: Path, remote_key: str) -> Path:
        """The file to read a layer from: the object itself when it is local, else its
        place in the cache."""
        if self.in_place:
            local = self._storage.local_path(remote_key)
            assert local is not None
            return local
        return cache_path

    def record_read(self, layer: Layer, *, downloaded: bool) -> None:
        """A read opened or used ``layer``'s file; it becomes the most recently used.
        After a download the cache is brought back under its limit."""
        if self.in_place:
            with self._lock:
                self._hits += 1
            return
        with self._lock:
            if downloaded:
                self._misses += 1
                self._downloaded_bytes += layer.desc.size
            else:
                self._hits += 1
            entry = self._entries.get(layer.local_path)
            if entry is None:
                entry = self._entries[layer.local_path] = _Entry(layer.desc.size, layer)
                self._bytes += entry.size
            entry.layer = layer
            self._entries.move_to_end(layer.local_path)
            over = self._bytes > self.limit_bytes
        if over:
            self.shrink()

    def added(self, layer: Layer) -> None:
        """``layer`` was just written here by this server (a flush or compaction)."""
        if not self.in_place:
            with self._lock:
                if layer.local_path not in self._entries:
                    self._entries[layer.local_path] = _Entry(layer.desc.size, layer)
                    self._bytes += layer.desc.size
            self.shrink()

    def forget(self, path: Path) -> None:
        """The file at ``path`` was removed (its layer deleted)."""
        with self._lock:
            entry = self._entries.pop(path, None)
            if entry is not None:
                self._bytes -= entry.size

    def forget_under(self, directory: Path) -> None:
        """Every file below ``directory`` was removed (a timeline reclaimed)."""
        with self._lock:
            for path in [p for p in self._entries if p.is_relative_to(directory)]:
                self._bytes -= self._entries.pop(path).size

    def shrink(self) -> None:
        """Evict least recently used files no read is using until the cache fits."""
        with self._lock:
            excess = self._bytes - self.limit_bytes
            if excess <= 0:
                return
            candidates = list(self._entries.items())
        for path, entry in candidates:
            if excess <= 0:
                return
            layer = entry.layer
            if layer is not None and not layer.evict():
                continue  # in use by a read: kept
            if layer is None:
                path.unlink(missing_ok=True)
            with self._lock:
                if self._entries.get(path) is entry:
                    del self._entries[path]
                    self._bytes -= entry.size
                    self._evictions += 1
                    self._evicted_bytes += entry.size
                    excess -= entry.size

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self.in_place, self.limit_bytes, self._bytes, len(self._entries),
                              self._hits, self._misses, self._evictions, self._evicted_bytes,
                              self._downloaded_bytes)

    def _drop_copies(self) -> None:
        """Delete layer copies an older version cached beside a local store: the objects
        themselves are read now."""
        if not self.root.is_dir():
            return
        dropped = 0
        for path in self.root.rglob("*"):
            if path.is_file():
                path.unlink(missing_ok=True)
                dropped += 1
        if dropped:
            log.info("removed %d cached layer copies: layers are read in place from the "
                     "local store", dropped)

    def _adopt_files(self) -> None:
        """Account for the files a previous run left, oldest access first."""
        if not self.root.is_dir():
            return
        found = []
        for path in self.root.rglob("*"):
            if path.is_file():
                if path.suffix == ".tmp":  # a download cut short
                    path.unlink(missing_ok=True)
                    continue
                info = path.stat()
                found.append((info.st_atime, path, info.st_size))
        for _, path, size in sorted(found):
            self._entries[path] = _Entry(size, None)
            self._bytes += size
        self.shrink()
