"""The ``strata`` CLI end to end: a real page server started by ``strata up``, a tenant made
by a real initdb, and every command run as a subprocess the way a user or an agent runs it."""

from __future__ import annotations

import os
import re
import signal
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from common.client import StrataClient
from strata.local.lifecycle import process_alive
from tests.cli.conftest import Strata
from tests.moto_server import DUMMY_AWS_ENV

# Exit codes (strata.cli.errors.ExitCode), spelled out as a script would see them.
GENERAL, USAGE, NOT_FOUND, AUTH, UNREACHABLE = 1, 2, 3, 4, 5


def test_up_is_idempotent_and_status_reports_the_server(strata: Strata) -> None:
    again = strata.up()
    assert again["started"] is False and again["healthy"] is True
    assert "already running" in strata.run("up").stdout

    status = strata.json("status")
    assert status["home"] == str(strata.home)
    server, proxy, console = status["components"]
    assert server["component"] == "pageserver" and server["alive"] and server["healthy"]
    assert proxy["component"] == "proxy"
    assert console["component"] == "console" and console["healthy"]
    assert console["address"] == status["console_url"] == again["console"]["address"]
    assert status["console_url"].startswith("http://127.0.0.1:")
    # The proxy starts computes, so only root runs it.
    assert proxy["healthy"] is (os.geteuid() == 0)
    assert (again["proxy"] is not None) is proxy["alive"]
    assert server["pid"] == again["pid"]
    assert server["address"] == f"127.0.0.1:{strata.port}"
    assert server["metrics_address"].startswith("127.0.0.1:")
    assert server["storage"] == f"local:{strata.home / 'objects'}"
    assert server["state_dir"] == str(strata.home / "pageserver")
    table = strata.run("status").stdout
    assert "pageserver" in table and str(server["pid"]) in table
    assert status["layer_cache"]["in_place"] == 1  # a local store: no second copy
    assert status["layer_cache"]["bytes"] == 0 and status["layer_cache"]["misses"] == 0
    assert "read in place from the local store" in table


def test_tenant_list(strata: Strata) -> None:
    tenants = strata.json("tenant", "list")["tenants"]
    (default,) = [t for t in tenants if t["tenant"] == "default"]
    assert default["generation"] >= 1 and default["branches"] >= 1
    assert "default" in strata.run("tenant", "list").stdout


