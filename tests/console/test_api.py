"""The console's JSON API over HTTP against a real page server: every endpoint, the
answers it refuses (no token, a bad one, a revoked one, a tenant token on another tenant),
and the OpenAPI document that describes it."""

from __future__ import annotations

from strata.console import api, openapi
from tests.cli.conftest import Strata, free_port, strata_home
from tests.console.conftest import Console

TENANT_PATHS = ("tenants/{t}", "tenants/{t}/branches", "tenants/{t}/branches/probe",
                "tenants/{t}/branches/probe/delete-plan", "tenants/{t}/checkpoints",
                "tenants/{t}/computes", "tenants/{t}/storage",
                "tenants/{t}/storage/history")


def test_the_openapi_document_names_every_route_and_no_other(console: Console) -> None:
    routes = {(route.path, method.lower()) for route in api.ROUTES
              for method in route.methods or () if method != "HEAD"}
    assert routes == set(openapi.OPERATIONS)
    served = console.call("GET", "api/openapi.json", token="")  # no token needed
    assert served.status == 200 and served.body == openapi.document()
    for path, methods in served.body["paths"].items():
        for method, operation in methods.items():
            named = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert named == {part[1:-1] for part in path.split("/") if part.startswith("{")}, \
                (path, method)


def test_the_page_and_its_files_are_served_with_a_strict_policy(console: Console) -> None:
    page = console.call("GET", "", token="")
    assert page.status == 200 and "<title>Strata console</title>" in page.body
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("app.js", "tree.js", "charts.js", "style.css"):
        assert console.call("GET", f"static/{name}", token="").status == 200
    assert console.call("GET", "static/missing.js", token="").status == 404


def test_requests_without_a_good_token_are_refused(console: Console) -> None:
    assert "missing bearer token" in console.refused(401, "GET", "api/whoami", token="")
    assert "not a Strata token" in console.refused(401, "GET", "api/tenants", token="xyz")
    head, payload, signature = console.admin.split(".")
    forged = f"{head}.{payload}.{signature[::-1]}"
    console.refused(401, "GET", "api/tenants", token=forged)
    doomed = console.cli.json("token", "create", "--tenant", "default", "--scope", "tenant")
    assert console.ok("GET", "api/whoami", token=doomed["token"])["tenant"] == "default"
    console.cli.json("token", "revoke", doomed["id"])
    console.refused(401, "GET", "api/tenants/default/branches", token=doomed["token"])


def test_who_and_which_tenants(console: Console) -> None:
    admin = console.ok("GET", "api/whoami")
    assert admin["admin"] is True and admin["tenant"] is None
    assert {t["tenant"] for t in console.ok("GET", "api/tenants")["tenants"]} == \
        {"default", "other"}
    mine = console.tokens["default"]
    assert console.ok("GET", "api/whoami", token=mine)["tenant"] == "default"
    assert [t["tenant"] for t in console.ok("GET", "api/tenants", token=mine)["tenants"]] == \
        ["default"]
    usage = console.ok("GET", "api/tenants/default", token=mine)
    assert usage["tenant"] == "default" and usage["branches"] >= 1


def test_a_tenant_token_reads_nothing_of_another_tenant(console: Console) -> None:
    mine = console.tokens["default"]
    for tenant in ("default", "other"):
        console.cli.json("branch", "create", "probe", "--tenant", tenant)
    for path in TENANT_PATHS:
        own = path.format(t="default")
        assert console.call("GET", f"api/{own}", token=mine).status == 200, own
        other = path.format(t="other")
        message = console.refused(403, "GET", f"api/{other}", token=mine)
        assert "'other'" in message, (other, message)
    console.refused(403, "POST", "api/tenants/other/branches", token=mine,
                    body={"name": "sneak", "ttl": "1h"})
    console.refused(403, "GET", "api/audit?tenant=other", token=mine)
    console.refused(403, "GET", "api/metrics", token=mine)  # every tenant's figures


