"""Fixtures of the engine tier: an engine on the local-directory store in a temp dir."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pageserver.config import EngineConfig
from pageserver.engine import Engine
from pageserver.remote import LocalDirectoryStorage, RemoteStorage

EngineFactory = Callable[..., Engine]


@pytest.fixture
def make_engine(tmp_path: Path) -> Iterator[EngineFactory]:
    """Opens engines on one state dir and store; closes whatever is still open at the end."""
    opened: list[Engine] = []

    def make(
        storage: RemoteStorage | None = None, state: str = "state", **config: object
    ) -> Engine:
        settings: dict[str, object] = {"background_period_s": 0, "pitr_window_s": 0}
        settings.update(config)
        engine = Engine(
            EngineConfig(state_dir=tmp_path / state, **settings),  # type: ignore[arg-type]
            storage or LocalDirectoryStorage(tmp_path / "remote"),
        )
        opened.append(engine)
        return engine

    yield make
    for engine in opened:
        with contextlib.suppress(Exception):
            engine.close(flush=False)


@pytest.fixture
def engine(make_engine: EngineFactory) -> Engine:
    return make_engine()
