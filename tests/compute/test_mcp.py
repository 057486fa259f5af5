"""`strata mcp` with the MCP SDK's own client, over stdio (a `strata mcp` subprocess) and
streamable HTTP (`strata mcp --http` on a free loopback port), against a real page server,
the proxy and real computes: an agent's session on forks, protected branches, read-only
tokens, result caps, bad arguments, and HTTP requests without a good token."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import psycopg
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from strata.local import computes
from strata.local.home import Home
from tests.cli.conftest import REPO, Strata, free_port, strata_home
from tests.compute.load import wait_for

TENANT = "agents"
MAX_RESULT_BYTES = 4096  # the servers' byte cap, small enough to reach with a few rows
SERVER_OPTIONS = ("--tenant", TENANT, "--max-result-bytes", str(MAX_RESULT_BYTES))
TRANSPORTS = ("stdio", "http")


@dataclass
class Agents:
    """A Strata home serving tenant ``agents``, its HTTP MCP server and tokens for it."""

    cli: Strata
    url: str  # of the HTTP MCP server
    tokens: dict[str, dict[str, Any]]  # by role: writer, reader, prod (names branch prod)

    def token(self, role: str) -> str:
        return str(self.tokens[role]["token"])

    @asynccontextmanager
    async def client(self, transport: str, role: str = "writer",
                     token: str | None = None) -> AsyncIterator[Client]:
        """An MCP client session over ``transport`` with ``token``, by default the one of
        ``role``."""
        token = token or self.token(role)
        if transport == "stdio":
            params = StdioServerParameters(
                command=sys.executable, args=["-m", "strata.cli", "mcp", *SERVER_OPTIONS],
                env={**self.cli.environ(), "STRATA_TOKEN": token}, cwd=str(REPO))
            async with Client(params, read_timeout_seconds=180) as client:
                yield client
            return
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(180)) as http, \
                Client(streamable_http_client(self.url, http_client=http),
                       read_timeout_seconds=180) as client:
            yield client


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def agents(compute_host: None) -> Iterator[Agents]:
    """`strata up` (page server and proxy), tenant ``agents`` with a protected branch
    ``prod``, three tenant tokens and `strata mcp --http` on a free port."""
    with strata_home() as home:
        cli = Strata(home, free_port())
        server: subprocess.Popen[bytes] | None = None
        try:
            cli.up()
            cli.json("tenant", "create", TENANT)
            cli.json("branch", "create", "prod", "--protected", "--tenant", TENANT)
            scoped = ("token", "create", "--scope", "tenant", "--tenant", TENANT)
            tokens = {"writer": cli.json(*scoped), "reader": cli.json(*scoped, "--read-only"),
                      "prod": cli.json(*scoped, "--branch", "prod")}
            port = free_port()
            log = (home / "logs" / "mcp-http.log").open("wb")
            server = subprocess.Popen(
                [sys.executable, "-m", "strata.cli", "mcp", "--http", "--listen",
                 f"127.0.0.1:{port}", *SERVER_OPTIONS], env=cli.environ(), cwd=REPO,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            wait_for(lambda: _listening(port) or server.poll() is not None, 60,
                     "strata mcp --http to listen")
            assert server.poll() is None, (home / "logs" / "mcp-http.log").read_text()
            yield Agents(cli, f"http://127.0.0.1:{port}/mcp", tokens)
        finally:
            try:
                if server is not None:
                    server.terminate()
                    try:
                        server.wait(10)
                    except subprocess.TimeoutExpired:
                        server.kill()
                        server.wait()
                cli.stop_everything()
            finally:
                for node in computes.listing(Home(home), TENANT):
                    with contextlib.suppress(Exception):
                        node.kill()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    anyio.run(scenario)


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """The structured result of a tool call that must succeed."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def refused(client: Client, tool: str, **arguments: Any) -> str:
    """The message of a tool call that must fail as a tool error."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    text = result.content[0].text  # type: ignore[union-attr]
    assert isinstance(text, str)
    return text


async def count(client: Client, branch: str, table: str) -> int:
    rows = (await call(client, "run_sql", branch=branch,
                       statement=f"SELECT count(*) FROM {table}"))["rows"]
    return int(rows[0][0])


MIGRATION = ("CREATE TABLE invoices(id int PRIMARY KEY, amount numeric);"
             "INSERT INTO invoices SELECT g, g * 1.5 FROM generate_series(1, 10) g")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_session_forks_migrates_checkpoints_restores_and_deletes(
        agents: Agents, transport: str) -> None:
    fork = f"agent-{transport}"
    first, second = f"{fork}-1", f"{fork}-2"

    async def scenario() -> None:
        async with agents.client(transport) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            for tool in tools.values():
                assert tool.description and "\n" not in tool.description.strip()
                assert tool.input_schema["type"] == "object"
            assert "ttl" in tools["create_branch"].input_schema["required"]

            made = await call(client, "create_branch", name=fork, ttl="1h", count=2)
            assert [b["name"] for b in made["branches"]] == [first, second]
            assert all(b["expires_at"] for b in made["branches"]) and made["ttl_s"] == 3600

            migrated = await call(client, "run_sql", branch=first, statement=MIGRATION,
                                  write=True)
            assert migrated["status"] == "INSERT 0 10" and migrated["read_only"] is False
            totals = await call(client, "run_sql", branch=first,
                                statement="SELECT count(*), sum(amount) FROM invoices")
            assert totals["rows"] == [[10, "82.5"]] and totals["read_only"] is True

            await call(client, "create_checkpoint", branch=first, name=f"{fork}-before")
            await call(client, "run_sql", branch=first, write=True,
                       statement="DELETE FROM invoices WHERE id > 3")
            assert await count(client, first, "invoices") == 3
            restored = await call(client, "restore_branch", name=first,
                                  checkpoint=f"{fork}-before")
            assert restored["name"] == first
            assert await count(client, first, "invoices") == 10
            listed = await call(client, "list_checkpoints", branch=first)
            assert [c["name"] for c in listed["checkpoints"]] == [f"{fork}-before"]
            shown = {c["name"]: c for c in agents.cli.json(
                "checkpoint", "list", "--tenant", TENANT)["checkpoints"]}
            sized = listed["checkpoints"][0]
            assert {  # what `strata checkpoint list` shows
                key: sized[key] for key in ("held_bytes", "reclaim_bytes")} == {
                key: shown[f"{fork}-before"][key] for key in ("held_bytes", "reclaim_bytes")}

            diff = await call(client, "schema_diff", old="main", new=first)
            assert any(line.startswith("+CREATE TABLE public.invoices")
                       for line in diff["diff"])
            status = await call(client, "compute_status", branch=first)
            assert [(c["branch"], c["status"]) for c in status["computes"]] == [
                (first, "running")]
            connection = await call(client, "connection_string", branch=first)
            assert connection["read_only"] is False
            with psycopg.connect(connection["uri"]) as conn:
                assert conn.execute("SELECT count(*) FROM invoices").fetchone() == (10,)

            for name in (first, second):
                assert (await call(client, "delete_branch", name=name))["deleted"] == [name]
            names = [b["name"] for b in (await call(client, "list_branches"))["branches"]]
            assert first not in names and second not in names

    run(scenario)
    token_id = agents.tokens["writer"]["id"]
    entries = agents.cli.json("audit", "--tenant", TENANT)["entries"]
    mine = [e for e in entries
            if e["token_id"] == token_id and e["target"] in (fork, first, second)]
    actions = {e["action"] for e in mine}
    # The MCP calls, and the page server's record of the changes they made, same token.
    assert {"mcp.create_branch", "mcp.run_sql", "mcp.restore_branch", "mcp.delete_branch",
            "branch.create", "branch.restore", "branch.delete"} <= actions
    peers = {e["peer"] for e in mine if e["action"].startswith("mcp.")}
    if transport == "stdio":
        assert peers == {"stdio"}
    else:
        assert peers and all(peer.startswith("127.0.0.1:") for peer in peers)


def test_a_protected_branch_is_changed_only_with_a_token_that_names_it(
        agents: Agents) -> None:
    async def scenario() -> None:
        async with agents.client("stdio") as client:
            for branch in ("prod", "main"):
                message = await refused(client, "run_sql", branch=branch, write=True,
                                        statement="CREATE TABLE intruder(x int)")
                assert f"branch {branch!r} is protected" in message
            for tool, verb in (("reset_branch", "reset"), ("delete_branch", "delete")):
                message = await refused(client, tool, name="prod")
                assert f"does not {verb} it" in message
            message = await refused(client, "restore_branch", name="prod", lsn=1)
            assert "does not restore it" in message
            assert await count(client, "prod", "pg_class") > 0  # reading is fine
            connection = await call(client, "connection_string", branch="prod")
            assert connection["read_only"] is True and connection["user"] == "strata_readonly"
            assert connection["read_only_because"] == "branch 'prod' is protected"
            assert (await call(client, "show_branch", name="prod"))["may_change"] is False

        async with agents.client("http", role="prod") as client:
            done = await call(client, "run_sql", branch="prod", write=True,
                              statement="CREATE TABLE IF NOT EXISTS settings(k text)")
            assert done["status"] == "CREATE TABLE"
            assert (await call(client, "connection_string", branch="prod"))["read_only"] is False
            message = await refused(client, "run_sql", branch="main", statement="SELECT 1")
            assert "limited to branch prod" in message  # the page server's own refusal

    run(scenario)
    names = [b["name"] for b in agents.cli.json("branch", "list", "--tenant", TENANT)["branches"]]
    assert "prod" in names


def test_a_read_only_token_writes_nothing(agents: Agents) -> None:
    agents.cli.json("branch", "create", "shared", "--tenant", TENANT)

    async def scenario() -> None:
        async with agents.client("http", role="reader") as client:
            message = await refused(client, "run_sql", branch="shared", write=True,
                                    statement="CREATE TABLE t(x int)")
            assert "the token is read-only" in message
            message = await refused(client, "create_branch", name="mine", ttl="1h",
                                    parent="shared")
            assert "read-only" in message  # the page server refuses it
            message = await refused(client, "run_sql", branch="shared",
                                    statement="CREATE TABLE t(x int)")
            assert "read-only transaction" in message
            # Leaving the read-only transaction does not help: the role writes nothing.
            message = await refused(client, "run_sql", branch="shared",
                                    statement="COMMIT; BEGIN READ WRITE; CREATE TABLE t(x int)")
            assert "permission denied" in message
            found = await call(client, "run_sql", branch="shared",
                               statement="SELECT to_regclass('t')::text")
            assert found["rows"] == [[None]]

    run(scenario)


def test_results_are_capped_in_rows_bytes_and_time(agents: Agents) -> None:
    agents.cli.json("branch", "create", "capped", "--tenant", TENANT)

    async def scenario() -> None:
        async with agents.client("http") as client:
            rows = await call(client, "run_sql", branch="capped", max_rows=7,
                              statement="SELECT g FROM generate_series(1, 1000000) g")
            assert rows["rows"] == [[g] for g in range(1, 8)]
            assert rows["truncated_by"] == "max_rows"
            wide = await call(client, "run_sql", branch="capped",
                              statement="SELECT repeat('x', 500) FROM generate_series(1, 100)")
            assert wide["truncated_by"] == "max_bytes"
            assert 0 < wide["row_count"] <= MAX_RESULT_BYTES // 500
            written = await call(client, "run_sql", branch="capped", write=True, max_rows=2,
                                 statement="CREATE TABLE t AS SELECT generate_series(1, 50) x;"
                                           "DELETE FROM t WHERE x > 10 RETURNING x")
            assert written["truncated_by"] == "max_rows"
            assert await count(client, "capped", "t") == 10  # the write ran to the end
            message = await refused(client, "run_sql", branch="capped", max_rows=5000,
                                    statement="SELECT 1")
            assert "max_rows" in message  # above the server's cap
            message = await refused(client, "run_sql", branch="capped", timeout_s=1,
                                    statement="SELECT pg_sleep(30)")
            assert "statement timeout" in message
            # A script that lifts the timeout is cancelled by the watchdog all the same.
            message = await refused(client, "run_sql", branch="capped", timeout_s=1,
                                    statement="SET statement_timeout = 0; SELECT pg_sleep(30)")
            assert "canceling statement due to user request" in message

    run(scenario)


def test_bad_arguments_are_clear_tool_errors_and_the_server_keeps_serving(
        agents: Agents) -> None:
    async def scenario() -> None:
        async with agents.client("stdio") as client:
            assert "ttl" in await refused(client, "create_branch", name="x")
            assert "duration" in (await refused(client, "create_branch", name="x",
                                                ttl="soon")).lower()
            assert "count" in await refused(client, "create_branch", name="x", ttl="1h",
                                            count=0)
            assert "exactly one of checkpoint, time and lsn" in await refused(
                client, "restore_branch", name="x", checkpoint="c", lsn=5)
            assert "no branch 'nope'" in await refused(client, "show_branch", name="nope")
            assert "syntax error" in await refused(client, "run_sql", branch="prod",
                                                   statement="SELEC 1")
            names = [b["name"] for b in (await call(client, "list_branches"))["branches"]]
            assert "main" in names and "x" not in names

    run(scenario)


def test_forks_keep_within_the_ttl_quota_and_are_made_all_or_none(agents: Agents) -> None:
    agents.cli.json("branch", "create", "batch-2", "--tenant", TENANT)

    async def scenario() -> None:
        async with agents.client("http") as client:
            message = await refused(client, "create_branch", name="batch", ttl="1h",
                                    count=3)
            assert "batch-2" in message
            names = [b["name"] for b in (await call(client, "list_branches"))["branches"]]
            assert "batch-1" not in names  # made, then taken back with the batch
            agents.cli.json("tenant", "set", TENANT, "--max-ttl", "2h")
            try:
                made = await call(client, "create_branch", name="long", ttl="7d")
            finally:
                agents.cli.json("tenant", "set", TENANT, "--max-ttl", "0")
            assert made["ttl_s"] == 7200 and made["ttl_capped_by_quota"] is True
            await call(client, "delete_branch", name="long")

    run(scenario)


def _forged(token: str) -> str:
    """``token`` with its claims changed to name branch prod: the signature no longer fits."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["branches"] = ["prod"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


