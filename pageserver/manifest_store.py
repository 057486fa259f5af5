"""One manifest as a chain of versions, each published with create-if-absent.

Object stores offer no locks, but every backend can create an object only if it is
absent (``RemoteStorage.put_if_absent``). A manifest is therefore a chain of objects
``<prefix><version>.json``: publishing version n + 1 succeeds for exactly one writer, so
it is a compare-and-swap against version n (SlateDB's manifest store works this way).
A page server that attaches a tenant first *takes over* each of its manifests: it
publishes the newest version again, under its own generation, as the next version.
From then on the previous owner's next publish finds its name taken by another
generation, and trips the tenant's fence (``pageserver/fencing.py``).

A version is a snapshot (the whole body) or a delta (what changed since the version
below it, ``publish_change``). Loading reads the newest version and walks down to the
newest snapshot at or below it, then applies the deltas above that snapshot in order. A
snapshot is written every ``SNAPSHOT_EVERY`` versions, at a take-over, and whenever the
version below ours is not one whose content we know (a create of ours failed and may
have landed).

Old versions are deleted: everything below the snapshot before the newest one, so a
reader that listed just before a snapshot still finds the whole chain it chose; above
that floor the chain has no gaps. A writer paused for long could create a version in
the gap below the floor. Each publish therefore lists the chain after its create: a
newer version than ours means we were superseded, and the fence trips before anything
acts on the publish; and no reader ever reads below the newest snapshot, so what the
paused writer created is never loaded (the next trim deletes it). A create whose
outcome is unknown (an error, or S3's own retry answering "exists") is settled by
reading the version back (``create_once``): our bytes mean it is ours. If even that
fails, the next publish finds the name taken, reads it, sees our own generation, and
goes on above it with a snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.errors import CorruptionError, NotFoundError
from pageserver.fencing import Fence
from pageserver.manifest import (
    DELTA,
    SNAPSHOT,
    Envelope,
    apply_delta,
    decode_manifest,
    encode_manifest,
    generation_of,
    manifest_version_key,
    version_of,
)
from pageserver.remote import RemoteStorage, RemoteStorageError
from pageserver.remote.retry import CALL_POLICY, create_once, read_verified, retrying

log = logging.getLogger(__name__)

# Versions between snapshots. The LIST after every create reads every kept version (up
# to twice this many: trimming keeps the previous snapshot's chain) and a load reads up
# to this many deltas, so the chain must stay short; a snapshot costs one whole body
# every this many publishes, a small share of their cost even at thousands of branches.
SNAPSHOT_EVERY = 32


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
        self._snapshot = 0  # our newest snapshot: deltas above it follow on from it
        self._floor = 0  # the snapshot before it: versions below are deleted
        self._known = False  # whether the content of ``_version`` is what we last published

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

    def read(self) -> dict[str, Any]:
        """The newest manifest, built whole, as a take-over would find it, without taking
        it over. NotFoundError if there is none."""
        newest = self._newest()
        if newest is None:
            raise NotFoundError(f"no manifest under {self._prefix!r} in "
                                f"{self._storage.describe()}")
        return newest.body

    def take_over(self) -> dict[str, Any]:
        """Publish the newest version again as ours and return its body: from here on
        only this generation can publish. NotFoundError if there is none."""
        while True:
            newest = self._newest()
            if newest is None:
                raise NotFoundError(f"no manifest under {self._prefix!r} in "
                                    f"{self._storage.describe()}")
            self._version, self._snapshot = newest.version, newest.snapshot
            if self._try_publish(newest.body, SNAPSHOT):
                self._delete_legacy()
                return newest.body
            # Someone published meanwhile (the previous owner, still running): take that.

    def publish(self, body: dict[str, Any]) -> None:
        """Publish ``body`` whole as the next version; SupersededError if another
        generation published it first (the fence is then tripped)."""
        self._fence.check()
        while not self._try_publish(body, SNAPSHOT):
            pass

    def publish_change(self, delta: dict[str, Any], body: Callable[[], dict[str, Any]]) -> None:
        """Publish the next version as ``delta`` (``apply_delta``) against the version we
        published last, or as ``body()`` whole when a snapshot is due or that version's
        content is unknown (a failed create of ours may have landed above it)."""
        self._fence.check()
        while True:
            due = not self._known or self._version + 1 - self._snapshot >= SNAPSHOT_EVERY
            if self._try_publish(body() if due else delta, SNAPSHOT if due else DELTA):
                return

    def _try_publish(self, body: dict[str, Any], kind: str) -> bool:
        """Create the next version holding ``body``; True once it is ours, False if it
        should be tried again (a take-over looks again; a publish writes a snapshot).
        Raises SupersededError when another generation holds it during a publish."""
        version = self._version + 1
        key = manifest_version_key(self._prefix, version)
        generation = self._fence.generation
        self._settled, self._known = False, False
        if create_once(self._storage, key, encode_manifest(body, generation, version, kind),
                       CALL_POLICY):
            self._settle(version, kind)
            self._settled, self._known = True, True
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

    def _newest(self) -> _Loaded | None:
        """The whole body of the newest version (listed and read again if a version was
        deleted meanwhile), else the newest legacy manifest as version 0, else None."""
        while True:
            versions = self._versions()
            if not versions:
                break
            try:
                return self._load(versions)
            except NotFoundError:
                continue  # trimmed by a newer publish since the listing
        legacy = self._legacy_keys()
        if not legacy:
            return None
        envelope = self._read(max(legacy, key=generation_of))
        return _Loaded(envelope.body, 0, 0)

    def _load(self, versions: list[int]) -> _Loaded:
        """The newest of ``versions`` built whole: read downwards to the newest snapshot,
        then its deltas applied upwards. NotFoundError if one was deleted meanwhile."""
        present = set(versions)
        deltas: list[dict[str, Any]] = []
        version = versions[-1]
        while True:
            if version not in present:
                raise CorruptionError(f"{self._prefix}: version {version} is missing below "
                                      f"version {versions[-1]} and above its snapshot")
            envelope = self._read(manifest_version_key(self._prefix, version))
            if envelope.version != version:
                raise CorruptionError(f"{self._prefix}: version {version} holds version "
                                      f"{envelope.version}")
            if envelope.kind == SNAPSHOT:
                break
            deltas.append(envelope.body)
            version -= 1
        body = envelope.body
        for delta in reversed(deltas):
            body = apply_delta(body, delta)
        return _Loaded(body, versions[-1], version)

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

    def _settle(self, version: int, kind: str) -> None:
        """After creating ``version``: SupersededError if a newer version exists (ours
        filled a gap below a newer owner's chain), else make it ours and delete versions
        below the floor, the snapshot before the newest (a failure leaves them for a
        later publish)."""
        versions = self._versions()
        if versions and versions[-1] > version:
            raise self._fence.trip(f"{self._prefix} reached version {versions[-1]} above "
                                   f"our {version}")
        self._version = version
        if kind == SNAPSHOT:
            self._floor, self._snapshot = self._snapshot, version
        doomed = [manifest_version_key(self._prefix, v) for v in versions if v < self._floor]
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


@dataclass(frozen=True)
class _Loaded:
    """A manifest built whole from its chain: the body, the newest version it reflects
    and the snapshot it was built from."""

    body: dict[str, Any]
    version: int
    snapshot: int