def test_forks_checkpoints_ttl_restore_and_delete(console: Console) -> None:
    base = "api/tenants/default"
    fork = console.ok("POST", f"{base}/branches", body={"name": "api-fork", "ttl": "1h"})
    assert fork["parent"] == "main" and fork["expires_at"] is not None
    console.refused(409, "POST", f"{base}/branches", body={"name": "api-fork", "ttl": "1h"})
    assert "'name' is required" in console.refused(400, "POST", f"{base}/branches",
                                                   body={"ttl": "1h"})
    console.refused(400, "POST", f"{base}/branches", body={"name": "x", "ttl": "soon"})
    assert console.call("POST", f"{base}/branches", raw=b"{not json").status == 400

    mark = console.ok("POST", f"{base}/checkpoints",
                      body={"branch": "api-fork", "name": "api-mark"})
    assert mark["branch"] == "api-fork"
    child = console.ok("POST", f"{base}/branches",
                       body={"name": "api-child", "parent": "api-fork", "ttl": "30m",
                             "at_checkpoint": "api-mark"})
    assert child["parent"] == "api-fork"
    tree = console.ok("GET", f"{base}/branches")
    by_name = {b["name"]: b for b in tree["branches"]}
    assert by_name["api-fork"]["children"] == ["api-child"]
    assert [c["name"] for c in by_name["api-fork"]["checkpoints"]] == ["api-mark"]
    assert by_name["api-fork"]["compute"] is None  # none started on this machine
    assert "api-mark" in {c["name"] for c in console.ok("GET", f"{base}/checkpoints")
                          ["checkpoints"]}

    later = console.ok("PATCH", f"{base}/branches/api-fork", body={"ttl": "5h"})
    assert later["expires_at_us"] > fork["expires_at_us"] + 3 * 3600 * 10**6
    console.refused(400, "PATCH", f"{base}/branches/api-fork", body={"ttl": "-1h"})
    console.refused(404, "GET", f"{base}/branches/nowhere")

    restored = console.ok("POST", f"{base}/branches/api-fork/restore",
                          body={"checkpoint": "api-mark"})
    assert restored["name"] == "api-fork" and restored["compute_restarted"] is False
    assert restored["preserved_as"]  # it has a child: its state is kept
    console.refused(400, "POST", f"{base}/branches/api-fork/restore",
                    body={"checkpoint": "api-mark", "lsn": 1})

    plan = console.ok("GET", f"{base}/branches/api-fork/delete-plan?cascade=true")
    assert set(plan["deleted"]) >= {"api-fork", "api-child"}
    assert console.ok("GET", f"{base}/branches/api-fork")["name"] == "api-fork"  # a dry run
    console.refused(409, "DELETE", f"{base}/branches/api-fork")  # it has children
    console.refused(409, "DELETE", f"{base}/branches/main?force=true")
    done = console.ok("DELETE", f"{base}/branches/api-fork?cascade=true")
    assert set(done["deleted"]) == set(plan["deleted"]) and "api-mark" in done["checkpoints"]
    console.refused(404, "DELETE", f"{base}/checkpoints/api-mark")


def test_a_read_only_token_changes_nothing(console: Console) -> None:
    reader = console.cli.json("token", "create", "--tenant", "default", "--scope", "tenant",
                              "--read-only")["token"]
    assert console.ok("GET", "api/tenants/default/branches", token=reader)["branches"]
    message = console.refused(403, "POST", "api/tenants/default/branches", token=reader,
                              body={"name": "nope", "ttl": "1h"})
    assert "read-only" in message
    console.cli.json("branch", "create", "read-probe", "--tenant", "default", "--ttl", "1h")
    stored = console.ok("GET", "api/tenants/default/storage", token=reader)  # sizes: reads
    (row,) = [r for r in stored["branches"] if r["name"] == "read-probe"]
    assert row["delete"] is None and "read-only" in row["delete_refused"]
    console.ok("GET", "api/tenants/default/storage/history", token=reader)
    console.cli.json("checkpoint", "create", "read-probe", "read-mark", "--tenant", "default")
    assert "read-only" in console.refused(
        403, "GET", "api/tenants/default/checkpoints/read-mark/delete-plan", token=reader)


def test_checkpoints_are_deleted_by_name_after_a_dry_run(console: Console) -> None:
    base = "api/tenants/other"
    token = console.tokens["other"]
    console.ok("POST", f"{base}/checkpoints", token, {"branch": "main", "name": "gone"})
    plan = console.ok("GET", f"{base}/checkpoints/gone/delete-plan", token)
    assert plan == console.cli.json("checkpoint", "delete", "gone", "--dry-run",
                                    "--tenant", "other")
    assert plan["dry_run"] is True and plan["deleted"] is None
    assert plan["reclaim_bytes"] == plan["freed_bytes"] + plan["gc_bytes"]
    assert "gone" in {c["name"] for c in console.ok("GET", f"{base}/checkpoints", token)
                      ["checkpoints"]}
    done = console.ok("DELETE", f"{base}/checkpoints/gone", token)
    assert done == {**plan, "deleted": "gone", "dry_run": False}
    assert console.ok("GET", f"{base}/checkpoints", token) == {"checkpoints": []}
    assert "no checkpoint 'gone'" in console.refused(
        404, "GET", f"{base}/checkpoints/gone/delete-plan", token)


def test_computes_and_storage(console: Console) -> None:
    token = console.tokens["other"]
    console.ok("POST", "api/tenants/other/branches", token, {"name": "sized", "ttl": "1h"})
    console.ok("POST", "api/tenants/other/checkpoints", token,
               {"branch": "sized", "name": "sized-mark"})
    assert console.ok("GET", "api/tenants/other/computes", token) == \
        {"tenant": "other", "computes": []}
    stored = console.ok("GET", "api/tenants/other/storage", token)
    rows = {row["name"]: row for row in stored["branches"]}
    assert rows["main"]["delete"] is None  # main goes only with its tenant
    assert rows["sized"]["delete"] == {"deleted": ["sized"], "checkpoints": ["sized-mark"],
                                       "freed_bytes": rows["sized"]["owned_bytes"]}
    assert rows["sized"]["delete_refused"] is None
    assert rows["sized"]["checkpoints"] == ["sized-mark"]
    assert stored["usage"]["branches"] == len(rows)
    # per checkpoint: the same figures as `strata checkpoint list`
    listed = console.cli.json("checkpoint", "list", "--tenant", "other")["checkpoints"]
    assert stored["checkpoints"] == listed
    assert console.ok("GET", "api/tenants/other/checkpoints", token)["checkpoints"] == listed
    (mark,) = [c for c in listed if c["name"] == "sized-mark"]
    assert {"held_bytes", "reclaim_bytes"} <= set(mark)


