"""Manifest version chains on every backend: one publisher per version, fenced take-overs."""

from __future__ import annotations

import hashlib

import pytest

from common.errors import CorruptionError
from pageserver.fencing import Fence, SupersededError
from pageserver.manifest import decode_manifest, encode_manifest, version_of
from pageserver.manifest_store import ManifestStore
from pageserver.remote import ForwardingStorage, RemoteStorage, RemoteStorageError

PREFIX = "tenants/t/manifest/"
LEGACY = "tenants/t/tenant-"


def store(storage: RemoteStorage, generation: int) -> ManifestStore:
    return ManifestStore(storage, PREFIX, Fence("t", generation), LEGACY)


def versions(storage: RemoteStorage) -> list[int]:
    return [version_of(key) for key in storage.list(PREFIX)]


def newest(storage: RemoteStorage) -> dict[str, object]:
    key = max(storage.list(PREFIX), key=version_of)
    return decode_manifest(storage.get(key), key).body


def test_publishes_chain_and_old_versions_go(storage: RemoteStorage) -> None:
    chain = store(storage, 1)
    for n in range(5):
        chain.publish({"n": n})
    assert versions(storage) == [4, 5]
    assert newest(storage) == {"n": 4}
    assert store(storage, 2).take_over() == {"n": 4}
    assert versions(storage) == [5, 6]


def test_a_take_over_fences_the_previous_owner(storage: RemoteStorage) -> None:
    old = store(storage, 1)
    old.publish({"n": 1})
    new = store(storage, 2)
    assert new.take_over() == {"n": 1}
    with pytest.raises(SupersededError, match="generation 2"):
        old.publish({"n": 2})
    with pytest.raises(SupersededError):
        old.publish({"n": 3})  # tripped for good, without another try
    new.publish({"n": 4})
    assert newest(storage) == {"n": 4}


def test_a_stale_owner_in_a_trimmed_gap_is_superseded(storage: RemoteStorage) -> None:
    old = store(storage, 1)
    old.publish({"n": 1})
    new = store(storage, 2)
    new.take_over()
    for n in range(5):
        new.publish({"n": n + 10})  # trims the take-over's version: a gap below the newest
    with pytest.raises(SupersededError, match="above"):
        old.publish({"n": 2})
    assert newest(storage) == {"n": 14}


def test_a_publish_whose_reply_was_lost_is_ours(storage: RemoteStorage) -> None:
    """A create that landed but answered with an error is read back and counted as ours;
    when even that cannot be told, the next publish finds our version and goes above."""
    class Torn(ForwardingStorage):
        torn = 0
        reads_fail = False

        def put_if_absent(self, key: str, data: bytes) -> bool:
            created = super().put_if_absent(key, data)
            if self.torn:
                self.torn -= 1
                raise RemoteStorageError("reply lost")
            return created

        def get(self, key: str) -> bytes:
            if self.reads_fail:
                raise RemoteStorageError("unreachable")
            return super().get(key)

    torn = Torn(storage)
    chain = store(torn, 1)
    torn.torn = 1
    chain.publish({"n": 1})
    assert newest(storage) == {"n": 1} and chain.version == 1 and chain.settled
    torn.torn, torn.reads_fail = 1, True
    with pytest.raises(RemoteStorageError):
        chain.publish({"n": 2})  # landed as version 2, but nobody can tell
    assert not chain.settled
    torn.reads_fail = False
    chain.publish({"n": 3})
    assert newest(storage) == {"n": 3} and chain.version == 3 and chain.settled


def test_a_legacy_manifest_is_taken_over(storage: RemoteStorage) -> None:
    """A store written before version chains (``tenant-<gen>.json``) is read, verified and
    taken over as version 1."""
    digest = hashlib.sha256(b'{"n":1}').hexdigest().encode()
    legacy = b'{"format":1,"sha256":"' + digest + b'","body":{"n":1}}'
    storage.put(f"{LEGACY}00000003.json", legacy.replace(b'"n":1}}', b'"n":2}}'))
    with pytest.raises(CorruptionError, match="checksum"):
        store(storage, 4).take_over()
    storage.put(f"{LEGACY}00000003.json", legacy)
    assert store(storage, 4).take_over() == {"n": 1}
    assert storage.list(LEGACY) == []
    assert versions(storage) == [1]


def test_envelope_seals_generation_and_version() -> None:
    raw = encode_manifest({"n": 1}, 3, 9)
    assert decode_manifest(raw, "m").generation == 3
    moved = raw.replace(b'"version":9', b'"version":8')
    with pytest.raises(CorruptionError, match="checksum"):
        decode_manifest(moved, "m")
