"""Manifest version chains on every backend: one publisher per version, fenced take-overs."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from common.errors import CorruptionError
from pageserver import manifest_store
from pageserver.fencing import Fence, SupersededError
from pageserver.manifest import DELTA, SNAPSHOT, decode_manifest, encode_manifest, version_of
from pageserver.manifest_store import SNAPSHOT_EVERY, ManifestStore
from pageserver.remote import (
    ForwardingStorage,
    LocalDirectoryStorage,
    RemoteStorage,
    RemoteStorageError,
)
from pageserver.remote.retry import RetryPolicy

PREFIX = "tenants/t/manifest/"
LEGACY = "tenants/t/tenant-"


def store(storage: RemoteStorage, generation: int) -> ManifestStore:
    return ManifestStore(storage, PREFIX, Fence("t", generation), LEGACY)


def versions(storage: RemoteStorage) -> list[int]:
    return [version_of(key) for key in storage.list(PREFIX)]


def newest(storage: RemoteStorage) -> dict[str, object]:
    key = max(storage.list(PREFIX), key=version_of)
    return decode_manifest(storage.get(key), key).body


class Torn(ForwardingStorage):
    """While ``torn``, creates land but answer with an error; while ``unreadable``,
    nothing can be read back. Both at once: outcomes nobody can tell."""

    torn = False
    unreadable = False

    def put_if_absent(self, key: str, data: bytes) -> bool:
        created = super().put_if_absent(key, data)
        if self.torn:
            raise RemoteStorageError("reply lost")
        return created

    def get(self, key: str) -> bytes:
        if self.unreadable:
            raise RemoteStorageError("unreachable")
        return super().get(key)

    def set(self, *, torn: bool, unreadable: bool) -> None:
        self.torn, self.unreadable = torn, unreadable


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
    torn = Torn(storage)
    chain = store(torn, 1)
    torn.set(torn=True, unreadable=False)
    chain.publish({"n": 1})
    torn.set(torn=False, unreadable=False)
    assert newest(storage) == {"n": 1} and chain.version == 1 and chain.settled
    torn.set(torn=True, unreadable=True)
    with pytest.raises(RemoteStorageError):
        chain.publish({"n": 2})  # landed as version 2, but nobody can tell
    assert not chain.settled
    torn.set(torn=False, unreadable=False)
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


# --- snapshot and delta chains -----------------------------------------------------------


def change(store_: ManifestStore, state: dict[str, Any], **entries: Any) -> dict[str, Any]:
    """Publish ``entries`` (None: removed) of map "m" as a change of ``state``; the new state."""
    new = {"m": {k: v for k, v in {**state["m"], **entries}.items() if v is not None}}
    store_.publish_change({"set": {}, "entries": {"m": entries}}, lambda: new)
    return new


def kinds(storage: RemoteStorage) -> list[str]:
    return [decode_manifest(storage.get(key), key).kind for key in sorted(storage.list(PREFIX))]


def test_a_delta_chain_loads_whole_and_snapshots_on_cadence(storage: RemoteStorage) -> None:
    chain = store(storage, 1)
    state: dict[str, Any] = {"m": {}}
    chain.publish(state)
    for n in range(SNAPSHOT_EVERY + 3):
        state = change(chain, state, **{f"k{n}": n, f"k{n - 1}": None})
        assert store(storage, 9).read() == state
    # versions 1 (snapshot) .. SNAPSHOT_EVERY (snapshot) .. + 3 deltas: none trimmed yet
    assert versions(storage) == list(range(1, SNAPSHOT_EVERY + 5))
    assert kinds(storage) == [SNAPSHOT, *[DELTA] * (SNAPSHOT_EVERY - 1), SNAPSHOT,
                              *[DELTA] * 3]
    for n in range(SNAPSHOT_EVERY):
        state = change(chain, state, **{f"x{n}": n})
    # the third snapshot trims below the second: its chain stays for readers that chose it
    assert versions(storage)[0] == SNAPSHOT_EVERY + 1
    assert store(storage, 9).read() == state


def test_a_reader_that_listed_before_a_snapshot_finds_its_chain(
        storage: RemoteStorage) -> None:
    chain = store(storage, 1)
    state: dict[str, Any] = {"m": {}}
    chain.publish(state)
    for n in range(2 * SNAPSHOT_EVERY - 1):
        state = change(chain, state, **{f"k{n}": n})
    listed = storage.list(PREFIX)

    class ListedBefore(ForwardingStorage):
        """Answers the reader's LIST with the listing taken before the snapshot."""

        def list(self, prefix: str) -> list[str]:
            return listed

    change(chain, state, last=1)  # version 2 * SNAPSHOT_EVERY + 1: a snapshot, and a trim
    assert kinds(storage)[-1] == SNAPSHOT
    assert versions(storage)[0] < version_of(listed[-1])
    assert store(ListedBefore(storage), 9).read() == state


def test_take_over_snapshots_and_fences_a_writer_with_deltas(storage: RemoteStorage) -> None:
    old = store(storage, 1)
    state: dict[str, Any] = {"m": {}}
    old.publish(state)
    state = change(old, state, a=1)
    new = store(storage, 2)
    assert new.take_over() == state
    assert kinds(storage)[-1] == SNAPSHOT
    with pytest.raises(SupersededError, match="generation 2"):
        change(old, state, b=2)
    state = change(new, state, c=3)
    assert store(storage, 9).read() == {"m": {"a": 1, "c": 3}}


