"""The local store's create journal: what a crash can leave behind is put right when the
store is opened again, and a replay never undoes a delete or a replace.

A power loss is modelled by what it can do to an unsynced object whose journal entry is
durable: its name is gone, or its name survived with fewer bytes (ext4's delayed
allocation writes the name first). The journal files themselves are left as they are.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from pageserver.remote import LocalDirectoryStorage
from pageserver.remote.create_journal import (
    CAPACITY,
    JOURNAL_NAME,
    MAX_ENTRIES,
    MAX_JOURNALED_BYTES,
    CreateJournal,
)

KEY = "tenants/t1/log/0000000000000001"


def journal_of(root: Path, group: str = "tenants/t1") -> CreateJournal:
    return CreateJournal(root.joinpath(*group.split("/")))


def pending(root: Path, group: str = "tenants/t1") -> list[str]:
    """The keys the journal of ``group`` still holds."""
    journal = journal_of(root, group)
    try:
        with journal.locked():
            return [entry.key for entry in journal.entries()]
    finally:
        journal.close()


@pytest.mark.parametrize("loss", ["name", "bytes"])
def test_a_create_that_a_crash_lost_is_written_again_on_open(tmp_path: Path,
                                                             loss: str) -> None:
    root = tmp_path / "remote"
    assert LocalDirectoryStorage(root).put_if_absent(KEY, b"chunk" * 100)
    assert pending(root) == [KEY]
    path = root / KEY
    if loss == "name":
        path.unlink()
    else:
        os.truncate(path, 3)
    reopened = LocalDirectoryStorage(root)
    assert reopened.get(KEY) == b"chunk" * 100
    assert pending(root) == []  # written durably again, so the entries were dropped


def test_an_entry_whose_link_never_happened_is_created_on_open(tmp_path: Path) -> None:
    """A crash between the entry's flush and the link: the create never answered, and
    it lands, as a create that failed may."""
    root = tmp_path / "remote"
    LocalDirectoryStorage(root).put_if_absent("tenants/t1/other", b"x")
    journal = journal_of(root)
    with journal.locked():
        journal.append(KEY, b"landed")
    journal.close()
    assert LocalDirectoryStorage(root).get(KEY) == b"landed"


def test_a_deleted_object_stays_deleted_after_a_replay(tmp_path: Path) -> None:
    root = tmp_path / "remote"
    store = LocalDirectoryStorage(root)
    assert store.put_if_absent(KEY, b"gone")
    assert store.put_if_absent("tenants/t1/log/0000000000000002", b"kept")
    store.delete_many([KEY])
    assert pending(root) == []  # the delete settled the journal first
    assert store.put_if_absent("tenants/t1/log/0000000000000003", b"new")
    LocalDirectoryStorage(root)  # replays
    assert store.list("tenants/t1/log/") == ["tenants/t1/log/0000000000000002",
                                             "tenants/t1/log/0000000000000003"]


def test_a_replaced_object_keeps_its_new_bytes_after_a_replay(tmp_path: Path) -> None:
    root = tmp_path / "remote"
    store = LocalDirectoryStorage(root)
    assert store.put_if_absent(KEY, b"first")
    store.put(KEY, b"second")
    LocalDirectoryStorage(root)
    assert store.get(KEY) == b"second"


def test_a_torn_entry_at_the_end_is_ignored(tmp_path: Path) -> None:
    """A crash in the middle of an append leaves a partial entry, never acknowledged."""
    root = tmp_path / "remote"
    store = LocalDirectoryStorage(root)
    assert store.put_if_absent(KEY, b"whole")
    journal_file = root / "tenants" / "t1" / f"{JOURNAL_NAME}0"
    data = journal_file.read_bytes()
    end = data.index(b"whole") + len(b"whole")
    with journal_file.open("r+b") as f:
        f.seek(end)
        f.write(b"\x00\x00\x00\x40torn-entry")
    reopened = LocalDirectoryStorage(root)
    assert reopened.get(KEY) == b"whole"
    assert reopened.put_if_absent("tenants/t1/log/0000000000000002", b"next")
    assert pending(root) == [KEY, "tenants/t1/log/0000000000000002"]


def test_a_full_journal_moves_on_and_settles_the_full_file(tmp_path: Path) -> None:
    root = tmp_path / "remote"
    store = LocalDirectoryStorage(root)
    size = MAX_JOURNALED_BYTES - 1024
    count = CAPACITY // size + 2  # one switch to the second file
    for n in range(count):
        assert store.put_if_absent(f"tenants/t1/log/{n:016x}", bytes([n % 251]) * size)
    journal = store._journal(KEY)  # the store's own, to wait for its background settle
    assert journal is not None
    settler = journal._settler
    assert settler is not None
    settler.join()
    left = pending(root)
    assert 0 < len(left) < count  # the full file was settled, the new one holds the rest
    assert left == [f"tenants/t1/log/{n:016x}" for n in range(count - len(left), count)]
    reopened = LocalDirectoryStorage(root)
    assert [reopened.get(f"tenants/t1/log/{n:016x}")[0] for n in range(count)] == \
        [n % 251 for n in range(count)]


def test_small_entries_move_on_after_a_bounded_count(tmp_path: Path) -> None:
    root = tmp_path / "remote"
    store = LocalDirectoryStorage(root)
    count = MAX_ENTRIES + 3  # a few hundred bytes each: far from the file's capacity
    for n in range(count):
        assert store.put_if_absent(f"tenants/t1/log/{n:016x}", b"a commit's WAL")
    journal = store._journal(KEY)
    assert journal is not None
    settler = journal._settler
    assert settler is not None  # the first file was full by count, and is being settled
    settler.join()
    assert pending(root) == [f"tenants/t1/log/{n:016x}" for n in range(MAX_ENTRIES, count)]


def test_large_objects_are_created_directly(tmp_path: Path) -> None:
    root = tmp_path / "remote"
    store = LocalDirectoryStorage(root)
    assert store.put_if_absent(KEY, bytes(MAX_JOURNALED_BYTES + 1))
    assert pending(root) == []


def test_two_stores_on_one_root_race_for_each_name(tmp_path: Path) -> None:
    """A stale and a new page server on one machine: every name has one creator."""
    root = tmp_path / "remote"
    stores = [LocalDirectoryStorage(root), LocalDirectoryStorage(root)]
    wins: list[list[int]] = [[], []]

    def create(index: int) -> None:
        for n in range(60):
            if stores[index].put_if_absent(f"tenants/t1/log/{n:016x}", bytes([index]) * 64):
                wins[index].append(n)

    threads = [threading.Thread(target=create, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins[0] + wins[1]) == list(range(60))
    for index in (0, 1):
        for n in wins[index]:
            assert stores[1 - index].get(f"tenants/t1/log/{n:016x}") == bytes([index]) * 64


def test_journals_are_never_listed_or_deleted_as_objects(tmp_path: Path) -> None:
    root = tmp_path / "remote"
    store = LocalDirectoryStorage(root)
    assert store.put_if_absent(KEY, b"a")
    assert store.put_if_absent("tokens/x", b"b")
    assert store.list("") == [KEY, "tokens/x"]
    store.delete_many(store.list(""))
    assert store.list("") == []
    assert (root / "tenants" / "t1" / f"{JOURNAL_NAME}0").is_file()
    assert not (root / f"{JOURNAL_NAME}0").exists()  # keys outside tenants: never journaled


def test_a_replay_leaves_damage_it_did_not_cause_for_checksums_to_find(
        tmp_path: Path) -> None:
    """Bytes that differ from the entry, and are not zeros a crash left, are not
    a crash's doing: the replay must not hide them."""
    root = tmp_path / "remote"
    assert LocalDirectoryStorage(root).put_if_absent(KEY, b"a" * 1024)
    (root / KEY).write_bytes(b"a" * 512 + b"b" * 512)
    assert LocalDirectoryStorage(root).get(KEY) == b"a" * 512 + b"b" * 512


