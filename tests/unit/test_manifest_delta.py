"""A tenant manifest's delta against the one it was copied from: applied to the old body it
gives the new one, whether the changes were noted or found by comparing every entry."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pageserver.manifest import (
    BranchRecord,
    CheckpointRecord,
    Quotas,
    TenantManifest,
    apply_delta,
)

NAMES = st.sampled_from(["a", "b", "c", "d"])
STEPS = st.lists(st.tuples(st.sampled_from(["branch", "drop_branch", "checkpoint",
                                            "drop_checkpoint", "quotas"]),
                           NAMES, st.integers(0, 3)), max_size=12)


def changed(base: TenantManifest, steps: list[tuple[str, str, int]]) -> TenantManifest:
    manifest = base.copy()
    for step, name, value in steps:
        if step == "branch":
            manifest.set_branch(name, BranchRecord(f"tl{value}", value, parent="a"))
        elif step == "drop_branch" and name in manifest.branches:
            manifest.drop_branch(name)
        elif step == "checkpoint":
            manifest.set_checkpoint(name, CheckpointRecord(f"tl{value}", value, 0, "a"))
        elif step == "drop_checkpoint" and name in manifest.checkpoints:
            manifest.drop_checkpoint(name)
        elif step == "quotas":
            manifest.quotas = Quotas(max_branches=value)
    return manifest


@given(STEPS, STEPS)
def test_a_delta_applied_to_the_old_body_gives_the_new(
        first: list[tuple[str, str, int]], second: list[tuple[str, str, int]]) -> None:
    old = changed(TenantManifest("t", incarnation="i"), first)
    new = changed(old, second)
    body: dict[str, Any] = apply_delta(old.to_json(), new.delta_from(old))
    assert TenantManifest.from_json(body) == new
    unrelated = TenantManifest.from_json(new.to_json())  # no notes: every entry compared
    body = apply_delta(old.to_json(), unrelated.delta_from(old))
    assert TenantManifest.from_json(body) == new
    assert new.delta_from(new.copy()) == {"set": {}, "entries": {"branches": {},
                                                                 "checkpoints": {}}}


def test_a_delta_holds_only_what_changed() -> None:
    old = TenantManifest("t", {f"b{n}": BranchRecord(f"tl{n}", n) for n in range(1000)},
                         incarnation="i")
    new = old.copy()
    new.set_branch("b1", BranchRecord("x", 1))
    new.drop_branch("b2")
    new.set_branch("b3", old.branches["b3"])  # the same record: no change
    assert new.delta_from(old)["entries"]["branches"] == {
        "b1": vars(BranchRecord("x", 1)), "b2": None}
    assert [change.name for change in new.changes_since(old)] == ["b1", "b2"]
