"""The console's page end to end in headless Chromium (Debian's ``chromium``, driven by
Playwright; ``./dev test`` installs it): log in, the tree with a fork and a checkpoint, a
fork made from the page, a tenant token that sees no other tenant, and, where computes
can run, a compute going from running to suspended. Each main view is saved as a
screenshot under the test's temporary directory."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.cli.conftest import Strata, free_port, strata_home
from tests.compute.conftest import _compute_unavailable
from tests.console.conftest import Console, start_console

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
WAIT_MS = 20_000
VIEWS = ("tree", "computes", "storage", "server", "audit")

if not CHROMIUM.exists():
    pytest.skip("Chromium is not installed (apt-get install chromium; ./dev test does)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def console() -> Iterator[Console]:
    """Tenants ``default`` (with a fork ``try-1`` holding checkpoint ``before``) and
    ``other``."""
    with strata_home() as home:
        cli = Strata(home, free_port())
        try:
            started = start_console(cli, ("default", False), ("other", False))
            cli.json("gc")  # the page server samples storage after each GC
            cli.json("branch", "create", "try-1", "--ttl", "2h")
            cli.json("checkpoint", "create", "try-1", "before")
            cli.json("checkpoint", "create", "main", "spare")
            cli.json("gc")
            yield started
        finally:
            cli.stop_everything()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium for the module, with a throw-away profile."""
    with tempfile.TemporaryDirectory(prefix="strata-chromium-") as profile, \
            sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1280, "height": 800})
        context.set_default_timeout(WAIT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def dialogs() -> list[str]:
    """The questions the page asked, in order."""
    return []


@pytest.fixture
def page(browser: Any, dialogs: list[str]) -> Iterator[Any]:
    """A fresh tab that accepts every confirmation (noting its question in ``dialogs``)
    and fails on script errors."""
    tab = browser.new_page()
    errors: list[str] = []

    def answer(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("dialog", answer)
    try:
        yield tab
    finally:
        tab.close()
    assert not errors, errors


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("console-screenshots")


def log_in(page: Any, console: Console, token: str) -> None:
    page.goto(console.url)
    page.fill("#token", token)
    page.click("#login-form button")
    page.wait_for_selector("#tree-svg")


def test_the_tree_a_fork_from_the_page_and_every_view(page: Any, console: Console,
                                                      screenshots: Path) -> None:
    log_in(page, console, console.admin)
    assert page.input_value("#tenant") == "default"
    for name in ("main", "try-1"):
        page.wait_for_selector(f"g.branch[data-branch={name}]")
    page.wait_for_selector("g.branch[data-branch=try-1] [data-checkpoint=before]",
                           state="attached")
    console.cli.json("branch", "create", "leased", "--lease", "10m")
    page.wait_for_selector("g.branch[data-branch=leased]:has-text('lease ends in 10 min')")

    page.click("g.branch[data-branch=try-1]")
    assert page.inner_text("#panel-name") == "try-1"
    page.fill("#fork-name", "from-page")
    page.fill("#fork-ttl", "45m")
    page.click("#fork-form button")
    page.wait_for_selector("g.branch[data-branch=from-page]")
    made = console.cli.json("branch", "show", "from-page")
    assert made["parent"] == "try-1" and made["expires_at"] is not None
    assert "forked from-page" in page.inner_text("#action-result")
    page.screenshot(path=str(screenshots / "tree.png"), full_page=True)

    page.click("nav a[data-view=storage]")
    page.wait_for_selector("#storage-table tr[data-branch=from-page]")
    page.wait_for_selector("#checkpoint-table tr[data-checkpoint=before]")
    page.wait_for_selector("#storage-history polyline[data-series='tenant stored']",
                           state="attached")  # the page server's samples, not the page's
    assert int(page.inner_text("#storage-history-note").split()[0]) >= 2
    page.screenshot(path=str(screenshots / "storage.png"), full_page=True)
    page.click("nav a[data-view=computes]")
    page.wait_for_selector("#computes-view:not([hidden])")
    page.screenshot(path=str(screenshots / "computes.png"), full_page=True)
    page.click("nav a[data-view=server]")
    page.wait_for_selector("#server-charts polyline", state="attached")
    page.screenshot(path=str(screenshots / "server.png"), full_page=True)
    page.click("nav a[data-view=audit]")
    page.wait_for_selector("#audit-table td:text-is('branch.create')")
    page.screenshot(path=str(screenshots / "audit.png"), full_page=True)
    assert {path.stem for path in screenshots.iterdir()} >= set(VIEWS)


def test_ttl_restore_and_delete_from_the_page_each_after_a_confirmation(
        page: Any, console: Console, dialogs: list[str]) -> None:
    cli = console.cli
    cli.json("branch", "create", "acted", "--ttl", "1h")
    cli.json("checkpoint", "create", "acted", "acted-mark")
    before = cli.json("branch", "show", "acted")
    log_in(page, console, console.admin)
    page.click("g.branch[data-branch=acted] text.name")

    page.fill("#ttl-value", "5h")
    page.click("#ttl-form button")
    page.wait_for_selector("#action-result:text('acted expires')")
    assert dialogs[-1] == "Set the TTL of acted to 5h from now?"
    assert cli.json("branch", "show", "acted")["expires_at_us"] > \
        before["expires_at_us"] + 3 * 3600 * 10**6

    page.select_option("#restore-to", "acted-mark")
    page.click("#restore-form button")
    page.wait_for_selector("#action-result:text('acted now at LSN')")
    assert dialogs[-1].startswith("Restore acted to checkpoint acted-mark?")

    page.click("#delete-branch")
    page.wait_for_selector("g.branch[data-branch=acted]", state="detached")
    assert dialogs[-1].startswith("Delete for good: branches acted; checkpoints acted-mark; "
                                  "frees ")
    assert cli.run("branch", "show", "acted", expect=None).code != 0

    page.click("nav a[data-view=audit]")
    page.wait_for_selector("#audit-table td:text-is('branch.delete')")  # unfiltered
    page.fill("#audit-action", "branch.restore")
    page.click("#audit-form button")
    page.wait_for_selector("#audit-table td:text-is('branch.delete')", state="detached")
    actions = page.eval_on_selector_all("#audit-table tbody tr td:nth-child(2)",
                                        "all => all.map(c => c.textContent)")
    assert actions and set(actions) == {"branch.restore"}  # filtered by action


def test_a_checkpoint_is_deleted_from_the_storage_view_after_its_dry_run(
        page: Any, console: Console, dialogs: list[str]) -> None:
    listed = {c["name"]: c for c in console.cli.json("checkpoint", "list")["checkpoints"]}
    log_in(page, console, console.admin)
    page.click("nav a[data-view=storage]")
    row = "#checkpoint-table tr[data-checkpoint=spare]"
    page.wait_for_selector(row)
    cells = page.eval_on_selector_all(f"{row} td", "all => all.map(c => c.textContent)")
    assert cells[:3] == ["spare", "main", str(listed["spare"]["lsn"])]
    page.click(f"{row} button")
    page.wait_for_selector(row, state="detached")
    assert dialogs and dialogs[-1].startswith("Delete checkpoint spare? Frees ")
    assert "deleted checkpoint spare" in page.inner_text("#storage-result")
    assert "spare" not in {c["name"] for c in console.cli.json("checkpoint", "list")
                           ["checkpoints"]}


def test_a_token_limited_to_a_branch_sees_only_it_and_is_told_why_not(
        page: Any, console: Console, screenshots: Path) -> None:
    console.cli.json("branch", "create", "narrow", "--ttl", "2h")
    token = console.cli.json("token", "create", "--tenant", "default", "--scope", "tenant",
                             "--branch", "narrow")["token"]
    log_in(page, console, token)
    assert "limited to narrow" in page.inner_text("#identity")
    page.wait_for_selector("g.branch[data-branch=narrow]")
    shown = page.eval_on_selector_all("g.branch", "all => all.map(g => g.dataset.branch)")
    assert shown == ["narrow"]  # main and the other forks are not its to see
    page.click("g.branch[data-branch=narrow]")
    page.fill("#checkpoint-name", "narrow-mark")
    page.click("#checkpoint-form button")
    page.wait_for_selector("#action-result:text('checkpoint narrow-mark')")
    page.fill("#fork-name", "wider")
    page.click("#fork-form button")
    page.wait_for_selector("#action-result:text('limited to branch narrow')")
    assert "not" in page.inner_text("#action-result")
    page.screenshot(path=str(screenshots / "tree-limited-token.png"), full_page=True)
    assert console.cli.run("branch", "show", "wider", expect=None).code != 0


def test_a_tenant_token_sees_only_its_tenant(page: Any, console: Console) -> None:
    log_in(page, console, console.tokens["other"])
    options = page.eval_on_selector_all("#tenant option", "all => all.map(o => o.value)")
    assert options == ["other"]
    page.wait_for_selector("g.branch[data-branch=main]")
    assert page.query_selector("g.branch[data-branch=try-1]") is None
    status = page.evaluate(
        """async () => (await fetch('/api/tenants/default/branches',
            {headers: {Authorization: 'Bearer ' + sessionStorage.getItem('strata-token')}}))
            .status""")
    assert status == 403
    page.click("nav a[data-view=server]")
    page.wait_for_selector("#server-address:text('admin token')")
    page.click("#logout")
    page.wait_for_selector("#login-view:not([hidden])")
    assert page.evaluate("sessionStorage.getItem('strata-token')") is None


def test_a_compute_goes_from_running_to_suspended(page: Any, console: Console,
                                                  screenshots: Path) -> None:
    reason = _compute_unavailable()
    if reason:
        pytest.skip(reason)
    cli = console.cli
    cli.json("tenant", "create", "pg")  # initdb: a cluster PostgreSQL can start on
    cli.json("branch", "create", "quick", "--tenant", "pg", "--suspend-timeout", "6s")
    uri = cli.json("connect", "quick", "--tenant", "pg")["uri"]
    log_in(page, console, console.admin)
    page.select_option("#tenant", "pg")
    page.click("nav a[data-view=computes]")
    row = "#computes-table tr[data-branch=quick]"
    try:
        with psycopg.connect(uri, connect_timeout=120) as connection:  # wakes the compute
            connection.execute("SELECT count(*) FROM pg_class")
            page.wait_for_selector(f"{row} td.state-running")
            page.wait_for_selector(f"{row} td:nth-child(3):text-matches('^[1-9]')")  # clients
            page.wait_for_selector(f"{row} td:nth-child(6):text-matches('% of')")  # cache hits
            (running,) = console.ok("GET", "api/tenants/pg/computes")["computes"]
            assert set(running["start_timings"]) >= {"mount_s"}  # the last cold start
            assert running["cache_lookups"] > 0 and 0 <= running["cache_hit_ratio"] <= 1
            phases = page.inner_text(f"{row} td:nth-child(7)")
            assert phases.startswith("mount ") and " s" in phases, phases
            page.screenshot(path=str(screenshots / "computes-running.png"), full_page=True)
        page.wait_for_selector(f"{row} td:nth-child(4):text-matches('^[0-9]+ s$')")  # idle
        page.wait_for_selector(f"{row} td.state-suspended")
    finally:
        cli.run("compute", "stop", "quick", "--tenant", "pg", expect=None)
