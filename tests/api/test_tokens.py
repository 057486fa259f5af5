"""Token lifecycle against a real page server: revocation, tenant incarnations, expiry,
branch and read-only limits, renewal, and the audit log of who did what."""

from __future__ import annotations

import json
import time
from typing import Any

import grpc
import pytest

from common.bearer import call_credentials_metadata
from pageserver.api import auth
from proto import strata_pb2 as pb
from tests.api.conftest import Live

TIMEOUT = 10
TOKEN_TTL_S = 3  # of the token that expires: used once before, refused after
Metadata = tuple[tuple[str, str], ...]


def _tenant(live: Live, name: str = "t") -> None:
    live.manage.CreateTenant(pb.CreateTenantRequest(tenant=name, empty=True),
                             metadata=live.admin, timeout=TIMEOUT)


def _mint(live: Live, tenant: str = "t", scope: str = "tenant",
          metadata: Metadata | None = None, **limits: Any) -> pb.CreateTokenResponse:
    response: pb.CreateTokenResponse = live.manage.CreateToken(
        pb.CreateTokenRequest(tenant=tenant, scope=scope, **limits),
        metadata=metadata or live.admin, timeout=TIMEOUT)
    return response


def _bearer(response: pb.CreateTokenResponse) -> Metadata:
    return call_credentials_metadata(response.token)


def _refused(call: Any, request: Any, metadata: Metadata) -> grpc.RpcError:
    """The error a unary call ends with."""
    with pytest.raises(grpc.RpcError) as err:
        call(request, metadata=metadata, timeout=TIMEOUT)
    return err.value


def _branches(live: Live, metadata: Metadata) -> list[str]:
    listing = live.manage.ListBranches(pb.ListBranchesRequest(tenant="t"), metadata=metadata,
                                       timeout=TIMEOUT)
    return [b.name for b in listing.branches]


def test_a_revoked_token_is_refused_and_cannot_renew(live: Live) -> None:
    _tenant(live)
    minted = _mint(live)
    assert _branches(live, _bearer(minted)) == ["main"]
    revoked = live.manage.RevokeToken(pb.RevokeTokenRequest(token_id=minted.token_id),
                                      metadata=live.admin, timeout=TIMEOUT).token
    assert revoked.revoked_at > 0 and revoked.tenant == "t"
    for call, request in ((live.manage.ListBranches, pb.ListBranchesRequest(tenant="t")),
                          (live.manage.RenewToken, pb.RenewTokenRequest(tenant="t"))):
        error = _refused(call, request, _bearer(minted))
        assert error.code() is grpc.StatusCode.UNAUTHENTICATED
        assert f"token {minted.token_id} was revoked" in (error.details() or "")


def test_a_token_of_a_deleted_and_recreated_tenant_is_refused(live: Live) -> None:
    _tenant(live)
    old = _mint(live)
    live.manage.DeleteTenant(pb.DeleteTenantRequest(tenant="t"), metadata=live.admin,
                             timeout=TIMEOUT)
    error = _refused(live.manage.ListBranches, pb.ListBranchesRequest(tenant="t"), _bearer(old))
    assert "no longer exists" in (error.details() or "")
    _tenant(live)
    error = _refused(live.manage.ListBranches, pb.ListBranchesRequest(tenant="t"), _bearer(old))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "earlier tenant 't', deleted since and created again" in (error.details() or "")
    assert _branches(live, _bearer(_mint(live))) == ["main"]


def test_an_expired_token_is_refused(live: Live) -> None:
    _tenant(live)
    short = _mint(live, ttl_s=TOKEN_TTL_S)  # long enough to be used once, however loaded
    assert _branches(live, _bearer(short)) == ["main"]
    time.sleep(max(0.0, short.expires_at + 1.1 - time.time()))  # whole seconds: past them
    error = _refused(live.manage.ListBranches, pb.ListBranchesRequest(tenant="t"),
                     _bearer(short))
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, "token expired")


