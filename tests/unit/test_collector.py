"""Freezing start-up objects out of the garbage collector's full passes."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from common.collector import freeze_start_up


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_objects_alive_at_start_up_leave_the_collected_generations(unfrozen: None) -> None:
    survivor: list[object] = [{"made": "at start-up"}]
    assert gc.is_tracked(survivor)
    collected_before = sum(len(gc.get_objects(generation)) for generation in range(3))
    frozen = freeze_start_up()
    assert frozen == gc.get_freeze_count() >= 1
    assert not any(obj is survivor for obj in gc.get_objects(2))
    later: list[object] = []
    assert any(obj is later for obj in gc.get_objects(0))  # made since: collected as ever
    assert sum(len(gc.get_objects(generation)) for generation in range(3)) < collected_before
