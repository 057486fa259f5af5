"""Tests of tokens, the auth state directory, the authorisation rule and request tenants."""

from __future__ import annotations

import json
import secrets
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from common.bearer import call_credentials_metadata
from common.errors import NotFoundError, PermissionDeniedError
from pageserver.api.auth import (
    ADMIN_ONLY_METHODS,
    ADMIN_TTL_S,
    COMPUTE_METHODS,
    MAX_TTL_S,
    READ_METHODS,
    TENANT_METHODS,
    Claims,
    Scope,
    TokenAuthority,
    Unauthenticated,
    authorize,
    load_or_create,
    request_branches,
    request_tenant,
)
from pageserver.api.signing_keys import KeyRing
from pageserver.api.token_registry import (
    REFRESH_S,
    STALE_AFTER_S,
    RegistryUnavailableError,
    TokenRecord,
    TokenRegistry,
)
from pageserver.remote import ForwardingStorage, LocalDirectoryStorage, RemoteStorageError
from proto import strata_pb2 as pb
from tests.tokens import every_tenant

KEY = b"k" * 32
MGMT = "/strata.v1.ManagementService/"
GET_PAGES = "/strata.v1.PageService/GetPages"
INGEST = "/strata.v1.IngestService/Ingest"


@pytest.fixture
def authority() -> TokenAuthority:
    return TokenAuthority(KeyRing(KEY), TokenRegistry(None), every_tenant)


def signed(payload: dict[str, Any], key: bytes = KEY, algorithm: str = "HS256") -> str:
    """A token with exactly ``payload``, bypassing TokenAuthority.issue's checks."""
    return jwt.encode(payload, key, algorithm=algorithm)


def claims_payload(**changes: Any) -> dict[str, Any]:
    """Claims valid for a day: parametrize builds these at collection, long before use."""
    now = int(time.time())
    return {"tenant": "acme", "scope": "tenant", "iat": now, "exp": now + 86400, "jti": "id1",
            **changes}


# ---------------------------------------------------------------- tokens

def test_issue_verify_round_trip(authority: TokenAuthority) -> None:
    before = int(time.time())
    token = authority.issue("acme", Scope.TENANT, 60)
    claims = authority.verify(token)
    assert (claims.tenant, claims.scope) == ("acme", Scope.TENANT)
    assert before + 60 <= claims.expires_at <= int(time.time()) + 60
    assert claims.token_id
    assert authority.verify(authority.issue("acme", Scope.TENANT, 60)).token_id != claims.token_id
    admin = authority.verify(authority.issue("*", Scope.ADMIN, MAX_TTL_S))
    assert (admin.tenant, admin.scope) == ("*", Scope.ADMIN)