def test_branches_and_checkpoints(strata: Strata) -> None:
    main = strata.json("branch", "show", "main")
    assert main["parent"] is None and main["last_lsn"] > 0 and main["logical_size"] > 0

    dev = strata.json("branch", "create", "dev")
    assert (dev["parent"], dev["branch_lsn"]) == ("main", main["last_lsn"])
    child = strata.json("branch", "create", "dev-child", "--parent", "dev", "--ttl", "2h")
    expected_expiry = time.time() + 7200
    assert abs(child["expires_at_us"] / 1e6 - expected_expiry) < 60
    assert child["expires_at"].endswith("+00:00")

    listed = {b["name"]: b for b in strata.json("branch", "list")["branches"]}
    assert {"main", "dev", "dev-child"} <= listed.keys()
    assert listed["main"]["last_wal_lsn_str"].count("/") == 1
    first = strata.json("branch", "list", "--limit", "2")["branches"]
    assert [b["name"] for b in first] == sorted(listed)[:2]
    table = strata.run("branch", "list").stdout
    for header in ("branch LSN", "last WAL position", "logical size", "owned"):
        assert header in table
    assert " MB" in table

    shown = strata.json("branch", "show", "dev")
    assert shown["children"] == ["dev-child"]
    assert {"writer_epoch", "gc_cutoff", "timeline_id"} <= shown.keys()
    assert "writer epoch" in strata.run("branch", "show", "dev").stdout

    tree = strata.json("branch", "tree")
    (root,) = [node for node in tree["branches"] if node["name"] == "main"]
    (dev_node,) = [node for node in root["children"] if node["name"] == "dev"]
    assert [node["name"] for node in dev_node["children"]] == ["dev-child"]
    drawn = strata.run("branch", "tree").stdout
    assert "└── " in drawn and f"dev-child  branch LSN {child['branch_lsn']}" in drawn

    checkpoint = strata.json("checkpoint", "create", "main", "before-change")
    assert (checkpoint["branch"], checkpoint["lsn"]) == ("main", main["last_lsn"])
    listed = {c["name"]: c for c in strata.json("checkpoint", "list")["checkpoints"]}
    assert {"held_bytes", "reclaim_bytes"} <= listed["before-change"].keys()
    table = strata.run("checkpoint", "list").stdout
    assert "holds" in table.splitlines()[0] and "delete frees" in table.splitlines()[0]
    restored = strata.json("branch", "create", "restored", "--at-checkpoint", "before-change")
    assert restored["branch_lsn"] == checkpoint["lsn"]
    at_wal = strata.json("branch", "create", "at-wal", "--at-wal-lsn", main["last_wal_lsn_str"])
    assert at_wal["branch_lsn"] <= main["last_lsn"]
    now_local = datetime.now().isoformat()  # no zone: local time
    at_time = strata.json("branch", "create", "at-time", "--at-time", now_local)
    assert at_time["branch_lsn"] == main["last_lsn"]

    beyond = strata.fail(GENERAL, "branch", "create", "future", "--at-lsn", "999999999")
    assert "beyond" in beyond

    refused = strata.fail(GENERAL, "branch", "delete", "dev")
    assert "child" in refused
    deleted = strata.json("branch", "delete", "dev", "--cascade", "--yes")["deleted"]
    assert sorted(deleted) == ["dev", "dev-child"]
    plan = strata.json("checkpoint", "delete", "before-change", "--dry-run")
    assert (plan["deleted"], plan["dry_run"]) == (None, True)
    assert plan["reclaim_bytes"] == listed["before-change"]["reclaim_bytes"]
    assert "would delete checkpoint 'before-change': frees " in strata.run(
        "checkpoint", "delete", "before-change", "--dry-run").stdout
    assert strata.json("checkpoint", "delete", "before-change") == \
        {**plan, "deleted": "before-change", "dry_run": False}
    strata.json("gc")  # the page server samples storage after each GC
    history = strata.json("tenant", "storage", "default")
    assert {b["name"] for b in history["samples"][-1]["branches"]} >= {"main", "at-wal"}
    assert "branch main" in strata.run("tenant", "storage", "default", "--since", "1h").stdout
    assert "deleted branch 'at-time'" in strata.run("branch", "delete", "at-time").stdout


def test_branch_settings_protection_and_forced_delete(strata: Strata) -> None:
    keep = strata.json("branch", "create", "keep", "--protected", "--suspend-timeout", "90s")
    assert keep["protected"] is True and keep["suspend_timeout_s"] == 90
    assert strata.json("branch", "show", "main")["protected"] is True  # main always is
    assert "never expires" in strata.fail(GENERAL, "branch", "set", "keep", "--ttl", "1h")
    assert "protected" in strata.fail(GENERAL, "branch", "delete", "keep")
    assert "delete the tenant" in strata.fail(GENERAL, "branch", "delete", "main", "--force")
    assert "nothing to set" in strata.fail(USAGE, "branch", "set", "keep")
    unprotected = strata.json("branch", "set", "keep", "--unprotected", "--ttl", "1h")
    assert unprotected["protected"] is False and unprotected["expires_at_us"] > 0
    forever = strata.json("branch", "set", "keep", "--no-ttl", "--suspend-timeout", "5m")
    assert forever["expires_at_us"] == 0 and forever["suspend_timeout_s"] == 300
    strata.json("branch", "set", "keep", "--protected")
    assert strata.json("branch", "delete", "keep", "--force", "--yes")["deleted"] == ["keep"]
    assert "never expires" in strata.fail(USAGE, "branch", "create", "both", "--protected",
                                          "--ttl", "1h")


