"""Deletes that cannot be undone, end to end: main is never deleted, a protected branch or
one with children is deleted only after a confirmation on a terminal (a real
pseudo-terminal here) or with --yes, and the prompt says what goes."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest

from common.client import StrataClient
from common.convert import op_to_pb
from common.ops import Create, FileOp, Write
from compute import identity
from proto import strata_pb2 as pb
from strata.cli.units import human_size
from strata.local import passwords
from strata.local.home import Home
from tests.cli.conftest import REPO, Strata

GENERAL, USAGE = 1, 2
MAIN_REFUSED = ("branch 'main' cannot be deleted while tenant 'default' exists; "
                "delete the tenant instead")


@dataclass(frozen=True)
class TerminalRun:
    """A CLI run whose stdin and stderr were a terminal."""

    code: int
    terminal: str  # what it showed on the terminal (stderr, and the answer echoed)
    stdout: str


def run_on_terminal(cli: Strata, *args: str, answer: str) -> TerminalRun:
    """Run ``strata *args`` with stdin and stderr on a pseudo-terminal; once it asks a
    yes/no question, type ``answer``."""
    primary, secondary = os.openpty()
    process = subprocess.Popen([sys.executable, "-m", "strata.cli", *args], cwd=REPO,
                               env=cli.environ(), stdin=secondary, stderr=secondary,
                               stdout=subprocess.PIPE, text=True)
    os.close(secondary)
    shown = b""
    answered = False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(primary, 4096)
                except OSError:  # EIO: the process closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            if not answered and b"[y/N]:" in shown:
                os.write(primary, answer.encode() + b"\n")
                answered = True
            if process.poll() is not None and not ready:
                break
        stdout, _ = process.communicate(timeout=60)
    finally:
        os.close(primary)
        if process.poll() is None:
            process.kill()
    return TerminalRun(process.returncode, shown.decode().replace("\r\n", "\n"), stdout)


def write_and_flush(cli: Strata, branch: str, size: int) -> None:
    """Give ``branch`` layers of its own: ``size`` bytes written as a compute would (one
    acknowledged batch under a writer epoch), then flushed by ``strata compact``."""
    home = Home(cli.home)
    info = cli.json("branch", "show", branch)
    ops: list[FileOp] = [Create(f"{branch}.bin"), Write(f"{branch}.bin", 0, os.urandom(size))]
    with StrataClient(home.server_address(), home.admin_token()) as client:
        epoch = client.attach_writer("default", branch, holder="test").writer_epoch
        requests = iter([
            pb.IngestRequest(open=pb.IngestOpen(tenant="default", branch=branch,
                                                writer_epoch=epoch)),
            pb.IngestRequest(batch=pb.IngestBatch(
                batch_id=1, ops=[op_to_pb(op) for op in ops],
                wal_lsn=info["last_wal_lsn"] + 1, timestamp_us=time.time_ns() // 1000)),
        ])
        acks = list(client.open_ingest_stream(requests))
        assert [a.batch_id for a in acks] == [1]
        client.detach_writer("default", branch, epoch)
    cli.run("compact")


def names(cli: Strata) -> list[str]:
    return [b["name"] for b in cli.json("branch", "list")["branches"]]


def test_main_is_never_deleted(strata: Strata) -> None:
    strata.run("branch", "create", "beside-main")
    for flags in ((), ("--force",), ("--cascade", "--force", "--yes")):
        assert strata.fail(GENERAL, "branch", "delete", "main", *flags) == MAIN_REFUSED
    assert {"main", "beside-main"} <= set(names(strata))


def test_guarded_deletes_without_a_terminal_need_yes(strata: Strata) -> None:
    strata.run("branch", "create", "keep", "--protected")
    strata.run("branch", "create", "tree")
    strata.run("branch", "create", "tree-child", "--parent", "tree")
    strata.run("checkpoint", "create", "tree-child", "tree-cp")
    before = names(strata)
    for args, what in ((("keep", "--force"), "branch 'keep'"),
                       (("tree", "--cascade"), "branch 'tree' and the 1 below it")):
        assert strata.fail(USAGE, "branch", "delete", *args) == (
            f"refusing to delete {what} without --yes (no terminal to confirm on)")
    # What the server refuses is still refused first, with its own reason and the flag.
    assert strata.fail(GENERAL, "branch", "delete", "keep") == (
        "branch 'keep' is protected; deleting it needs force (--force)")
    assert strata.fail(GENERAL, "branch", "delete", "tree", "--yes") == (
        "branch 'tree' has child branches tree-child; delete them first or ask for a "
        "cascading delete (--cascade)")
    assert names(strata) == before
    assert "tree-cp" in [c["name"] for c in strata.json("checkpoint", "list")["checkpoints"]]

    done = strata.run("branch", "delete", "tree", "--cascade", "--yes").stdout
    assert done == "deleted branches 'tree-child', 'tree', checkpoints 'tree-cp' " \
                   "(0 B of layers freed)\n"
    assert strata.json("branch", "delete", "keep", "--force", "--yes") == {
        "deleted": ["keep"], "checkpoints": [], "freed_bytes": 0}
    strata.run("branch", "create", "leaf")  # a plain leaf: no question, as before
    assert strata.run("branch", "delete", "leaf").stdout.startswith("deleted branch 'leaf' (")
    assert names(strata) == [n for n in before if n not in ("keep", "tree", "tree-child")]


def test_the_terminal_prompt_says_what_goes_and_a_no_keeps_it(strata: Strata) -> None:
    strata.run("branch", "create", "work")
    write_and_flush(strata, "work", 200_000)
    strata.run("checkpoint", "create", "work", "work-cp")
    strata.run("branch", "create", "work-child", "--parent", "work")
    write_and_flush(strata, "work-child", 100_000)
    owned = sum(strata.json("branch", "show", name)["owned_bytes"]
                for name in ("work", "work-child"))
    assert owned > 300_000
    question = "Delete branch 'work' and the 1 below it? [y/N]:"

    declined = run_on_terminal(strata, "branch", "delete", "work", "--cascade", answer="n")
    assert declined.code == GENERAL and declined.stdout == ""
    assert declined.terminal.startswith(
        "This deletes, and nothing brings back:\n"
        "  branches 'work-child', 'work'\n"
        "  checkpoints 'work-cp'\n"
        f"  {human_size(owned)} of layers that only these branches hold\n"
        f"{question} n\n"), declined.terminal
    assert "strata: did not delete branch 'work' and the 1 below it: not confirmed" \
        in declined.terminal
    assert {"work", "work-child"} <= set(names(strata))

    accepted = run_on_terminal(strata, "branch", "delete", "work", "--cascade", answer="y")
    assert accepted.code == 0, accepted
    assert accepted.stdout == ("deleted branches 'work-child', 'work', checkpoints "
                               f"'work-cp' ({human_size(owned)} of layers freed)\n")
    assert not {"work", "work-child"} & set(names(strata))


def test_tenant_delete_asks_the_same_way(strata: Strata) -> None:
    strata.run("tenant", "create", "scratch", "--empty")
    declined = run_on_terminal(strata, "tenant", "delete", "scratch", answer="n")
    assert declined.code == GENERAL
    assert declined.terminal.startswith(
        "tenant 'scratch': 1 branch with their checkpoints, 0 B stored\n"
        "Delete tenant 'scratch'? [y/N]: n\n"), declined.terminal
    assert "scratch" in [t["tenant"] for t in strata.json("tenant", "list")["tenants"]]
    assert "--yes" in strata.fail(USAGE, "tenant", "delete", "scratch")
    strata.run("tenant", "delete", "scratch", "--yes")


@pytest.mark.skipif(os.geteuid() != 0, reason="making OS users needs root")
def test_tenant_delete_removes_what_the_host_kept_for_it(strata: Strata) -> None:
    """Its OS user and password go with it: a tenant made later under the same name
    shares nothing with the deleted one."""
    strata.run("tenant", "create", "gone", "--empty")
    home = Home(strata.home)
    passwords.ensure(home, "gone")  # as `strata connect` would
    password = home.root / "passwords" / "gone"
    assert password.exists()
    made = identity.ensure("gone")  # as its first compute start would
    try:
        strata.run("tenant", "delete", "gone", "--yes")
        assert identity.find("gone") is None
        assert not password.exists()
    finally:
        identity.remove("gone")
    assert made.uid > 0
