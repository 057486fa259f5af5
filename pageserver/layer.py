"""A handle on one layer: its descriptor, a local copy on demand, and an open reader."""

from __future__ import annotations

import threading
from pathlib import Path

from common.durable import write_durably
from common.errors import CorruptionError
from pageserver.layer_file import LayerKind, LayerReader
from pageserver.manifest import LayerDescriptor
from pageserver.remote import RemoteStorage
from pageserver.remote.retry import read_verified


class Layer:
    """An immutable layer of one timeline, downloaded into the local cache when first read."""

    def __init__(
        self, desc: LayerDescriptor, local_path: Path, storage: RemoteStorage, remote_key: str
    ) -> None:
        self.desc = desc
        self.local_path = local_path
        self.remote_key = remote_key
        self._storage = storage
        self._reader: LayerReader | None = None
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

    def reader(self) -> LayerReader:
        """The open reader, downloading the file first if it is not local."""
        reader = self._reader
        if reader is not None:
            return reader
        with self._lock:
            if self._reader is None:
                if not self.local_path.exists():
                    self._download()
                self._reader = LayerReader(self.local_path, name=self.desc.name)
            return self._reader

    def meta_versions(self) -> dict[str, list[tuple[int, bytes | None]]]:
        """The layer's metadata entries grouped by path, versions in LSN order."""
        if self._metas is None:
            grouped: dict[str, list[tuple[int, bytes | None]]] = {}
            for path, lsn, value in self.reader().metas():
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
        """Close and drop the local copy (the remote object is handled by the caller)."""
        self.close()
        self.local_path.unlink(missing_ok=True)

    def __repr__(self) -> str:
        return f"Layer({self.desc.name})"
