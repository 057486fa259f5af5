"""A handle on one layer: its descriptor, its local file on demand, and an open reader.

Reads hold the layer while they use its reader (``with layer.reading() as reader``): a
layer in use is never evicted from the layer cache (pageserver/layer_cache.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common.durable import write_durably
from common.errors import CorruptionError
from pageserver.layer_cache import LayerCache
from pageserver.layer_file import LayerKind, LayerReader
from pageserver.manifest import LayerDescriptor
from pageserver.remote import RemoteStorage
from pageserver.remote.retry import read_verified


class Layer:
    """An immutable layer of one timeline: read in place from a local store, else
    downloaded into the layer cache (``local_path``) when first read."""

    def __init__(
        self, desc: LayerDescriptor, local_path: Path, storage: RemoteStorage, remote_key: str,
        cache: LayerCache,
    ) -> None:
        self.desc = desc
        self.local_path = local_path
        self.remote_key = remote_key
        self._storage = storage
        self._cache = cache
        self._reader: LayerReader | None = None
        self._users = 0  # reads using the reader now
        self._metas: dict[str, list[tuple[int, bytes | None]]] | None = None
        self._lock = threading.Lock()

    @property
    def lsn_start(self) -> int:
        return self.desc.lsn_start

    @property
    def lsn_end(self) -> int:
        return self.desc.lsn_end

    @property
    def is_image(self) -> bool:
        return self.desc.kind == LayerKind.IMAGE

    @contextmanager
    def reading(self) -> Iterator[LayerReader]:
        """The open reader, held for the block: the file is downloaded first if it is
        not local, and not evicted while any read holds it."""
        downloaded = False
        with self._lock:
            if self._reader is None:
                path = self._cache.path_of(self.local_path, self.remote_key)
                if not path.exists():
                    self._download()
                    downloaded = True
                self._reader = LayerReader(path, name=self.desc.name)
            self._users += 1
            reader = self._reader
        try:
            self._cache.record_read(self, downloaded=downloaded)
            yield reader
        finally:
            with self._lock:
                self._users -= 1

    def evict(self) -> bool:
        """Close the reader and delete the cached file, unless a read holds the layer (or
        is opening it); whether it was evicted."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self._users:
                return False
            if self._reader is not None:
                self._reader.close()
                self._reader = None
            self.local_path.unlink(missing_ok=True)
            return True
        finally:
            self._lock.release()

    def meta_versions(self) -> dict[str, list[tuple[int, bytes | None]]]:
        """The layer's metadata entries grouped by path, versions in LSN order (kept in
        memory: they are few)."""
        if self._metas is None:
            grouped: dict[str, list[tuple[int, bytes | None]]] = {}
            with self.reading() as reader:
                for path, lsn, value in reader.metas():
                    grouped.setdefault(path, []).append((lsn, value))
            self._metas = grouped
        return self._metas

    def _download(self) -> None:
        """Fetch the layer into the cache, only whole: a body cut short on its way is
        read again (a short copy would fail every later read)."""
        data = read_verified(self._storage, self.remote_key, self._whole)
        self.local_path.parent.mkdir(parents=True, exist_ok=True)
        write_durably(self.local_path, data)

    def _whole(self, data: bytes) -> bytes:
        if len(data) != self.desc.size:
            raise CorruptionError(f"layer {self.desc.name}: {len(data)} bytes, its manifest "
                                  f"says {self.desc.size}")
        return data

    def close(self) -> None:
        with self._lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def remove_local(self) -> None:
        """Close and drop the cached copy, if any (the object is handled by the caller)."""
        self.close()
        self.local_path.unlink(missing_ok=True)
        self._cache.forget(self.local_path)

    def __repr__(self) -> str:
        return f"Layer({self.desc.name})"