@pytest.mark.parametrize(("tenant", "scope", "ttl_s", "error"), [
    ("acme", Scope.TENANT, 0, "lifetime"),
    ("acme", Scope.TENANT, MAX_TTL_S + 1, "lifetime"),
    ("*", Scope.TENANT, 60, "needs scope admin"),
    ("*", Scope.COMPUTE, 60, "needs scope admin"),
    ("acme", Scope.ADMIN, 60, "all tenants"),
    ("", Scope.TENANT, 60, "invalid tenant name"),
    ("-acme", Scope.TENANT, 60, "invalid tenant name"),
    ("a/b", Scope.TENANT, 60, "invalid tenant name"),
    ("acme\n", Scope.TENANT, 60, "invalid tenant name"),
    ("a" * 64, Scope.TENANT, 60, "invalid tenant name"),
])
def test_issue_refuses_bad_input(authority: TokenAuthority, tenant: str, scope: Scope,
                                 ttl_s: int, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        authority.issue(tenant, scope, ttl_s)


def test_issue_accepts_edge_names(authority: TokenAuthority) -> None:
    for tenant in ("a", "a" * 63, "A0._-z"):
        assert authority.verify(authority.issue(tenant, Scope.COMPUTE, 1)).tenant == tenant


def test_short_key_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        KeyRing(b"short")


def test_expired_token_refused(authority: TokenAuthority) -> None:
    token = signed(claims_payload(iat=int(time.time()) - 120, exp=int(time.time()) - 60))
    with pytest.raises(Unauthenticated, match="token expired"):
        authority.verify(token)


def test_forged_token_refused(authority: TokenAuthority) -> None:
    forged = TokenAuthority(KeyRing(secrets.token_bytes(32)), TokenRegistry(None),
                            every_tenant).issue("acme", Scope.TENANT, 60)
    with pytest.raises(Unauthenticated, match="signature invalid"):
        authority.verify(forged)


@pytest.mark.parametrize("token", [
    jwt.encode(claims_payload(tenant="*", scope="admin"), "", algorithm="none"),
    signed(claims_payload(tenant="*", scope="admin"), key=KEY * 2, algorithm="HS512"),
])
def test_other_algorithms_refused(authority: TokenAuthority, token: str) -> None:
    with pytest.raises(Unauthenticated, match="algorithm not allowed"):
        authority.verify(token)


@pytest.mark.parametrize(("payload", "error"), [
    ({"tenant": "acme", "scope": "tenant", "iat": 1, "jti": "x"}, "lacks the 'exp' claim"),
    (claims_payload(scope="root"), "claims invalid"),
    (claims_payload(tenant="*"), "claims invalid"),
    (claims_payload(tenant="acme", scope="admin"), "claims invalid"),
    (claims_payload(tenant=7), "claims invalid"),
])
def test_bad_claims_refused(authority: TokenAuthority, payload: dict[str, Any],
                            error: str) -> None:
    with pytest.raises(Unauthenticated, match=error):
        authority.verify(signed(payload))


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "Bearer x.y.z"])
def test_malformed_token_refused(authority: TokenAuthority, token: str) -> None:
    with pytest.raises(Unauthenticated):
        authority.verify(token)


def test_call_credentials_metadata() -> None:
    assert call_credentials_metadata("t0k") == (("authorization", "Bearer t0k"),)


# ---------------------------------------------------------------- state directory

def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _start(tmp_path: Path, state: str = "state") -> tuple[TokenAuthority, str]:
    """A page server's authority: state directory ``state``, one object store for all."""
    return load_or_create(tmp_path / state, LocalDirectoryStorage(tmp_path / "objects"),
                          every_tenant)


def test_load_or_create_creates_then_reuses(tmp_path: Path) -> None:
    authority, token = _start(tmp_path)
    auth_dir = tmp_path / "state" / "auth"
    assert sorted(p.name for p in auth_dir.iterdir()) == ["admin.token", "lock"]
    assert mode(auth_dir) == 0o700
    assert mode(auth_dir / "admin.token") == 0o600
    store = LocalDirectoryStorage(tmp_path / "objects")
    (key_name,) = store.list("auth/keys/")
    assert len(store.get(key_name)) == 32
    assert store.get("auth/signing-key").decode() == key_name.rpartition("/")[2]
    claims = authority.verify(token)
    assert (claims.tenant, claims.scope) == ("*", Scope.ADMIN)
    assert claims.expires_at >= int(time.time()) + ADMIN_TTL_S - 60

    again, same_token = _start(tmp_path)
    assert same_token == token
    assert again.verify(token) == claims
    issued = authority.issue("acme", Scope.TENANT, 60)  # recorded durably: a restart knows it
    assert _start(tmp_path)[0].verify(issued).tenant == "acme"


def test_page_servers_on_one_store_honour_each_others_tokens(tmp_path: Path) -> None:
    first, first_admin = _start(tmp_path, "a")
    second, second_admin = _start(tmp_path, "b")
    assert second.verify(first_admin).scope is Scope.ADMIN
    assert first.verify(second_admin).scope is Scope.ADMIN
    compute = first.issue("acme", Scope.COMPUTE, 600, branches=("main",))
    assert second.verify(compute).branches == ("main",)
    lost, _ = _start(tmp_path, "c")  # a page server whose disk was lost: a new state dir
    assert lost.verify(compute).tenant == "acme"