def test_a_stale_writer_in_a_gap_below_the_deltas_is_superseded(
        storage: RemoteStorage) -> None:
    old = store(storage, 1)
    state: dict[str, Any] = {"m": {}}
    old.publish(state)
    state = change(old, state, a=1)
    new = store(storage, 2)
    state = new.take_over()
    for n in range(3 * SNAPSHOT_EVERY):
        state = change(new, state, **{f"k{n}": n})
    assert versions(storage)[0] > 3  # the old writer's next version is in a trimmed gap
    with pytest.raises(SupersededError, match="above"):
        change(old, {"m": {"a": 1}}, stale=1)
    assert store(storage, 9).read() == state


def test_a_torn_delta_is_followed_by_a_snapshot(storage: RemoteStorage) -> None:
    flaky = Torn(storage)
    chain = store(flaky, 1)
    state: dict[str, Any] = {"m": {}}
    chain.publish(state)
    state = change(chain, state, a=1)
    flaky.set(torn=True, unreadable=True)
    with pytest.raises(RemoteStorageError):
        change(chain, state, refused=1)  # landed, but memory never took it
    flaky.set(torn=False, unreadable=False)
    assert not chain.settled
    state = change(chain, state, b=2)  # against the state memory holds: must be whole
    assert kinds(storage) == [SNAPSHOT, DELTA, DELTA, SNAPSHOT]
    assert store(storage, 9).read() == {"m": {"a": 1, "b": 2}}
    assert chain.settled


def test_a_format_2_chain_still_loads(storage: RemoteStorage) -> None:
    """Versions written before deltas (format 2, no kind) read as snapshots."""
    body = {"n": 1}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(f"2:5:{canonical}".encode()).hexdigest()
    storage.put(f"{PREFIX}{5:016x}.json", (f'{{"format":2,"generation":2,"version":5,'
                                           f'"sha256":"{digest}","body":{canonical}}}').encode())
    assert store(storage, 3).take_over() == body
    assert versions(storage) == [5, 6]


def test_a_missing_delta_is_corruption(storage: RemoteStorage) -> None:
    chain = store(storage, 1)
    state: dict[str, Any] = {"m": {}}
    chain.publish(state)
    for n in range(3):
        state = change(chain, state, **{f"k{n}": n})
    storage.delete_many([f"{PREFIX}{3:016x}.json"])
    with pytest.raises(CorruptionError, match="missing"):
        store(storage, 9).read()


def test_a_relabelled_delta_reads_as_damaged() -> None:
    raw = encode_manifest({"set": {}, "entries": {}}, 3, 9, DELTA)
    assert decode_manifest(raw, "m").kind == DELTA
    with pytest.raises(CorruptionError, match="checksum"):
        decode_manifest(raw.replace(b'"kind":"delta"', b'"kind":"snapshot"'), "m")


NO_WAIT = RetryPolicy(attempts=1)


class ChainModel(RuleBasedStateMachine):
    """Random changes through ``publish_change``, torn creates and take-overs: what a
    reader loads equals the state in memory (a dict model), or, until a publish succeeds
    after torn creates, a refused state one of them landed."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.storage = Torn(LocalDirectoryStorage(Path(self.tmp.name)))
        self.generation = 1
        self.chain = store(self.storage, self.generation)
        self.state: dict[str, Any] = {"m": {}, "q": 0}
        self.refused: list[dict[str, Any]] = []  # since the last publish that succeeded
        self.chain.publish(self.state)

    def publish(self, entries: dict[str, int | None], quota: int | None) -> None:
        new = {"m": {k: v for k, v in {**self.state["m"], **entries}.items()
                     if v is not None}, "q": self.state["q"] if quota is None else quota}
        settings = {} if quota is None or quota == self.state["q"] else {"q": quota}
        entries = {k: v for k, v in entries.items() if self.state["m"].get(k) != v}
        self.refused.append(new)
        self.chain.publish_change({"set": settings, "entries": {"m": entries}}, lambda: new)
        self.state, self.refused = new, []

    @rule(entries=st.dictionaries(st.sampled_from("abcdefgh"), st.none() | st.integers(0, 9),
                                  max_size=3),
          quota=st.none() | st.integers(0, 3))
    def change(self, entries: dict[str, int | None], quota: int | None) -> None:
        self.publish(entries, quota)

    @rule(key=st.sampled_from("abcdefgh"), value=st.integers(0, 9))
    def torn_change(self, key: str, value: int) -> None:
        self.storage.set(torn=True, unreadable=True)
        with pytest.MonkeyPatch.context() as patch, pytest.raises(RemoteStorageError):
            patch.setattr(manifest_store, "CALL_POLICY", NO_WAIT)  # give up at once
            self.publish({key: value}, None)
        self.storage.set(torn=False, unreadable=False)

    @rule()
    def take_over(self) -> None:
        self.generation += 1
        self.chain = store(self.storage, self.generation)
        self.state = self.chain.take_over()

    @invariant()
    def loads_as_in_memory(self) -> None:
        loaded = store(self.storage, 0).read()
        if self.chain.settled:
            assert loaded == self.state
        else:
            assert loaded in [self.state, *self.refused]

    def teardown(self) -> None:
        self.tmp.cleanup()


ChainModel.TestCase.settings = settings(max_examples=40, stateful_step_count=60,
                                        deadline=None)
test_a_chain_loads_as_memory_holds = ChainModel.TestCase
