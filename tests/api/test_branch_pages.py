"""ListBranches a page at a time: by name, from after the token, only what the caller's
token covers, and the client's list_branches fetches every page or stops at a limit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from common.bearer import call_credentials_metadata
from common.client import StrataClient
from pageserver.api import auth
from proto import strata_pb2 as pb
from tests.api.conftest import Live

TIMEOUT = 30
NAMES = ["a1", "a2", "b1", "b2", "c1", "main"]


@pytest.fixture
def client(live: Live) -> Iterator[StrataClient]:
    with StrataClient(f"127.0.0.1:{live.server.port}", live.admin[0][1].split()[1]) as admin:
        admin.create_tenant("t", empty=True)
        for name in NAMES[:-1]:
            admin.create_branch("t", name)
        yield admin


def pages(live: Live, size: int, metadata: tuple[tuple[str, str], ...]) -> list[list[str]]:
    listed, token = [], ""
    while True:
        page = live.manage.ListBranches(
            pb.ListBranchesRequest(tenant="t", page_size=size, page_token=token),
            metadata=metadata, timeout=TIMEOUT)
        listed.append([branch.name for branch in page.branches])
        token = page.next_page_token
        if not token:
            return listed


def test_pages_cover_every_branch_once_in_order(live: Live, client: StrataClient) -> None:
    assert pages(live, 2, live.admin) == [["a1", "a2"], ["b1", "b2"], ["c1", "main"]]
    assert pages(live, 4, live.admin) == [["a1", "a2", "b1", "b2"], ["c1", "main"]]
    assert pages(live, 0, live.admin) == [NAMES]  # 0: all, as before paging
    assert pages(live, 6, live.admin) == [NAMES]


def test_a_branch_created_between_pages_is_listed_in_its_place(
        live: Live, client: StrataClient) -> None:
    first = live.manage.ListBranches(pb.ListBranchesRequest(tenant="t", page_size=3),
                                     metadata=live.admin, timeout=TIMEOUT)
    client.create_branch("t", "a0")  # before the token: not listed again
    client.create_branch("t", "b3")  # after it: listed
    rest = live.manage.ListBranches(
        pb.ListBranchesRequest(tenant="t", page_token=first.next_page_token),
        metadata=live.admin, timeout=TIMEOUT)
    assert [b.name for b in first.branches] == ["a1", "a2", "b1"]
    assert [b.name for b in rest.branches] == ["b2", "b3", "c1", "main"]
    assert rest.next_page_token == ""


def test_pages_hold_only_the_branches_a_token_covers(live: Live, client: StrataClient) -> None:
    token = live.authority.issue("t", auth.Scope.TENANT, 600, branches=("a2", "b2", "c1"))
    limited = call_credentials_metadata(token)
    assert pages(live, 2, limited) == [["a2", "b2"], ["c1"]]


def test_the_client_fetches_every_page_or_stops_at_a_limit(client: StrataClient) -> None:
    assert [b.name for b in client.list_branches("t", page_size=2)] == NAMES
    assert [b.name for b in client.list_branches("t", limit=3, page_size=2)] == NAMES[:3]
    assert [b.name for b in client.list_branches("t", limit=100)] == NAMES