def test_a_revocation_reaches_the_other_page_servers_within_the_refresh(
        tmp_path: Path) -> None:
    store = LocalDirectoryStorage(tmp_path / "objects")
    now = [0.0]
    first = TokenAuthority(KeyRing.in_store(store), TokenRegistry(store, lambda: now[0]),
                           every_tenant)
    second = TokenAuthority(KeyRing.in_store(store), TokenRegistry(store, lambda: now[0]),
                            every_tenant)
    token = first.issue("acme", Scope.TENANT, 600)
    assert second.verify(token).tenant == "acme"  # read on first sight
    first.registry.revoke(first.verify(token).token_id)
    with pytest.raises(Unauthenticated, match="revoked"):
        first.verify(token)
    assert second.verify(token).tenant == "acme"  # its cached list is younger than REFRESH_S
    now[0] += REFRESH_S
    with pytest.raises(Unauthenticated, match="revoked"):
        second.verify(token)


class _ListingFails(ForwardingStorage):
    """A store whose listings fail once ``down`` is set."""

    down = False

    def list(self, prefix: str) -> list[str]:
        if self.down:
            raise RemoteStorageError("the store does not answer")
        return super().list(prefix)


def test_an_unreadable_registry_refuses_tokens_once_stale(tmp_path: Path) -> None:
    store = _ListingFails(LocalDirectoryStorage(tmp_path / "objects"))
    now = [0.0]
    authority = TokenAuthority(KeyRing.in_store(store), TokenRegistry(store, lambda: now[0]),
                               every_tenant)
    token = authority.issue("acme", Scope.TENANT, 600)
    assert authority.verify(token).tenant == "acme"
    store.down = True
    now[0] += REFRESH_S
    assert authority.verify(token).tenant == "acme"  # trusted for a while
    now[0] += STALE_AFTER_S
    with pytest.raises(RegistryUnavailableError, match="refusing tokens"):
        authority.verify(token)


def test_a_local_key_and_registry_move_into_the_store(tmp_path: Path) -> None:
    """A page server of before keeps its key and registry in its state directory: its
    tokens, revocations included, hold after the move, also on another page server."""
    auth_dir = tmp_path / "old" / "auth"
    auth_dir.mkdir(parents=True)
    old_key = secrets.token_bytes(32)
    (auth_dir / "signing.key").write_bytes(old_key)
    now = int(time.time())
    records = [TokenRecord("kept", "acme", "tenant", None, False, now, now + 600),
               TokenRecord("gone", "acme", "tenant", None, False, now, now + 600,
                           revoked_at=now)]
    (auth_dir / "tokens.json").write_text(json.dumps({"tokens": [r.to_json() for r in records]}))
    kept = signed(claims_payload(jti="kept", inc="1"), key=old_key)  # no key id: old
    gone = signed(claims_payload(jti="gone", inc="1"), key=old_key)
    authority, _ = _start(tmp_path, "old")
    assert sorted(p.name for p in auth_dir.iterdir()) == [
        "admin.token", "lock", "signing.key.moved", "tokens.json.moved"]
    other, _ = _start(tmp_path, "new")
    for server in (authority, other, _start(tmp_path, "old")[0]):  # again: idempotent
        assert server.verify(kept).token_id == "kept"
        with pytest.raises(Unauthenticated, match="revoked"):
            server.verify(gone)
        assert server.registry.get("gone") == records[1]  # as it was, revocation time too


def test_load_or_create_replaces_a_stale_admin_token(tmp_path: Path) -> None:
    _start(tmp_path)
    token_file = tmp_path / "state" / "auth" / "admin.token"
    stranger = TokenAuthority(KeyRing(secrets.token_bytes(32)), TokenRegistry(None),
                              every_tenant)
    token_file.write_text(stranger.issue("*", Scope.ADMIN, 60))
    authority, token = _start(tmp_path)
    assert authority.verify(token).scope is Scope.ADMIN
    assert token_file.read_text() == token
    assert mode(token_file) == 0o600