def test_http_requests_without_a_good_token_are_refused(agents: Agents) -> None:
    revoked = agents.cli.json("token", "create", "--scope", "tenant", "--tenant", TENANT)
    agents.cli.json("token", "revoke", revoked["id"])
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    cases = {None: "missing bearer token", "nonsense": "not a Strata token",
             _forged(agents.token("writer")): "signature",
             revoked["token"]: "revoked"}
    for token, reason in cases.items():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        answer = httpx2.post(agents.url, json=body, headers=headers, timeout=30)
        assert answer.status_code == 401, answer.text
        assert reason in answer.json()["error_description"]
        assert answer.headers["www-authenticate"].startswith("Bearer")

    async def scenario() -> None:
        with pytest.raises(Exception):  # noqa: B017  # the SDK's error for a 401
            async with agents.client("http", token=revoked["token"]) as client:
                await client.list_tools()
        async with agents.client("http") as client:  # and the server goes on serving
            assert (await call(client, "list_branches"))["tenant"] == TENANT

    run(scenario)


def test_mcp_calls_never_reach_a_superuser_socket(agents: Agents) -> None:
    """compute_status shows state, never the operator's socket or superuser URI."""
    async def scenario() -> None:
        async with agents.client("stdio") as client:
            await call(client, "run_sql", branch="prod", statement="SELECT 1")
            shown = json.dumps(await call(client, "compute_status"))
            assert "postgres@" not in shown and str(Path(agents.cli.home)) not in shown

    run(scenario)