def test_times_ago_and_the_usable_range_in_errors(strata: Strata) -> None:
    main = strata.json("branch", "show", "main")
    time.sleep(max(0.0, main["last_time_us"] / 1e6 + 1.5 - time.time()))  # writes >1.5 s old
    second_ago = strata.json("branch", "create", "second-ago", "--at-time", "1 second ago")
    assert second_ago["branch_lsn"] == main["last_lsn"]
    assert strata.json("branch", "restore", "second-ago", "--to-time", "-1s")["branch_lsn"] \
        == main["last_lsn"]

    too_old = strata.fail(GENERAL, "branch", "create", "x", "--at-time", "2 weeks ago")
    assert too_old.startswith("no state of branch 'main' is as old as ")
    oldest = re.search(r"its usable times run from [^(]+\((\S+Z)\), its first write, "
                       r"to now, [^(]+\((\S+Z)\) by the page server's clock$", too_old)
    assert oldest is not None, too_old
    first_us, now_us = (datetime.fromisoformat(m).timestamp() * 1e6 for m in oldest.groups())
    assert main["created_at_us"] <= first_us <= main["last_time_us"] + 1e6
    assert abs(now_us - time.time() * 1e6) < 5e6
    # The oldest usable time, typed back as printed, is accepted.
    assert strata.json("branch", "create", "oldest", "--at-time", oldest[1])["branch_lsn"] >= 1

    ahead = (datetime.now() + timedelta(hours=1)).isoformat(timespec="seconds")
    future = strata.fail(GENERAL, "branch", "restore", "second-ago", "--to-time", ahead)
    assert future.startswith(f"{ahead.replace('T', ' ')} ") and " is in the future: the " \
        "usable times of branch 'second-ago' run from " in future
    assert "in the future" in strata.fail(USAGE, "branch", "create", "x", "--at-time", "+5m")
    assert "--at-checkpoint cp" in strata.fail(USAGE, "branch", "create", "x", "--at-time",
                                               "@cp")
    for name in ("second-ago", "oldest"):
        strata.run("branch", "delete", name)


def test_errors_are_one_line_with_distinct_exit_codes(strata: Strata) -> None:
    message = strata.fail(NOT_FOUND, "branch", "show", "nope")
    assert message == "no branch 'nope' in tenant 'default'"
    strata.fail(NOT_FOUND, "branch", "list", "--tenant", "ghost")
    strata.fail(NOT_FOUND, "checkpoint", "delete", "nope")
    strata.fail(USAGE, "branch", "create", "x", "--at-lsn", "1", "--at-time", "2024-01-01")
    strata.fail(USAGE, "branch", "create", "x", "--at-wal-lsn", "12345")
    strata.fail(USAGE, "branch", "create", "x", "--ttl", "soon")
    strata.fail(USAGE, "branch", "create", "x", "--at-time", "yesterday")
    strata.fail(USAGE, "branch", "frobnicate")
    assert "--yes" in strata.fail(USAGE, "tenant", "delete", "default")
    assert "invalid branch name" in strata.fail(USAGE, "branch", "create", "bad/name")
    # --json changes nothing about errors: stdout stays empty.
    strata.fail(NOT_FOUND, "branch", "show", "nope", "--json")


def _token_file(strata: Strata, token: str, name: str) -> str:
    """A 0600 file holding ``token``, for --token-file."""
    path = strata.home.parent / f"{name}.token"
    path.write_text(token)
    path.chmod(0o600)
    return str(path)


def test_tokens_are_confined_to_their_tenant(strata: Strata) -> None:
    strata.json("tenant", "create", "other", "--empty")
    issued = strata.json("token", "create", "--tenant", "other", "--scope", "tenant",
                         "--ttl", "1h")
    assert issued["scope"] == "tenant" and abs(issued["expires_at_s"] - time.time() - 3600) < 60
    assert len(issued["id"]) == 32
    token = strata.run("token", "create", "--tenant", "other", "--scope", "tenant").stdout.strip()
    assert token.count(".") == 2  # a bare JWT and nothing else
    file = _token_file(strata, token, "other")

    own = strata.json("branch", "list", "--tenant", "other", "--token-file", file)["branches"]
    assert [b["name"] for b in own] == ["main"]
    denied = strata.fail(AUTH, "branch", "list", "--tenant", "default", "--token-file", file)
    assert "'other'" in denied and "'default'" in denied
    strata.fail(AUTH, "token", "create", "--scope", "admin", "--token-file", file)
    strata.fail(AUTH, "branch", "list", "--token-file",
                _token_file(strata, "not-a-token", "bad"))
    via_env = strata.run("branch", "list", "--tenant", "other", "--json",
                         env={"STRATA_TOKEN": token}).json()
    assert via_env["branches"][0]["name"] == "main"
    short = strata.run("token", "create", "--tenant", "other", "--scope", "tenant", "--ttl",
                       "1s").stdout.strip()
    time.sleep(1.5)
    assert "expired" in strata.fail(AUTH, "branch", "list", "--tenant", "other",
                                    "--token-file", _token_file(strata, short, "short"))
    # A tenant sees its quotas but only an admin sets them.
    assert strata.json("tenant", "show", "other", "--token-file", file)["max_branches"] is None
    strata.fail(AUTH, "tenant", "set", "other", "--max-branches", "9", "--token-file", file)
    strata.run("tenant", "delete", "other", "--yes")