def test_concurrent_first_starts_agree(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: _start(tmp_path), range(8)))
    assert len({token for _, token in results}) == 1
    for authority, token in results:
        assert authority.verify(token).scope is Scope.ADMIN
    assert len(LocalDirectoryStorage(tmp_path / "objects").list("auth/keys/")) == 1


# ---------------------------------------------------------------- authorisation

ADMIN = Claims("*", Scope.ADMIN, 0, "a")
TENANT_A = Claims("a", Scope.TENANT, 0, "t")
COMPUTE_A = Claims("a", Scope.COMPUTE, 0, "c")

ALLOWED = [
    (ADMIN, "a", MGMT + "CreateTenant"),
    (ADMIN, "b", MGMT + "DeleteTenant"),
    (ADMIN, None, MGMT + "ListTenants"),
    (ADMIN, "*", MGMT + "CreateToken"),
    (ADMIN, "a", GET_PAGES),
    (ADMIN, None, "/strata.v1.ManagementService/NotYetDefined"),
    (TENANT_A, "a", MGMT + "ListBranches"),
    (TENANT_A, "a", MGMT + "CreateBranch"),
    (TENANT_A, "a", MGMT + "Gc"),
    (TENANT_A, "a", MGMT + "CreateToken"),
    (TENANT_A, None, MGMT + "ListTenants"),
    (TENANT_A, "a", GET_PAGES),
    (TENANT_A, "a", INGEST),
    (COMPUTE_A, "a", GET_PAGES),
    (COMPUTE_A, "a", "/strata.v1.PageService/Stat"),
    (COMPUTE_A, "a", INGEST),
    (COMPUTE_A, "a", MGMT + "AttachWriter"),
    (COMPUTE_A, "a", MGMT + "DetachWriter"),
    (COMPUTE_A, "a", MGMT + "GetBranch"),
]

DENIED = [
    (TENANT_A, "b", MGMT + "ListBranches", "not 'b'"),
    (TENANT_A, "b", GET_PAGES, "not 'b'"),
    (TENANT_A, "", MGMT + "ListBranches", "not ''"),
    (TENANT_A, "a", MGMT + "CreateTenant", "may not call"),
    (TENANT_A, "a", MGMT + "DeleteTenant", "may not call"),
    (TENANT_A, "*", MGMT + "CreateToken", "not '*'"),
    (TENANT_A, "b", MGMT + "CreateToken", "not 'b'"),
    (TENANT_A, None, MGMT + "ListBranches", "names no tenant"),
    (TENANT_A, "a", "/strata.v1.ManagementService/NotYetDefined", "may not call"),
    (COMPUTE_A, "b", GET_PAGES, "not 'b'"),
    (COMPUTE_A, "b", MGMT + "GetBranch", "not 'b'"),
    (COMPUTE_A, "a", MGMT + "CreateBranch", "may not call"),
    (COMPUTE_A, "a", MGMT + "DeleteBranch", "may not call"),
    (COMPUTE_A, "a", MGMT + "CreateToken", "may not call"),
    (COMPUTE_A, None, MGMT + "ListTenants", "may not call"),
    (Claims("*", Scope.TENANT, 0, "x"), "a", MGMT + "ListBranches", "tenant '\\*'"),
    (Claims("*", Scope.COMPUTE, 0, "x"), "a", GET_PAGES, "tenant '\\*'"),
    (Claims("a", Scope.ADMIN, 0, "x"), "a", GET_PAGES, "scope admin"),
]


@pytest.mark.parametrize(("claims", "tenant", "method"), ALLOWED)
def test_authorize_allows(claims: Claims, tenant: str | None, method: str) -> None:
    authorize(claims, tenant, method)


