"""Checkpoints and lineage after `branch restore` and `branch reset`, as the CLI shows them
against a real page server: names everywhere, never timeline ids."""

from __future__ import annotations

import re

from tests.cli.conftest import Strata

TIMELINE_ID = re.compile(r"\b[0-9a-f]{32}\b")


def _fork_checkpoint_restore(strata: Strata, branch: str, checkpoint: str) -> None:
    """Fork ``branch`` from main, checkpoint it and restore it to that checkpoint."""
    strata.run("branch", "create", branch, "--ttl", "2h")
    strata.run("checkpoint", "create", branch, checkpoint)
    strata.run("branch", "restore", branch, "--to-checkpoint", checkpoint)


def _checkpoint_row(strata: Strata, checkpoint: str) -> list[str]:
    """The cells of ``checkpoint``'s row in `strata checkpoint list`."""
    (row,) = [line.split() for line in strata.run("checkpoint", "list").stdout.splitlines()
              if line.split()[:1] == [checkpoint]]
    return row


def test_the_readme_session_ends_with_the_undo_branch(strata: Strata) -> None:
    _fork_checkpoint_restore(strata, "try-1", "before-migration")
    strata.run("branch", "reset", "try-1")
    created = strata.run("branch", "create", "try-1-undo", "--at-checkpoint",
                         "before-migration").stdout
    assert created.startswith("created branch 'try-1-undo' from checkpoint "
                              "'before-migration' of 'try-1' at LSN "), created


def test_checkpoints_keep_their_branch_after_restore_and_reset(strata: Strata) -> None:
    _fork_checkpoint_restore(strata, "kept", "kept-cp")
    for step in ("restored", "reset"):
        if step == "reset":
            strata.run("branch", "reset", "kept")
        listed = {c["name"]: c for c in strata.json("checkpoint", "list")["checkpoints"]}
        assert listed["kept-cp"]["branch"] == "kept", step
        assert _checkpoint_row(strata, "kept-cp")[1] == "kept", step


def test_tree_and_show_after_restore(strata: Strata) -> None:
    _fork_checkpoint_restore(strata, "drawn", "drawn-cp")
    names = {b["name"] for b in strata.json("branch", "list")["branches"]}
    main = strata.json("branch", "show", "main")
    assert "drawn" in main["children"] and set(main["children"]) <= names
    (children,) = [line for line in strata.run("branch", "show", "main").stdout.splitlines()
                   if line.startswith("children")]
    assert "drawn" in children and not TIMELINE_ID.search(children)

    (root,) = [node for node in strata.json("branch", "tree")["branches"]
               if node["name"] == "main"]
    assert "drawn" in [node["name"] for node in root["children"]]
    drawn = strata.run("branch", "tree").stdout
    assert "drawn  branch LSN" in drawn and not TIMELINE_ID.search(drawn)


def test_a_branch_from_a_checkpoint_taken_before_a_restore_names_its_parent(
        strata: Strata) -> None:
    _fork_checkpoint_restore(strata, "t2", "t2-cp")
    created = strata.run("branch", "create", "t2-undo", "--at-checkpoint", "t2-cp").stdout
    assert created.startswith("created branch 't2-undo' from checkpoint 't2-cp' of 't2' "), \
        created
    assert strata.json("branch", "show", "t2-undo")["parent"] == "t2"
    assert strata.json("branch", "show", "t2")["children"] == ["t2-undo"]
    (root,) = [node for node in strata.json("branch", "tree")["branches"]
               if node["name"] == "main"]
    (t2,) = [node for node in root["children"] if node["name"] == "t2"]
    assert [node["name"] for node in t2["children"]] == ["t2-undo"]
