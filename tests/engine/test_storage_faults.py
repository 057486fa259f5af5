"""What the engine does when single object-store calls fail (issue 12): each test names
one failure and the outcome the engine owes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from common.ops import Batch, Create, Mkdir, Write
from pageserver.remote import LocalDirectoryStorage, RemoteStorageError
from pageserver.remote.faults import FaultPlan, FaultyStorage
from tests.engine.conftest import EngineFactory

DATA = b"x" * 100_000


def _flushed(make_engine: EngineFactory, store: FaultyStorage) -> None:
    """A tenant whose file is in an uploaded layer; the engine is closed again."""
    engine = make_engine(store)
    main = engine.create_tenant("t").branch("main")
    main.ingest(Batch((Mkdir("base"), Create("base/f"), Write("base/f", 0, DATA))))
    main.freeze()
    main.flush()
    engine.close(flush=False)


def test_a_layer_download_cut_short_is_not_kept(
        make_engine: EngineFactory, tmp_path: Path) -> None:
    store = FaultyStorage(LocalDirectoryStorage(tmp_path / "remote"),
                          FaultPlan(seed=3, torn=1.0, ops=frozenset({"get"})), enabled=False)
    _flushed(make_engine, store)
    shutil.rmtree(tmp_path / "state" / "layers")  # a page server with a cold layer cache
    engine = make_engine(store)
    store.enabled = True
    try:  # the short body is noticed: a retryable failure, or read again and right
        first = engine.timeline("t", "main").read_file("base/f")
    except RemoteStorageError:
        first = DATA
    assert first == DATA
    assert store.injected_total("torn") >= 1
    store.enabled = False
    assert engine.timeline("t", "main").read_file("base/f") == DATA


def test_a_start_that_fails_on_the_store_can_be_tried_again(
        make_engine: EngineFactory, tmp_path: Path) -> None:
    store = FaultyStorage(LocalDirectoryStorage(tmp_path / "remote"),
                          FaultPlan(error=1.0, ops=frozenset({"list"})), enabled=False)
    _flushed(make_engine, store)
    store.enabled = True
    with pytest.raises(RemoteStorageError):
        make_engine(store)
    store.enabled = False
    assert make_engine(store).timeline("t", "main").read_file("base/f") == DATA