@pytest.mark.parametrize(("claims", "tenant", "method", "error"), DENIED)
def test_authorize_denies(claims: Claims, tenant: str | None, method: str, error: str) -> None:
    with pytest.raises(PermissionDeniedError, match=error):
        authorize(claims, tenant, method)


def test_every_rpc_is_classified() -> None:
    methods = {f"/{service.full_name}/{method.name}"
               for service in pb.DESCRIPTOR.services_by_name.values()
               for method in service.methods}
    assert methods == TENANT_METHODS | ADMIN_ONLY_METHODS
    assert not TENANT_METHODS & ADMIN_ONLY_METHODS
    assert COMPUTE_METHODS < TENANT_METHODS


# ---------------------------------------------------------------- request tenants

def test_request_tenant_of_the_contract() -> None:
    assert request_tenant(pb.ListBranchesRequest(tenant="a")) == "a"
    assert request_tenant(pb.ListBranchesRequest()) == ""
    assert request_tenant(pb.CreateTokenRequest(tenant="*", scope="admin")) == "*"
    assert request_tenant(pb.GetPagesRequest(at=pb.ReadPoint(tenant="b"), blocks=[1])) == "b"
    assert request_tenant(pb.GetPagesRequest()) is None
    assert request_tenant(pb.StatRequest(at=pb.ReadPoint(tenant="c"), path="x")) == "c"
    assert request_tenant(pb.IngestRequest(open=pb.IngestOpen(tenant="d"))) == "d"
    assert request_tenant(pb.IngestRequest(batch=pb.IngestBatch(batch_id=1))) is None
    assert request_tenant(pb.ListTenantsRequest()) is None
    assert request_tenant(b"not a message") is None


def probe_message_class() -> Any:
    """A message type unknown to the contract: a tenant field and a ReadPoint field."""
    pool = descriptor_pool.DescriptorPool()
    for imported in pb.DESCRIPTOR.dependencies:  # descriptor.proto, for the access option
        pool.AddSerializedFile(imported.serialized_pb)
    pool.AddSerializedFile(pb.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="tests/auth_probe.proto", package="strata.test", syntax="proto3",
        dependency=[pb.DESCRIPTOR.name])
    probe = file.message_type.add(name="Probe")
    field = descriptor_pb2.FieldDescriptorProto
    probe.field.add(name="tenant", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    probe.field.add(name="where", number=2, type=field.TYPE_MESSAGE, label=field.LABEL_OPTIONAL,
                    type_name=".strata.v1.ReadPoint")
    pool.AddSerializedFile(file.SerializeToString())
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("strata.test.Probe"))


def test_request_tenant_of_a_new_message_type() -> None:
    probe = probe_message_class()
    assert request_tenant(probe(tenant="e")) == "e"
    same = probe(tenant="e")
    same.where.tenant = "e"
    assert request_tenant(same) == "e"
    other = probe(tenant="e")
    other.where.tenant = "f"
    with pytest.raises(PermissionDeniedError, match="one tenant"):
        request_tenant(other)


def test_revocations_and_minted_tokens_survive_a_restart(tmp_path: Path) -> None:
    authority, _ = _start(tmp_path)
    kept = authority.issue("acme", Scope.TENANT, 600, branches=("dev",), read_only=True)
    gone = authority.issue("acme", Scope.COMPUTE, 600)
    authority.registry.revoke(authority.verify(gone).token_id)
    again, _ = _start(tmp_path)
    claims = again.verify(kept)
    assert (claims.branches, claims.read_only) == (("dev",), True)
    with pytest.raises(Unauthenticated, match="revoked"):
        again.verify(gone)


def test_a_lost_registry_refuses_every_token(tmp_path: Path) -> None:
    authority, _ = _start(tmp_path)
    token = authority.issue("acme", Scope.TENANT, 600)
    store = LocalDirectoryStorage(tmp_path / "objects")
    store.delete_many(store.list("auth/tokens/"))
    again, admin = _start(tmp_path)  # a new admin token is issued
    with pytest.raises(Unauthenticated, match="unknown to the page servers"):
        again.verify(token)
    assert again.verify(admin).scope is Scope.ADMIN