def test_history_tools_read_the_past_and_say_what_a_fork_changed(agents: Agents) -> None:
    branch = "agent-history"

    async def scenario() -> None:
        async with agents.client("http") as client:
            await call(client, "create_branch", name=branch, ttl="1h")
            await call(client, "run_sql", branch=branch, write=True, statement=(
                "CREATE TABLE stock(id int PRIMARY KEY, qty int);"
                "INSERT INTO stock SELECT g, 1 FROM generate_series(1, 100) g"))
            await call(client, "create_checkpoint", branch=branch, name="stock-before")
            await call(client, "run_sql", branch=branch, write=True, statement=(
                "UPDATE stock SET qty = 0 WHERE id <= 10; DELETE FROM stock WHERE id = 100"))
            past = await call(client, "connect_at", branch=branch, at="stock-before",
                              idle="5m")
            assert past["read_only"] and past["endpoint"] != branch
            with psycopg.connect(past["uri"], autocommit=True) as conn:
                assert conn.execute("SELECT count(*) FROM stock").fetchone() == (100,)
                with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                    conn.execute("DELETE FROM stock")
            listed = (await call(client, "list_branches"))["branches"]
            assert past["endpoint"] not in [b["name"] for b in listed]
            changed = await call(client, "branch_changes", branch=branch, since="stock-before")
            names = {r["name"] for r in changed["relations"] if r["schema"] == "public"}
            assert "stock" in names and changed["compute_checkpointed"]
            diff = await call(client, "data_diff", old=past["endpoint"], new=branch,
                              sample=20)
            assert (diff["inserted"], diff["deleted"], diff["updated"]) == (0, 1, 10)
        async with agents.client("http", role="reader") as reader:
            assert "read-only" in await refused(reader, "connect_at", branch=branch, at="-1s")

    run(scenario)
    for name in (branch,):
        agents.cli.json("branch", "delete", name, "--tenant", TENANT, "--cascade", "--yes")


