"""The TTL reaper against a real page server: a branch is deleted only if it is still
expired when the reaper holds its lock, whatever the (possibly old) listing said; expired
(automatic) checkpoints go too; a lease is an expiry that renewals move."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from common.client import LIST_PAGE_SIZE, ClientError, StrataClient
from proto import strata_pb2 as pb
from strata.local.home import Home
from strata.local.reaper import reap_expired

from .conftest import Live

MINUTE_US = 60_000_000


class _ChangesAfterListing(StrataClient):
    """A real client that runs ``change`` right after each listing of branches: the
    interleaving of a user's command between the reaper's listing and its delete."""

    def __init__(self, address: str, token: str, change: Callable[[], object]) -> None:
        super().__init__(address, token)
        self._change = change

    def list_branches(self, tenant: str, *, limit: int | None = None,
                      page_size: int = LIST_PAGE_SIZE,
                      history_bytes: bool = False) -> list[pb.BranchInfo]:
        listing = super().list_branches(tenant, limit=limit, page_size=page_size,
                                        history_bytes=history_bytes)
        self._change()
        return listing


@pytest.fixture
def client(live: Live) -> Iterator[StrataClient]:
    with StrataClient(f"127.0.0.1:{live.server.port}", _token(live)) as plain:
        plain.create_tenant("acme")
        yield plain


def _token(live: Live) -> str:
    return live.admin[0][1].split()[1]


def _reap(live: Live, tmp_path: Path, change: Callable[[], object]) -> list[str]:
    """Reap a minute from now (the 1 s TTLs below have passed, an hour's has not)."""
    with _ChangesAfterListing(f"127.0.0.1:{live.server.port}", _token(live), change) as racing:
        return reap_expired(Home(tmp_path / "home"), racing,
                            now_us=time.time_ns() // 1000 + MINUTE_US)


def test_an_expired_branch_is_reaped(live: Live, client: StrataClient, tmp_path: Path) -> None:
    client.create_branch("acme", "tmp", ttl_s=1)
    assert _reap(live, tmp_path, lambda: None) == ["acme/tmp"]
    assert [b.name for b in client.list_branches("acme")] == ["main"]


def test_a_ttl_extended_after_the_listing_keeps_the_branch(live: Live, client: StrataClient,
                                                          tmp_path: Path) -> None:
    client.create_branch("acme", "tmp", ttl_s=1)
    assert _reap(live, tmp_path, lambda: client.update_branch("acme", "tmp", ttl_s=3600)) == []
    assert client.get_branch("acme", "tmp").expires_at_us > time.time_ns() // 1000


def test_a_branch_made_again_after_the_listing_is_kept(live: Live, client: StrataClient,
                                                       tmp_path: Path) -> None:
    client.create_branch("acme", "tmp", ttl_s=1)

    def make_again() -> None:
        client.delete_branch("acme", "tmp")
        client.create_branch("acme", "tmp")  # no TTL: never expires

    assert _reap(live, tmp_path, make_again) == []
    assert client.get_branch("acme", "tmp").expires_at_us == 0


def test_a_branch_deleted_after_the_listing_is_skipped(live: Live, client: StrataClient,
                                                       tmp_path: Path) -> None:
    client.create_branch("acme", "tmp", ttl_s=1)
    assert _reap(live, tmp_path, lambda: client.delete_branch("acme", "tmp")) == []


def test_a_branch_forked_after_the_listing_is_kept(live: Live, client: StrataClient,
                                                   tmp_path: Path) -> None:
    client.create_branch("acme", "tmp", ttl_s=1)
    assert _reap(live, tmp_path,
                 lambda: client.create_branch("acme", "child", parent="tmp")) == []
    assert list(client.get_branch("acme", "tmp").children) == ["child"]


def test_expired_checkpoints_are_reaped_and_the_others_kept(live: Live, client: StrataClient,
                                                            tmp_path: Path) -> None:
    client.create_checkpoint("acme", "main", "auto-x-drop-table", statement="DROP TABLE t",
                             ttl_s=1)
    client.create_checkpoint("acme", "main", "auto-y-truncate", statement="TRUNCATE t",
                             ttl_s=3600)
    client.create_checkpoint("acme", "main", "mine")
    _reap(live, tmp_path, lambda: None)
    assert sorted(c.name for c in client.list_checkpoints("acme")) == ["auto-y-truncate",
                                                                       "mine"]
    kept = {c.name: c for c in client.list_checkpoints("acme")}
    assert kept["auto-y-truncate"].statement == "TRUNCATE t"
    assert kept["mine"].expires_at_us == 0 and not kept["mine"].statement


def test_a_lease_moves_its_expiry_on_renewal_and_a_ttl_replaces_it(
        client: StrataClient) -> None:
    leased = client.create_branch("acme", "leased", lease_s=600)
    assert leased.lease_s == 600
    assert abs(leased.expires_at_us - (time.time_ns() // 1000 + 600_000_000)) < 5_000_000
    time.sleep(0.05)
    renewed = client.update_branch("acme", "leased", renew_lease=True)
    assert renewed.lease_s == 600 and renewed.expires_at_us > leased.expires_at_us
    plain = client.update_branch("acme", "leased", ttl_s=60)
    assert plain.lease_s == 0
    with pytest.raises(ClientError) as refused:
        client.update_branch("acme", "leased", renew_lease=True)
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(ClientError) as both:
        client.create_branch("acme", "both", ttl_s=60, lease_s=60)
    assert both.value.code == grpc.StatusCode.INVALID_ARGUMENT