def test_a_token_on_the_command_line_is_refused(strata: Strata) -> None:
    message = strata.fail(USAGE, "branch", "list", "--token", "s3kr1t")
    assert "STRATA_TOKEN" in message and "--token-file" in message and "s3kr1t" not in message
    assert "no such file" in strata.fail(USAGE, "branch", "list", "--token-file",
                                         str(strata.home / "absent")).lower()


def test_durability_is_chosen_shown_and_checked(strata: Strata) -> None:
    strata.json("tenant", "create", "quick", "--empty", "--durability", "local",
                "--max-lag", "2s")
    shown = strata.json("tenant", "show", "quick")
    assert (shown["durability"], shown["max_lag_s"]) == ("local", 2.0)
    assert shown["rpo"] == ("acknowledged after local fsync; up to 2 s of acknowledged "
                            "commits can be lost if this page server's disk is lost")
    assert "up to 2 s of acknowledged commits" in strata.run("tenant", "show", "quick").stdout
    assert strata.json("tenant", "set", "quick", "--max-lag", "1s")["max_lag_s"] == 1.0
    back = strata.json("tenant", "set", "quick", "--durability", "store")
    assert (back["durability"], back["max_lag_s"]) == ("store", None)
    assert "nothing acknowledged is lost" in back["rpo"]
    assert "--durability local only" in strata.fail(USAGE, "tenant", "set", "quick",
                                                    "--max-lag", "3s")
    assert "outside 0.1 s to 300 s" in strata.fail(USAGE, "tenant", "set", "quick",
                                                   "--durability", "local", "--max-lag", "1h")
    assert "'fast' is not one of" in strata.fail(USAGE, "tenant", "create", "other",
                                                 "--durability", "fast")
    strata.run("tenant", "delete", "quick", "--yes")


def test_quotas_are_shown_and_enforced(strata: Strata) -> None:
    strata.json("tenant", "create", "small", "--empty")
    quotas = strata.json("tenant", "set", "small", "--max-branches", "3", "--max-ttl", "1h",
                         "--max-computes", "1")
    assert quotas == {"tenant": "small", "max_branches": 3, "max_computes": 1,
                      "max_ttl_s": 3600, "max_storage": None}
    fork = strata.json("branch", "create", "fork", "--tenant", "small")
    assert 3500 < fork["expires_at_us"] / 1e6 - time.time() <= 3600  # the longest TTL given
    assert "at most 3600 s" in strata.fail(GENERAL, "branch", "create", "long", "--ttl", "2h",
                                           "--tenant", "small")
    strata.json("branch", "create", "third", "--tenant", "small", "--ttl", "10m")
    message = strata.fail(GENERAL, "branch", "create", "fourth", "--tenant", "small")
    assert message == "tenant 'small' has 3 branches, its quota is 3: delete some first"
    shown = strata.json("tenant", "show", "small")
    assert (shown["branches"], shown["max_branches"], shown["computes_running"]) == (3, 3, 0)
    assert strata.json("tenant", "show", "--tenant", "small") == shown  # like every command
    assert strata.json("tenant", "storage", "--tenant", "small")["tenant"] == "small"
    assert "3 of 3" in strata.run("tenant", "show", "small").stdout
    cleared = strata.json("tenant", "set", "small", "--max-ttl", "0")
    assert cleared["max_ttl_s"] is None and cleared["max_branches"] == 3
    assert strata.json("tenant", "set", "small", "--max-storage", "1.5GiB")["max_storage"] \
        == 1536 * 1024 * 1024
    shown = strata.json("tenant", "show", "small")
    assert shown["max_storage"] == 1536 * 1024 * 1024 and shown["stored_bytes"] >= 0
    assert "of 1.6 GB" in strata.run("tenant", "show", "small").stdout
    assert "invalid size '10 apples'" in strata.fail(USAGE, "tenant", "set", "small",
                                                     "--max-storage", "10 apples")
    strata.run("tenant", "delete", "small", "--yes")