def test_storage_over_time_is_the_page_servers_history(console: Console) -> None:
    token = console.tokens["other"]
    console.ok("POST", "api/tenants/other/branches", token, {"name": "grown", "ttl": "1h"})
    console.cli.json("gc", "--tenant", "other")  # the page server samples after each GC
    history = console.ok("GET", "api/tenants/other/storage/history", token)
    assert history == console.cli.json("tenant", "storage", "other")
    assert history["tenant"] == "other" and history["period_s"] > 0
    last = history["samples"][-1]
    assert "grown" in {b["name"] for b in last["branches"]}
    assert {"owned_bytes", "history_bytes", "logical_size"} <= set(last["branches"][0])
    recent = console.ok("GET", "api/tenants/other/storage/history?since=1h", token)
    assert recent["samples"][-1] == last
    console.refused(400, "GET", "api/tenants/other/storage/history?since=soon", token)


def test_a_token_limited_to_a_branch_sees_and_changes_only_it(console: Console) -> None:
    """A token limited to branches is a tenant token narrowed: the tree, storage and
    computes show only its branches; what names another branch is refused with the page
    server's reason; tenant-wide listings (audit) are refused."""
    console.cli.json("branch", "create", "scoped", "--tenant", "default", "--ttl", "1h")
    limited = console.cli.json("token", "create", "--tenant", "default", "--scope", "tenant",
                               "--branch", "scoped")["token"]
    who = console.ok("GET", "api/whoami", token=limited)
    assert who["branches"] == ["scoped"] and who["tenant"] == "default"
    base = "api/tenants/default"
    tree = console.ok("GET", f"{base}/branches", token=limited)
    assert [b["name"] for b in tree["branches"]] == ["scoped"]
    mark = console.ok("POST", f"{base}/checkpoints", limited,
                      {"branch": "scoped", "name": "scoped-mark"})
    assert mark["branch"] == "scoped"
    assert [c["name"] for c in console.ok("GET", f"{base}/checkpoints", limited)
            ["checkpoints"]] == ["scoped-mark"]
    stored = console.ok("GET", f"{base}/storage", token=limited)
    assert [row["name"] for row in stored["branches"]] == ["scoped"]
    assert stored["branches"][0]["delete"]["deleted"] == ["scoped"]
    history = console.ok("GET", f"{base}/storage/history", token=limited)
    assert all({b["name"] for b in s["branches"]} <= {"scoped"} for s in history["samples"])
    assert console.ok("GET", f"{base}/computes", token=limited)["computes"] == []

    for method, path, body in (
            ("POST", f"{base}/branches", {"name": "sneak", "parent": "scoped", "ttl": "1h"}),
            ("POST", f"{base}/checkpoints", {"branch": "main", "name": "sneak"}),
            ("PATCH", f"{base}/branches/main", {"ttl": "1h"}),
            ("POST", f"{base}/branches/main/restore", {}),
            ("DELETE", f"{base}/branches/main", None),
            ("GET", f"{base}/branches/main", None)):
        message = console.refused(403, method, path, limited, body)
        assert "the token is limited to branch scoped" in message, (method, path, message)
    assert "limited to branches" in console.refused(403, "GET", "api/audit", limited)
    console.refused(403, "GET", "api/tenants/other/branches", limited)


def test_the_page_servers_figures(console: Console) -> None:
    figures = console.ok("GET", "api/metrics")["figures"]
    assert "strata_ingest_bytes_total" in figures["totals"]
    assert set(figures["layers"]) >= {"L0", "L1", "image"}
    assert figures["rpc_seconds"]["ManagementService/ListTenants"]["count"] >= 1


def test_the_audit_log_filtered(console: Console) -> None:
    token = console.tokens["other"]
    console.ok("POST", "api/tenants/other/branches", token, {"name": "audited", "ttl": "1h"})
    since = console.ok("GET", "api/audit?since=1h&action=branch.create&target=audited")
    assert [(e["action"], e["tenant"]) for e in since["entries"]] == \
        [("branch.create", "other")]
    own = console.ok("GET", "api/audit", token=token)["entries"]
    assert own and {entry["tenant"] for entry in own} == {"other"}
    console.refused(400, "GET", "api/audit?since=soon")


def test_up_without_the_console_starts_none() -> None:
    with strata_home() as home:
        cli = Strata(home, free_port())
        try:
            assert cli.up("--no-console")["console"] is None
            status = cli.status()
            assert status["console_url"] is None
            assert [c["alive"] for c in status["components"] if c["component"] == "console"] \
                == [False]
            assert "console" not in cli.run("up").stdout  # remembered
        finally:
            cli.stop_everything()