def test_a_file_with_sectors_a_crash_left_zero_is_written_again(tmp_path: Path) -> None:
    root = tmp_path / "remote"
    assert LocalDirectoryStorage(root).put_if_absent(KEY, b"a" * 1536)
    (root / KEY).write_bytes(b"a" * 512 + bytes(1024))
    assert LocalDirectoryStorage(root).get(KEY) == b"a" * 1536


def test_epochs_only_grow_so_an_old_settle_cannot_drop_a_newer_file(tmp_path: Path) -> None:
    """A background settle drops its file only at the epoch it was started for; a file
    taken into use again after a settle gets a new epoch, never the old one."""
    root = tmp_path / "remote"
    store = LocalDirectoryStorage(root)
    journal_file = root / "tenants" / "t1" / f"{JOURNAL_NAME}0"

    def header() -> tuple[int, int]:
        data = journal_file.read_bytes()
        return int.from_bytes(data[8:16], "big"), data[16]

    assert store.put_if_absent(KEY, b"one")
    assert header() == (1, 1)
    store.delete(KEY)  # settles: the file is no longer live, and keeps its epoch
    assert header() == (1, 0)
    assert store.put_if_absent(KEY, b"two")
    assert header() == (2, 1)


def test_a_disk_without_room_for_a_journal_still_takes_creates(
        tmp_path: Path, small_disk: Callable[[Path, int], Path]) -> None:
    root = small_disk(tmp_path / "remote", CAPACITY + CAPACITY // 2)
    store = LocalDirectoryStorage(root)
    assert store.put_if_absent(KEY, b"small")
    assert not store.put_if_absent(KEY, b"again")
    assert store.get(KEY) == b"small"
    store.delete(KEY)
    assert store.list("") == []
