"""One manifest as a chain of versions, each published with create-if-absent.

Object stores offer no locks, but every backend can create an object only if it is
absent (``RemoteStorage.put_if_absent``). A manifest is therefore a chain of objects
``<prefix><version>.json``: publishing version n + 1 succeeds for exactly one writer, so
it is a compare-and-swap against version n (SlateDB's manifest store works this way).
A page server that attaches a tenant first *takes over* each of its manifests: it
publishes the newest version again, under its own generation, as the next version.
From then on the previous owner's next publish finds its name taken by another
generation, and trips the tenant's fence (``pageserver/fencing.py``).

Old versions are deleted (the two newest are kept: a reader that listed just before a
publish still finds the one it chose), so a writer paused for long could create a
version in the gap they leave below the newest. Each publish therefore lists the chain
after its create: a newer version than ours means we were superseded, and the fence
trips before anything acts on the publish. A create whose outcome is unknown (an
error, or S3's own retry answering "exists") is settled by reading the version back
(``create_once``): our bytes mean it is ours. If even that fails, the next publish
finds the name taken, reads it, sees our own generation, and goes on above it.
"""

from __future__ import annotations

import logging
from typing import Any

from common.errors import NotFoundError
from pageserver.fencing import Fence
from pageserver.manifest import (
    Envelope,
    decode_manifest,
    encode_manifest,
    generation_of,
    manifest_version_key,
    version_of,
)
from pageserver.remote import RemoteStorage, RemoteStorageError
from pageserver.remote.retry import CALL_POLICY, create_once, read_verified, retrying

log = logging.getLogger(__name__)

_KEEP = 2  # versions kept: the newest and the one before


class ManifestStore:
    """The version chain of one manifest, written by the generation ``fence`` guards."""

    def __init__(self, storage: RemoteStorage, prefix: str, fence: Fence,
                 legacy_prefix: str | None = None) -> None:
        self._storage = storage
        self._prefix = prefix
        self._legacy_prefix = legacy_prefix
        self._fence = fence
        self._version = 0  # the newest version we know of (published or taken over)
        self._settled = True  # no create of ours has failed since the last that succeeded

    @property
    def version(self) -> int:
        return self._version

    @property
    def settled(self) -> bool:
        """Whether our newest version is the state last made current: False after a
        create failed (it may have landed, naming objects memory does not know) until a
        later publish goes above it. Scrubbing waits for this."""
        return self._settled

    def exists(self) -> bool:
        """Whether any version (or a legacy manifest) exists."""
        return bool(self._versions() or self._legacy_keys())

    def take_over(self) -> dict[str, Any]:
        """Publish the newest version again as ours and return its body: from here on
        only this generation can publish. NotFoundError if there is none."""
        while True:
            newest = self._newest()
            if newest is None:
                raise NotFoundError(f"no manifest under {self._prefix!r} in "
                                    f"{self._storage.describe()}")
            self._version = newest.version
            if self._try_publish(newest.body):
                self._delete_legacy()
                return newest.body
            # Someone published meanwhile (the previous owner, still running): take that.

    def publish(self, body: dict[str, Any]) -> None:
        """Publish ``body`` as the next version; SupersededError if another generation
        published it first (the fence is then tripped)."""
        self._fence.check()
        while not self._try_publish(body):
            pass

    def _try_publish(self, body: dict[str, Any]) -> bool:
        """Create the next version holding ``body``; True once it is ours, False if a
        take-over should look again. Raises SupersededError when another generation
        holds it during a publish."""
        version = self._version + 1
        key = manifest_version_key(self._prefix, version)
        generation = self._fence.generation
        self._settled = False
        if create_once(self._storage, key, encode_manifest(body, generation, version),
                       CALL_POLICY):
            self._settle(version)
            self._settled = True
            return True
        holder = self._read(key)
        if holder.generation == generation:  # an earlier try of ours whose reply was lost
            self._version = version
            return False
        if holder.generation < generation:
            self._version = version  # an older owner, racing our take-over: look again
            return False
        raise self._fence.trip(f"version {version} of {self._prefix} was published by "
                               f"generation {holder.generation}")

    def _newest(self) -> Envelope | None:
        """The newest version (listed and read again if deleted meanwhile), else the
        newest legacy manifest as version 0, else None."""
        while True:
            versions = self._versions()
            if not versions:
                break
            key = manifest_version_key(self._prefix, versions[-1])
            try:
                return self._read(key)
            except NotFoundError:
                continue  # trimmed by a newer publish since the listing
        legacy = self._legacy_keys()
        if not legacy:
            return None
        return self._read(max(legacy, key=generation_of))

    def _read(self, key: str) -> Envelope:
        return read_verified(self._storage, key, lambda raw: decode_manifest(raw, key))

    def _versions(self) -> list[int]:
        keys = self._list(self._prefix)
        return sorted(version_of(key) for key in keys if key.endswith(".json"))

    def _legacy_keys(self) -> list[str]:
        if self._legacy_prefix is None:
            return []
        return [key for key in self._list(self._legacy_prefix) if key.endswith(".json")]

    def _list(self, prefix: str) -> list[str]:
        return retrying(CALL_POLICY, f"list of {prefix!r}", lambda: self._storage.list(prefix))

    def _settle(self, version: int) -> None:
        """After creating ``version``: SupersededError if a newer version exists (ours
        filled a gap below a newer owner's chain), else make it ours and delete versions
        older than the ones kept (a failure leaves them for a later publish)."""
        versions = self._versions()
        if versions and versions[-1] > version:
            raise self._fence.trip(f"{self._prefix} reached version {versions[-1]} above "
                                   f"our {version}")
        self._version = version
        doomed = [manifest_version_key(self._prefix, v) for v in versions
                  if v <= version - _KEEP]
        if not doomed:
            return
        try:
            self._storage.delete_many(doomed)
        except RemoteStorageError as exc:
            log.warning("could not delete old manifest versions under %s: %s", self._prefix, exc)

    def _delete_legacy(self) -> None:
        legacy = self._legacy_keys()
        if legacy:
            self._storage.delete_many(legacy)
