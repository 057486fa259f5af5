"""The console tier: `strata up` in a temporary home starts the page server and the web
console (`strata console`) on free ports; tests call its API over HTTP, or drive its page
in headless Chromium, with real tokens of real tenants."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.cli.conftest import Strata, free_port, strata_home

TIMEOUT_S = 60


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Console:
    """A running `strata up` with its console, tenants ``default`` and ``other`` and a
    token for each."""

    cli: Strata
    url: str  # the console's, ending in /
    admin: str
    tokens: dict[str, str]  # by tenant

    def call(self, method: str, path: str, token: str | None = None,
             body: Any = None, raw: bytes | None = None) -> Answer:
        """``method path`` of the console with ``token`` (default the admin token; "" for
        none) and a JSON ``body`` (or ``raw`` bytes)."""
        token = self.admin if token is None else token
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.url + path.lstrip("/"), data=data, method=method)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                text = response.read()
                status, headers = response.status, dict(response.headers)
        except urllib.error.HTTPError as exc:
            text, status, headers = exc.read(), exc.code, dict(exc.headers)
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = text.decode()
        return Answer(status, parsed, {key.lower(): value for key, value in headers.items()})

    def ok(self, method: str, path: str, token: str | None = None, body: Any = None) -> Any:
        """The body of a call that must succeed."""
        answer = self.call(method, path, token, body)
        assert answer.status == 200, answer
        return answer.body

    def refused(self, status: int, method: str, path: str, token: str | None = None,
                body: Any = None) -> str:
        """The message of a call that must be refused with ``status``."""
        answer = self.call(method, path, token, body)
        assert answer.status == status, answer
        assert set(answer.body) == {"error", "error_description"}, answer.body
        message: str = answer.body["error_description"]
        return message


def start_console(cli: Strata, *tenants: tuple[str, bool]) -> Console:
    """`strata up` (console on a free port), the ``tenants`` (name, with initdb) and a
    tenant token for each."""
    cli.up()
    tokens = {}
    for name, initdb in tenants:
        cli.json("tenant", "create", name, *(() if initdb else ("--empty",)))
        tokens[name] = cli.json("token", "create", "--tenant", name, "--scope", "tenant",
                                "--ttl", "1h")["token"]
    status = cli.status()
    assert status["console_url"], status
    admin = (cli.home / "pageserver" / "auth" / "admin.token").read_text().strip()
    return Console(cli, status["console_url"], admin, tokens)


@pytest.fixture(scope="module")
def console() -> Iterator[Console]:
    with strata_home() as home:
        cli = Strata(home, free_port())
        try:
            yield start_console(cli, ("default", False), ("other", False))
        finally:
            cli.stop_everything()