def test_tokens_carry_and_check_their_tenants_incarnation() -> None:
    incarnations = {"acme": "one"}
    authority = TokenAuthority(KeyRing(KEY), TokenRegistry(None), incarnations.get)
    token = authority.issue("acme", Scope.TENANT, 60)
    assert authority.verify(token).incarnation == "one"
    incarnations["acme"] = "two"
    with pytest.raises(Unauthenticated, match="earlier tenant 'acme'"):
        authority.verify(token)
    with pytest.raises(NotFoundError, match="no tenant 'other'"):
        authority.issue("other", Scope.TENANT, 60)


def test_read_only_and_branch_limits() -> None:
    limited = Claims("a", Scope.TENANT, 0, "t", branches=("dev",), read_only=True)
    authorize(limited, "a", MGMT + "GetBranch", frozenset({"dev"}))
    with pytest.raises(PermissionDeniedError, match="limited to branch dev, not main"):
        authorize(limited, "a", MGMT + "GetBranch", frozenset({"main"}))
    with pytest.raises(PermissionDeniedError, match="read-only"):
        authorize(limited, "a", INGEST, frozenset({"dev"}))
    assert MGMT + "CreateBranch" not in READ_METHODS and GET_PAGES in READ_METHODS


def test_the_branches_a_request_names() -> None:
    request = pb.CreateBranchRequest(tenant="a", name="new")  # parent unset: main
    assert request_branches(request) == {"new", "main"}
    assert request_branches(pb.GetPagesRequest(at=pb.ReadPoint(tenant="a", branch="dev"))) == {
        "dev"}
    assert request_branches(pb.CreateCheckpointRequest(tenant="a", branch="b",
                                                       name="cp")) == {"b"}


def test_load_or_create_replaces_an_admin_token_revoked_or_past_half_its_life(
        tmp_path: Path) -> None:
    authority, first = _start(tmp_path)
    token_file = tmp_path / "state" / "auth" / "admin.token"
    aging = authority.issue("*", Scope.ADMIN, ADMIN_TTL_S // 2 - 60)
    token_file.write_text(aging)
    again, renewed = _start(tmp_path)
    assert renewed not in (aging, first)
    assert again.verify(renewed).expires_at >= int(time.time()) + ADMIN_TTL_S - 60
    again.registry.revoke(again.verify(renewed).token_id)
    third, fresh = _start(tmp_path)
    assert fresh != renewed and third.verify(fresh).scope is Scope.ADMIN


def test_every_field_naming_a_branch_is_marked_in_the_contract() -> None:
    """A new field called branch, parent or preserve_as that the contract does not mark
    (branch_ref) would let a token limited to branches past the check."""
    requests = [method.input_type for service in pb.DESCRIPTOR.services_by_name.values()
                for method in service.methods]
    requests += [field.message_type for message in requests for field in message.fields
                 if field.message_type is not None]  # ReadPoint, IngestOpen, ...
    unmarked = [
        f"{message.name}.{field.name}"
        for message in requests
        for field in message.fields
        if field.name in ("branch", "parent", "preserve_as")
        and not dict(field.GetOptions().ListFields()).get(pb.branch_ref, False)
    ]
    assert unmarked == []
    assert request_branches(pb.RestoreBranchRequest(tenant="a", name="x",
                                                    preserve_as="y")) == {"x", "y"}


def test_a_token_naming_an_unknown_or_malformed_key_is_refused(tmp_path: Path) -> None:
    authority, _ = _start(tmp_path)
    payload = claims_payload(inc="1")
    for kid in ("0123456789abcdef", "../../tenants/x", ""):
        token = jwt.encode(payload, KEY, algorithm="HS256", headers={"kid": kid})
        with pytest.raises(Unauthenticated, match="key unknown to this object store"):
            authority.verify(token)