def test_gc_and_compact(strata: Strata) -> None:
    compacted = strata.json("compact", "--force")
    assert {"l0_merged", "l1_written", "images_written"} == compacted.keys()
    assert strata.run("compact").stdout.startswith("compact: ")
    assert strata.json("branch", "show", "main")["owned_bytes"] > 0
    gc = strata.json("gc")
    assert {"timelines", "layers_removed", "bytes_removed", "history_window_s",
            "branches"} == gc.keys()
    (main,) = [report for report in gc["branches"] if report["branches"] == ["main"]]
    assert main["kept_bytes"].keys() == {"current", "window", "checkpoints", "branch_points"}
    assert main["kept_bytes"]["current"] > 0 and main["bytes_removed"] >= 0
    text = strata.run("gc").stdout
    assert text.startswith("gc: ") and "kept: window" in text
    assert re.search(r"^main +1d ", text, re.MULTILINE), text  # main's window
    assert main["history_window_from"] == "page server default"


def test_history_windows_and_sizes(strata: Strata) -> None:
    main = strata.json("branch", "show", "main")
    assert (main["history_window_s"], main["history_window_from"]) == (86400, "page server "
                                                                        "default")
    assert main["logical_size"] > 0 and main["history_bytes"] >= 0
    # all of main, unless a branch of an earlier test reads through it
    assert main["reclaim_bytes"] == (0 if main["children"] else main["owned_bytes"])
    fork = strata.json("branch", "create", "try", "--ttl", "2h")
    assert (fork["history_window_s"], fork["history_window_from"]) == (3600, "fork default")
    assert strata.json("branch", "show", "try")["reclaim_bytes"] == 0  # it wrote nothing
    assert strata.json("branch", "show", "main")["reclaim_bytes"] == 0  # "try" reads it
    long = strata.json("branch", "create", "long", "--history", "2d")
    assert (long["history_s"], long["history_window_from"]) == (172800, "branch")
    back = strata.json("branch", "set", "long", "--history", "default")
    assert back["history_s"] is None and back["history_window_s"] == 3600
    assert strata.json("branch", "set", "main", "--history", "30m")["history_window_s"] == 1800
    text = strata.run("branch", "show", "main").stdout
    assert "30m (branch)" in text and "a delete would reclaim" in text
    tenant = strata.json("tenant", "set", "default", "--history", "10m")
    assert (tenant["history_s"], tenant["history_window_from"]) == (600, "tenant")
    assert strata.json("branch", "show", "try")["history_window_s"] == 600  # under the hour
    shown = strata.json("tenant", "show", "default")
    assert shown["history_window_s"] == 600 and shown["reclaim_bytes"] == shown["owned_bytes"]
    assert "10m (tenant)" in strata.run("tenant", "show", "default").stdout
    assert strata.json("tenant", "set", "default", "--history", "default")["history_s"] is None
    assert "out of range" in strata.fail(USAGE, "branch", "set", "main", "--history", "5000w")
    assert "invalid duration" in strata.fail(USAGE, "branch", "create", "x", "--history", "soon")
    assert "on its own" in strata.fail(USAGE, "tenant", "set", "default", "--history", "1h",
                                       "--max-branches", "3")
    made = strata.json("tenant", "create", "brief", "--empty", "--history", "1h")
    assert made["tenant"]["tenant"] == "brief"
    assert strata.json("tenant", "show", "brief")["history_s"] == 3600
    strata.run("tenant", "delete", "brief", "--yes")
    for name in ("try", "long"):
        strata.run("branch", "delete", name, "--yes")