def test_a_branch_limited_token_touches_only_its_branches(live: Live) -> None:
    _tenant(live)
    for name in ("dev", "other"):
        live.manage.CreateBranch(pb.CreateBranchRequest(tenant="t", name=name),
                                 metadata=live.admin, timeout=TIMEOUT)
    live.manage.CreateCheckpoint(pb.CreateCheckpointRequest(tenant="t", branch="other",
                                                            name="cp"),
                                 metadata=live.admin, timeout=TIMEOUT)
    live.manage.CreateBranch(pb.CreateBranchRequest(tenant="t", name="kid", parent="dev"),
                             metadata=live.admin, timeout=TIMEOUT)
    dev = _bearer(_mint(live, branches=["dev"]))
    assert _branches(live, dev) == ["dev"]
    assert live.manage.ListCheckpoints(pb.ListCheckpointsRequest(tenant="t"), metadata=dev,
                                       timeout=TIMEOUT).checkpoints == []
    refusals = [
        (live.manage.GetBranch, pb.GetBranchRequest(tenant="t", name="other")),
        (live.manage.DeleteBranch, pb.DeleteBranchRequest(tenant="t", name="other")),
        (live.manage.UpdateBranch, pb.UpdateBranchRequest(tenant="t", name="other", ttl_s=60)),
        (live.manage.CreateBranch, pb.CreateBranchRequest(tenant="t", name="x", parent="dev")),
        (live.manage.CreateBranch, pb.CreateBranchRequest(tenant="t", name="dev2",
                                                          parent="other")),
        (live.manage.RestoreBranch, pb.RestoreBranchRequest(tenant="t", name="dev",
                                                            checkpoint="cp")),
        (live.manage.RestoreBranch, pb.RestoreBranchRequest(tenant="t", name="dev",
                                                            parent_latest=True)),
        (live.manage.DeleteCheckpoint, pb.DeleteCheckpointRequest(tenant="t", name="cp")),
        (live.manage.DeleteBranch, pb.DeleteBranchRequest(tenant="t", name="dev",
                                                          cascade=True)),  # and "kid"
        (live.manage.AttachWriter, pb.AttachWriterRequest(tenant="t", branch="")),  # main
        (live.manage.Gc, pb.GcRequest(tenant="t")),
        (live.manage.ReadAudit, pb.ReadAuditRequest()),
        (live.manage.CreateToken, pb.CreateTokenRequest(tenant="t", scope="compute",
                                                        branches=["other"])),
    ]
    for call, request in refusals:
        error = _refused(call, request, dev)
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED, request
        assert "limited to branch" in (error.details() or ""), request
    reads = live.pages.GetPages(iter([pb.GetPagesRequest(
        request_id=1, at=pb.ReadPoint(tenant="t", branch="other", latest=True),
        relation=pb.Relation(spc_oid=1663, db_oid=5, rel_number=1), blocks=[0])]),
        metadata=dev, timeout=TIMEOUT)
    with pytest.raises(grpc.RpcError) as err:
        list(reads)
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert live.manage.GetBranch(pb.GetBranchRequest(tenant="t", name="dev"), metadata=dev,
                                 timeout=TIMEOUT).branch.name == "dev"
    narrower = _mint(live, scope="compute", metadata=dev)  # inherits the limit
    assert live.authority.verify(narrower.token).branches == ("dev",)


def test_a_read_only_token_reads_but_cannot_write(live: Live) -> None:
    _tenant(live)
    reader = _bearer(_mint(live, scope="compute", read_only=True))
    assert live.manage.GetBranch(pb.GetBranchRequest(tenant="t", name="main"),
                                 metadata=reader, timeout=TIMEOUT).branch.name == "main"
    files = live.pages.ListFiles(pb.ListFilesRequest(at=pb.ReadPoint(tenant="t", latest=True)),
                                 metadata=reader, timeout=TIMEOUT)
    assert files.lsn == 0
    tenant_reader = _bearer(_mint(live, read_only=True))
    for call, request, metadata in [
        (live.manage.AttachWriter, pb.AttachWriterRequest(tenant="t", branch="main"), reader),
        (live.manage.CreateBranch, pb.CreateBranchRequest(tenant="t", name="b"), tenant_reader),
        (live.manage.CreateToken, pb.CreateTokenRequest(tenant="t", scope="compute"),
         tenant_reader),
    ]:
        error = _refused(call, request, metadata)
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "read-only" in (error.details() or "")
    stream = live.ingest.Ingest(iter([pb.IngestRequest(
        open=pb.IngestOpen(tenant="t", branch="main", writer_epoch=1))]),
        metadata=reader, timeout=TIMEOUT)
    with pytest.raises(grpc.RpcError) as err:
        list(stream)
    assert err.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "read-only" in (err.value.details() or "")


