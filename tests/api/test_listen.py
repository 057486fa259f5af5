"""Listening: a port that is taken is an error, never shared with another page server."""

from __future__ import annotations

from pathlib import Path

import pytest

from pageserver.api import auth
from pageserver.api.limits import CallLimits
from pageserver.api.server import start_server
from pageserver.config import EngineConfig
from pageserver.engine import Engine
from pageserver.metrics import Metrics
from pageserver.remote import LocalDirectoryStorage
from tests.api.conftest import Live


def test_a_second_server_on_the_same_port_fails_naming_it(live: Live, tmp_path: Path) -> None:
    config = EngineConfig(state_dir=tmp_path / "other", background_period_s=0)
    engine = Engine(config, LocalDirectoryStorage(tmp_path / "other-objects"))
    authority, _ = auth.load_or_create(config.state_dir, engine.storage, engine.incarnation)
    listen = f"127.0.0.1:{live.server.port}"
    try:
        with pytest.raises(OSError, match=f"cannot listen on {listen}: address in use"):
            start_server(engine, authority, Metrics(), listen,
                         limits=CallLimits(max_streams=1, max_calls=1, admin_threads=1))
    finally:
        engine.close(flush=False)