def test_client_attaches_and_detaches_a_writer(strata: Strata) -> None:
    token = (strata.home / "pageserver" / "auth" / "admin.token").read_text().strip()
    with StrataClient(f"127.0.0.1:{strata.port}", token) as client:
        first = client.attach_writer("default", "main")
        second = client.attach_writer("default", "main")
        assert second.writer_epoch == first.writer_epoch + 1
        client.detach_writer("default", "main", second.writer_epoch)


def test_a_killed_page_server_is_restarted_with_its_data(strata: Strata) -> None:
    strata.json("branch", "create", "survivor")
    pid = strata.pageserver_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    status = strata.status()["components"][0]
    assert not status["alive"] and status["pid"] is None
    message = strata.fail(UNREACHABLE, "branch", "list")
    assert message == f"page server not running at 127.0.0.1:{strata.port}; run `strata up`"

    restarted = strata.up()
    assert restarted["started"] is True and restarted["pid"] != pid
    assert strata.json("branch", "show", "survivor")["parent"] == "main"


def test_up_down_down_in_a_fresh_home(idle_strata: Strata) -> None:
    assert idle_strata.status()["components"][0]["alive"] is False
    nowhere = f"127.0.0.1:{idle_strata.port}"  # not the default 6400: something may run there
    message = idle_strata.fail(UNREACHABLE, "tenant", "list", "--server", nowhere)
    assert message == f"page server not running at {nowhere}; run `strata up`"

    idle_strata.up("--pitr-window", "2h")
    token_file = idle_strata.home / "pageserver" / "auth" / "admin.token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert idle_strata.json("tenant", "list") == {"tenants": []}
    assert "already running" in idle_strata.run("up").stdout  # options remembered
    idle_strata.fail(GENERAL, "up", "--pitr-window", "3h")  # running with other options

    stopped = idle_strata.json("down")
    assert stopped["stopped"] is True and stopped["killed"] is False
    assert not process_alive(stopped["pid"])
    assert (stopped["proxy_stopped"] is not None) is (os.geteuid() == 0)
    assert stopped["console_stopped"] is not None
    assert idle_strata.json("down") == {"stopped": False, "pid": None, "killed": False,
                                       "computes_stopped": [], "proxy_stopped": None,
                                       "console_stopped": None}
    assert idle_strata.run("down").stdout.strip() == "page server not running"


def test_a_failed_start_points_at_the_log(idle_strata: Strata) -> None:
    idle_strata.home.mkdir()
    (idle_strata.home / "objects").write_text("not a directory")  # the local object store
    result = idle_strata.run("up", "--port", str(idle_strata.port), "--metrics-port", "0",
                             "--proxy-port", "0", "--console-port", "0", "--timeout", "20",
                             expect=GENERAL)
    first, *tail = result.stderr.splitlines()
    log_file = idle_strata.home / "logs" / "pageserver.log"
    assert first.startswith("strata: the page server exited with status 1 while starting")
    assert first.endswith(str(log_file))
    assert tail and all(line.startswith("  ") for line in tail)
    assert "objects" in tail[-1]


@pytest.mark.s3
def test_up_on_s3_remembers_its_options(idle_strata: Strata, moto_endpoint: str,
                                        s3_bucket: str) -> None:
    idle_strata.env = DUMMY_AWS_ENV
    state = idle_strata.up("--storage", "s3", "--s3-endpoint", moto_endpoint,
                           "--s3-bucket", s3_bucket, "--s3-prefix", "strata/test")
    assert state["storage"].startswith(f"s3://{s3_bucket}/strata/test")
    idle_strata.json("tenant", "create", "t", "--empty")
    idle_strata.json("branch", "create", "b", "--tenant", "t")
    idle_strata.json("down")

    again = idle_strata.json("up")  # plain: the saved S3 options
    idle_strata.pids.add(again["pid"])
    assert again["storage"] == state["storage"]
    assert idle_strata.json("branch", "show", "b", "--tenant", "t")["parent"] == "main"
    assert Path(idle_strata.home, "config.json").is_file()