def test_renewal_keeps_the_limits_and_the_lifetime(live: Live) -> None:
    _tenant(live)
    live.manage.CreateBranch(pb.CreateBranchRequest(tenant="t", name="dev"),
                             metadata=live.admin, timeout=TIMEOUT)
    first = _mint(live, scope="compute", ttl_s=3, branches=["dev"], read_only=True)
    renewed = live.manage.RenewToken(pb.RenewTokenRequest(tenant="t"), metadata=_bearer(first),
                                     timeout=TIMEOUT)
    claims = live.authority.verify(renewed.token)
    assert (claims.scope, claims.branches, claims.read_only) == (auth.Scope.COMPUTE, ("dev",),
                                                                  True)
    assert claims.expires_at - claims.issued_at == 3 and claims.token_id != first.token_id
    listed = {t.token_id: t for t in live.manage.ListTokens(
        pb.ListTokensRequest(), metadata=live.admin, timeout=TIMEOUT).tokens}
    assert listed[renewed.token_id].renewed_from == first.token_id
    assert list(listed[renewed.token_id].branches) == ["dev"]


def test_tenant_tokens_list_and_revoke_only_their_tenant(live: Live) -> None:
    _tenant(live, "a")
    _tenant(live, "b")
    token_a, token_b = _mint(live, "a"), _mint(live, "b")
    listed = live.manage.ListTokens(pb.ListTokensRequest(), metadata=_bearer(token_a),
                                    timeout=TIMEOUT).tokens
    assert {t.tenant for t in listed} == {"a"} and token_a.token_id in {t.token_id for t in listed}
    error = _refused(live.manage.RevokeToken, pb.RevokeTokenRequest(token_id=token_b.token_id),
                     _bearer(token_a))
    assert error.code() is grpc.StatusCode.NOT_FOUND
    assert _branches_of(live, "b", _bearer(token_b)) == ["main"]


def _branches_of(live: Live, tenant: str, metadata: Metadata) -> list[str]:
    listing = live.manage.ListBranches(pb.ListBranchesRequest(tenant=tenant),
                                       metadata=metadata, timeout=TIMEOUT)
    return [b.name for b in listing.branches]


def test_the_audit_log_names_who_did_what(live: Live) -> None:
    _tenant(live, "a")
    _tenant(live, "b")
    minted = _mint(live, "a")
    as_a = _bearer(minted)
    live.manage.CreateBranch(pb.CreateBranchRequest(tenant="a", name="dev"), metadata=as_a,
                             timeout=TIMEOUT)
    live.manage.CreateBranch(pb.CreateBranchRequest(tenant="b", name="dev"),
                             metadata=live.admin, timeout=TIMEOUT)
    seen = live.manage.ReadAudit(pb.ReadAuditRequest(), metadata=as_a, timeout=TIMEOUT).entries
    assert {e.tenant for e in seen} == {"a"}
    created = [e for e in seen if e.action == "branch.create"]
    assert [(e.target, e.token_id, e.scope) for e in created] == [("dev", minted.token_id,
                                                                  "tenant")]
    assert created[0].peer.startswith("ipv4:127.0.0.1:")
    assert json.loads(created[0].details)["parent"] == "main"
    everything = live.manage.ReadAudit(pb.ReadAuditRequest(), metadata=live.admin,
                                       timeout=TIMEOUT).entries
    assert [e.action for e in everything if e.tenant == "b"] == ["tenant.create",
                                                                 "branch.create"]
    later = live.manage.ReadAudit(pb.ReadAuditRequest(since_us=created[0].at_us + 1),
                                  metadata=live.admin, timeout=TIMEOUT).entries
    assert [e.action for e in later] == ["branch.create"] and later[0].tenant == "b"
    audit_file = live.engine.config.state_dir / "audit.jsonl"
    assert audit_file.stat().st_mode & 0o777 == 0o600