def test_leased_forks_renewal_and_undo_through_mcp(agents: Agents) -> None:
    """An agent makes leased forks, renews them by the name it made them under, drops a
    table with run_sql and gets it back with undo; undo on a protected branch is refused."""
    async def scenario() -> None:
        async with agents.client("stdio") as client:
            made = await call(client, "create_leased_forks", name="leased", lease="10m",
                              count=2)
            assert [(b["name"], b["lease_s"]) for b in made["branches"]] == [
                ("leased-1", 600), ("leased-2", 600)]
            renewed = await call(client, "renew_leases", names=["leased"])
            assert [b["name"] for b in renewed["branches"]] == ["leased-1", "leased-2"]
            await call(client, "run_sql", branch="leased-1", statement=MIGRATION, write=True)
            await call(client, "run_sql", branch="leased-1", statement="DROP TABLE invoices",
                       write=True)
            with anyio.fail_after(60):
                while not (await call(client, "list_checkpoints",
                                      branch="leased-1"))["checkpoints"]:
                    await anyio.sleep(0.2)
            undone = await call(client, "undo", branch="leased-1")
            assert undone["undid"] == "DROP TABLE invoices"
            assert await count(client, "leased-1", "invoices") == 10
            assert "protected" in await refused(client, "undo", branch="prod")
    run(scenario)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_session_undoes_and_lets_its_forks_expire_back_to_the_base(
        agents: Agents, transport: str) -> None:
    """The issue's agent loop in one session: leased forks, a migration, a schema and a
    data diff, a checkpoint, a DROP undone; then the agent stops renewing, and the forks
    and every file of their timelines (objects, cached layers, computes) are gone."""
    fork = f"loop-{transport}"
    first, second = f"{fork}-1", f"{fork}-2"
    timelines: set[str] = set()

    async def renew_every_two_seconds(client: Client) -> None:
        """What a live agent does: renew its lease well within it, whatever it is busy
        with (an undo restarts a compute, which takes seconds on a loaded machine)."""
        while True:
            await call(client, "renew_leases", names=[fork])
            await anyio.sleep(2)

    async def scenario() -> None:
        async with agents.client(transport) as client, anyio.create_task_group() as tasks:
            made = await call(client, "create_leased_forks", name=fork, lease="20s",
                              count=2)
            assert [b["name"] for b in made["branches"]] == [first, second]
            tasks.start_soon(renew_every_two_seconds, client)
            await call(client, "run_sql", branch=first, statement=MIGRATION, write=True)
            diff = await call(client, "schema_diff", old=second, new=first)
            assert any(line.startswith("+CREATE TABLE public.invoices")
                       for line in diff["diff"])
            await call(client, "run_sql", branch=first, statement="DROP TABLE invoices",
                       write=True)
            with anyio.fail_after(60):
                while not (await call(client, "list_checkpoints",
                                      branch=first))["checkpoints"]:
                    await anyio.sleep(0.2)
            assert (await call(client, "undo", branch=first))["undid"] == \
                "DROP TABLE invoices"
            assert await count(client, first, "invoices") == 10
            await call(client, "create_checkpoint", branch=first, name=f"{fork}-migrated")
            await call(client, "run_sql", branch=first, write=True,
                       statement="UPDATE invoices SET amount = 0 WHERE id <= 2")
            past = await call(client, "connect_at", branch=first, at=f"{fork}-migrated",
                              idle="15s")
            rows = await call(client, "data_diff", old=past["endpoint"], new=first)
            assert (rows["inserted"], rows["deleted"], rows["updated"]) == (0, 0, 2)
            timelines.add((await call(client, "show_branch",
                                      name=past["endpoint"]))["timeline_id"])
            for name in (first, second):
                timelines.add((await call(client, "show_branch", name=name))["timeline_id"])
            tasks.cancel_scope.cancel()  # the agent stops here: no more renewals
    run(scenario)
    home = Path(agents.cli.home)

    def left() -> list[Path]:
        return [p for p in home.rglob("*") if p.is_file()
                and any(timeline in str(p) for timeline in timelines)]
    assert left()
    wait_for(lambda: not {first, second} & {
        b["name"] for b in agents.cli.json("branch", "list", "--tenant", TENANT)["branches"]},
        90, "the reaper to delete the forks whose lease ran out")
    wait_for(lambda: not left(), 60, "every file of the forks' timelines to be gone")
