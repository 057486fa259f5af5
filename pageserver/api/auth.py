"""Access control for the gRPC page server: bearer tokens, their scopes, and the interceptor.

A token is an HS256 JWT signed with the object store's signing key (its header names the
key: ``kid``), carrying a tenant (``*``: all tenants, admin only), a scope, an expiry, an
id, the incarnation of its tenant (a tenant deleted and created again under the same name
has another), and optionally the branches it is limited to and whether it may only read.
It verifies only while the ``TokenRegistry`` in the object store holds its id unrevoked,
so every page server on one store honours the tokens of every other (rfcs/0014). Clients
send it as the metadata ``authorization: Bearer <token>`` (see
``bearer.call_credentials_metadata``). ``AuthInterceptor`` checks the token of every call
except health checking and reflection, and checks every request's tenant and branches
against the token before the servicer sees the request.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import functools
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import grpc
import jwt
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from common.bearer import HEADER
from common.durable import write_durably
from common.errors import NotFoundError, PermissionDeniedError, StrataError
from common.names import is_valid_name
from pageserver.api.signing_keys import KeyRing
from pageserver.api.status import abort_with
from pageserver.api.token_registry import TokenRecord, TokenRegistry, move_local_registry
from pageserver.remote import RemoteStorage
from proto import strata_pb2 as pb

log = logging.getLogger(__name__)

ALL_TENANTS: Final = "*"
MAX_TTL_S: Final = 10 * 365 * 24 * 3600
# The local admin token lives in the state directory; the page server issues a new one at
# start once less than half of this is left. Not shorter: the proxy holds the token it
# read at its start for its whole life and does not renew it yet (rfcs/0007).
ADMIN_TTL_S: Final = 365 * 24 * 3600
MAIN_BRANCH: Final = "main"
_ALGORITHM: Final = "HS256"


class Scope(StrEnum):
    """What a token may do: everything, one tenant's everything, or a compute's data path."""

    ADMIN = "admin"
    TENANT = "tenant"
    COMPUTE = "compute"


@dataclass(frozen=True)
class Claims:
    """The verified content of a token."""

    tenant: str  # ALL_TENANTS ("*") for admin tokens
    scope: Scope
    expires_at: int  # unix seconds
    token_id: str
    branches: tuple[str, ...] | None = None  # None: every branch of the tenant
    read_only: bool = False
    incarnation: str = ""  # of the tenant when the token was issued; "" for admin tokens
    issued_at: int = 0

    def covers_branch(self, branch: str) -> bool:
        """Whether the token may act on ``branch``."""
        return self.branches is None or branch in self.branches


class Unauthenticated(Exception):
    """No token, or one that is forged, expired or malformed; the message is shown to the
    client and never holds a secret."""


# ---------------------------------------------------------------- method sets

def _methods_by_access() -> dict[int, frozenset[str]]:
    """The full gRPC path of every Strata RPC, by the access level the contract declares
    for it (``option (access)`` in proto/strata.proto)."""
    found: dict[int, set[str]] = {}
    for service in pb.DESCRIPTOR.services_by_name.values():
        for method in service.methods:
            declared = dict(method.GetOptions().ListFields())
            level = int(declared.get(pb.access, pb.ACCESS_UNSPECIFIED))
            found.setdefault(level, set()).add(f"/{service.full_name}/{method.name}")
    return {level: frozenset(methods) for level, methods in found.items()}


_BY_ACCESS: Final = _methods_by_access()
ADMIN_ONLY_METHODS: Final = _BY_ACCESS.get(pb.ACCESS_ADMIN_ONLY, frozenset())
# Methods whose request names no tenant; a tenant token may call them and the servicer
# must then restrict the answer to the token's tenant (``current_claims``).
TENANTLESS_METHODS: Final = _BY_ACCESS.get(pb.ACCESS_TENANTLESS, frozenset())
COMPUTE_METHODS: Final = _BY_ACCESS.get(pb.ACCESS_COMPUTE, frozenset())
TENANT_METHODS: Final = COMPUTE_METHODS | TENANTLESS_METHODS | _BY_ACCESS.get(
    pb.ACCESS_TENANT, frozenset())


def _read_methods() -> frozenset[str]:
    """The methods the contract declares ``option (read) = true``: read-only tokens' lot."""
    return frozenset(
        f"/{service.full_name}/{method.name}"
        for service in pb.DESCRIPTOR.services_by_name.values() for method in service.methods
        if dict(method.GetOptions().ListFields()).get(pb.read, False))


READ_METHODS: Final = _read_methods()
DEFAULT_OPEN_METHODS: Final = frozenset({
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/List",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
})


# ---------------------------------------------------------------- tokens

def check_branches(branches: tuple[str, ...] | None) -> None:
    """Raise ValueError unless ``branches`` (None: all) are valid, non-empty branch names."""
    if branches is None:
        return
    if not branches:
        raise ValueError("a token limited to branches needs at least one")
    for name in branches:
        if not is_valid_name(name):
            raise ValueError(f"invalid branch name {name!r}: 1 to 63 letters, digits, '.', "
                             "'_' or '-', starting with a letter or digit")


def _check_tenant_scope(tenant: str, scope: Scope) -> None:
    """Raise ValueError unless ``tenant`` is a valid name for a token of ``scope``."""
    if scope is Scope.ADMIN:
        if tenant != ALL_TENANTS:
            raise ValueError(f"an admin token is for all tenants: use tenant {ALL_TENANTS!r}")
    elif tenant == ALL_TENANTS:
        raise ValueError(f"tenant {ALL_TENANTS!r} (all tenants) needs scope admin")
    elif not is_valid_name(tenant):
        raise ValueError(
            f"invalid tenant name {tenant!r}: 1 to 63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit")


IncarnationOf = Callable[[str], "str | None"]
"""The current incarnation of a tenant; None if it does not exist."""


class TokenAuthority:
    """Issues tokens signed with the ring's signing key and verifies those signed with any
    of its keys, recording each in ``registry`` and binding tenant tokens to their
    tenant's incarnation."""

    def __init__(self, keys: KeyRing, registry: TokenRegistry,
                 incarnation_of: IncarnationOf) -> None:
        self._keys = keys
        self.registry = registry
        self._incarnation_of = incarnation_of

    def issue(self, tenant: str, scope: Scope, ttl_s: int, *,
              branches: tuple[str, ...] | None = None, read_only: bool = False,
              renewed_from: str | None = None) -> str:
        """A new token for ``tenant`` with ``scope``, valid for ``ttl_s`` seconds, recorded
        durably before it is returned. NotFoundError for a tenant that does not exist."""
        _check_tenant_scope(tenant, scope)
        check_branches(branches)
        if not 1 <= ttl_s <= MAX_TTL_S:
            raise ValueError(f"token lifetime {ttl_s} s is outside 1 s .. {MAX_TTL_S} s (10 years)")
        incarnation = ""
        if scope is not Scope.ADMIN:
            found = self._incarnation_of(tenant)
            if found is None:
                raise NotFoundError(f"no tenant {tenant!r}")
            incarnation = found
        now = int(time.time())
        record = TokenRecord(secrets.token_hex(16), tenant, scope.value, branches, read_only,
                             now, now + ttl_s, renewed_from=renewed_from)
        payload: dict[str, Any] = {"tenant": tenant, "scope": scope.value, "iat": now,
                                   "exp": now + ttl_s, "jti": record.token_id}
        if incarnation:
            payload["inc"] = incarnation
        if branches is not None:
            payload["branches"] = list(branches)
        if read_only:
            payload["ro"] = True
        self.registry.add(record)
        return jwt.encode(payload, self._keys.signing_key, algorithm=_ALGORITHM,
                          headers={"kid": self._keys.signing_id})

    def verify(self, token: str) -> Claims:
        """The claims of ``token``; Unauthenticated unless it is well formed, ours, live,
        not revoked, and of its tenant's current incarnation."""
        claims = self._decode(token)
        record = self.registry.get(claims.token_id)
        if record is None:
            raise Unauthenticated("token unknown to the page servers of this object store "
                                  "(issued before they kept a list of their tokens?): create "
                                  "a new one")
        if record.revoked_at is not None:
            raise Unauthenticated(f"token {claims.token_id} was revoked")
        if claims.scope is not Scope.ADMIN:
            current = self._incarnation_of(claims.tenant)
            if current is None:
                raise Unauthenticated(f"the token's tenant {claims.tenant!r} no longer exists")
            if current != claims.incarnation:
                raise Unauthenticated(
                    f"the token is for an earlier tenant {claims.tenant!r}, deleted since and "
                    "created again")
        return claims

    def _decode(self, token: str) -> Claims:
        """The claims of a well-formed, live token signed with one of our keys."""
        if not token:
            raise Unauthenticated("missing token")
        try:
            payload = self._payload(token)
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("token expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise Unauthenticated("token not yet valid") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"token lacks the {exc.claim!r} claim") from exc
        except jwt.InvalidSignatureError as exc:
            raise Unauthenticated("token signature invalid") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise Unauthenticated(f"token algorithm not allowed: use {_ALGORITHM}") from exc
        except jwt.DecodeError as exc:
            raise Unauthenticated("token malformed") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated("token invalid") from exc
        tenant, scope, exp, jti, iat = (payload.get(k)
                                        for k in ("tenant", "scope", "exp", "jti", "iat"))
        branches, read_only, incarnation = (payload.get("branches"), payload.get("ro", False),
                                            payload.get("inc", ""))
        try:
            if not (isinstance(tenant, str) and isinstance(scope, str)
                    and isinstance(exp, int) and isinstance(jti, str) and isinstance(iat, int)
                    and isinstance(read_only, bool) and isinstance(incarnation, str)
                    and (branches is None or (isinstance(branches, list)
                                              and all(isinstance(b, str) for b in branches)))):
                raise ValueError("a claim has the wrong type")
            claims = Claims(tenant=tenant, scope=Scope(scope), expires_at=exp, token_id=jti,
                            branches=tuple(branches) if branches is not None else None,
                            read_only=read_only, incarnation=incarnation, issued_at=iat)
            _check_tenant_scope(claims.tenant, claims.scope)
            check_branches(claims.branches)
        except ValueError as exc:
            raise Unauthenticated("token claims invalid") from exc
        return claims

    def _payload(self, token: str) -> dict[str, Any]:
        """The verified payload: checked with the key the token names, or for a token
        naming none (issued before keys had names) with each key in turn."""
        kid = jwt.get_unverified_header(token).get("kid")
        if kid is not None:
            key = self._keys.key(str(kid))
            if key is None:
                raise Unauthenticated("token signature invalid: signed with a key unknown to this "
                                      "object store")
            candidates = [key]
        else:
            candidates = self._keys.every_key()
        for key in candidates[:-1]:
            try:
                return self._decode_with(token, key)
            except jwt.InvalidSignatureError:
                continue
        return self._decode_with(token, candidates[-1])

    @staticmethod
    def _decode_with(token: str, key: bytes) -> dict[str, Any]:
        payload: dict[str, Any] = jwt.decode(token, key, algorithms=[_ALGORITHM],
                                             options={"require": ["exp", "iat", "jti"]})
        return payload


# ---------------------------------------------------------------- state directory

def _tighten(path: Path, mode: int) -> None:
    """Narrow ``path``'s permissions to ``mode``, warning if they were wider."""
    current = stat.S_IMODE(path.stat().st_mode)
    if current & ~mode:
        log.warning("%s had mode %04o, wider than %04o: fixing it", path, current, mode)
        path.chmod(mode)


def load_or_create(state_dir: Path, storage: RemoteStorage,
                   incarnation_of: IncarnationOf) -> tuple[TokenAuthority, str]:
    """The authority kept in the object store, and the admin token kept in
    ``state_dir/auth``, each created on first use.

    The signing keys and the registry of issued tokens live in ``storage``, shared by
    every page server on it (rfcs/0014); a page server that kept them in its state
    directory (``signing.key``, ``tokens.json``) moves them there on start.
    ``admin.token`` holds an admin token for all tenants valid for ``ADMIN_TTL_S``, mode
    0600 in a 0700 directory; one that no longer verifies (expired, revoked, signed with
    an unknown key) or has less than half its lifetime left is replaced.
    """
    auth_dir = state_dir / "auth"
    auth_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _tighten(auth_dir, 0o700)
    with _locked(auth_dir / "lock"):  # two first starts must agree on one admin token
        keys = KeyRing.in_store(storage, _local_key(auth_dir / "signing.key"))
        registry = TokenRegistry(storage)
        move_local_registry(auth_dir / "tokens.json", registry)
        key_path = auth_dir / "signing.key"
        if key_path.exists():
            key_path.rename(key_path.with_name("signing.key.moved"))
        return _load_admin(auth_dir, TokenAuthority(keys, registry, incarnation_of))


def _local_key(path: Path) -> bytes | None:
    """The signing key a page server kept in its state directory before keys moved to the
    object store; None if it has none (any more)."""
    if not path.exists():
        return None
    _tighten(path, 0o600)
    return path.read_bytes()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created 0600) for the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _load_admin(auth_dir: Path, authority: TokenAuthority) -> tuple[TokenAuthority, str]:
    """``authority`` and a valid admin token, kept in ``auth_dir``."""
    token_path = auth_dir / "admin.token"
    if not token_path.exists():
        token = authority.issue(ALL_TENANTS, Scope.ADMIN, ADMIN_TTL_S)
        write_durably(token_path, token.encode(), 0o600, replace=False)
    _tighten(token_path, 0o600)
    token = token_path.read_text().strip()
    try:
        if authority.verify(token).expires_at - time.time() < ADMIN_TTL_S / 2:
            raise Unauthenticated("less than half of its lifetime left")
    except Unauthenticated as exc:
        log.warning("%s: %s; issuing a new admin token", token_path, exc)
        token = authority.issue(ALL_TENANTS, Scope.ADMIN, ADMIN_TTL_S)
        write_durably(token_path, token.encode(), 0o600)
    return authority, token


# ---------------------------------------------------------------- authorisation

def authorize(claims: Claims, tenant: str | None, method: str,
              branches: frozenset[str] = frozenset()) -> None:
    """Raise PermissionDeniedError unless ``claims`` allow calling ``method`` on ``tenant``
    and ``branches`` (those the request names).

    A read-only token may call only READ_METHODS; a token limited to branches only on them.

    ``method`` is the full gRPC path ("/strata.v1.PageService/GetPages"); ``tenant`` is
    the tenant the request names, None if it names none. Admin tokens may do everything.
    Tenant tokens may call TENANT_METHODS on their own tenant; of these, ListTenants names
    no tenant, so its servicer must list only the token's tenant, and CreateToken's
    servicer must refuse a scope wider than the caller's. Compute tokens may call
    COMPUTE_METHODS on their own tenant.
    """
    if claims.read_only and method not in READ_METHODS:
        raise PermissionDeniedError(f"the token is read-only and {method} writes")
    outside = sorted(b for b in branches if not claims.covers_branch(b))
    if outside:
        raise PermissionDeniedError(
            f"the token is limited to branch {', '.join(claims.branches or ())}, not "
            f"{', '.join(outside)}")
    if claims.scope is Scope.ADMIN and claims.tenant == ALL_TENANTS:
        return
    if claims.scope is Scope.ADMIN or claims.tenant == ALL_TENANTS:
        raise PermissionDeniedError(f"token has tenant {claims.tenant!r} with scope {claims.scope}")
    allowed = TENANT_METHODS if claims.scope is Scope.TENANT else COMPUTE_METHODS
    if method not in allowed:
        raise PermissionDeniedError(f"a {claims.scope} token may not call {method}")
    if tenant is None:
        if method not in TENANTLESS_METHODS:
            raise PermissionDeniedError(f"the request to {method} names no tenant")
    elif tenant != claims.tenant:
        raise PermissionDeniedError(f"the token is for tenant {claims.tenant!r}, not {tenant!r}")


def request_tenant(message: object) -> str | None:
    """The tenant a request names, found through its protobuf descriptor; None if none.

    Looks at a string field ``tenant`` and at the ``tenant`` of each set message field
    (such as ``at`` of page requests or ``open`` of ingest requests). A request naming two
    different tenants is refused with PermissionDeniedError; a non-protobuf object names none.
    """
    if not isinstance(message, Message):
        return None
    named: set[str] = set()
    for field in message.DESCRIPTOR.fields:
        if field.is_repeated:
            continue
        if field.name == "tenant" and field.type == FieldDescriptor.TYPE_STRING:
            named.add(getattr(message, field.name))
        elif field.message_type is not None and message.HasField(field.name):
            inner = field.message_type.fields_by_name.get("tenant")
            if inner is not None and inner.type == FieldDescriptor.TYPE_STRING:
                named.add(getattr(message, field.name).tenant)
    if len(named) > 1:
        raise PermissionDeniedError(f"a request may name one tenant, not {sorted(named)}")
    return named.pop() if named else None


def request_branches(message: object) -> frozenset[str]:
    """The branches a request names: its fields, and those of its set message fields, that
    the contract marks ``(branch_ref)``; an empty one names ``main``."""
    if not isinstance(message, Message):
        return frozenset()
    named: set[str] = set()
    for outer, inner in _branch_fields(message.DESCRIPTOR.full_name):
        if not inner:
            named.add(getattr(message, outer) or MAIN_BRANCH)
        elif message.HasField(outer):
            held = getattr(message, outer)
            named.update(getattr(held, name) or MAIN_BRANCH for name in inner)
    return frozenset(named)


@functools.cache
def _branch_fields(message_name: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Where messages named ``message_name`` name branches: (field, ()) for a field of its
    own, (field, (inner fields...)) for fields of a message field; worked out once per
    message type, as page requests go through this for every page."""
    descriptor = pb.DESCRIPTOR.message_types_by_name.get(message_name.rpartition(".")[2])
    if descriptor is None or descriptor.full_name != message_name:
        return ()
    found: list[tuple[str, tuple[str, ...]]] = []
    for field in descriptor.fields:
        if field.is_repeated:
            continue
        if _names_branch(field):
            found.append((field.name, ()))
        elif field.message_type is not None:
            inner = tuple(f.name for f in field.message_type.fields if _names_branch(f))
            if inner:
                found.append((field.name, inner))
    return tuple(found)


def _names_branch(field: Any) -> bool:
    """Whether the contract marks ``field`` (a field descriptor) ``(branch_ref)``."""
    return bool(dict(field.GetOptions().ListFields()).get(pb.branch_ref, False))


# ---------------------------------------------------------------- gRPC

current_claims: contextvars.ContextVar[Claims | None] = contextvars.ContextVar(
    "current_claims", default=None)
"""The verified claims of the call being served; None outside authenticated calls.

Set by AuthInterceptor while the servicer's behaviour (and its response iterator) runs in
the handling thread; threads a servicer starts itself do not see it.
"""


_HANDLER_FACTORIES: Final[
    dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler[Any, Any]]]
] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


class _CallGuard:
    """Authorises the requests of one authenticated call and runs its behaviour."""

    def __init__(self, claims: Claims, method: str, context: grpc.ServicerContext) -> None:
        self._claims = claims
        self._method = method
        self._context = context
        self._denied: PermissionDeniedError | None = None
        self._run = contextvars.copy_context()
        self._run.run(current_claims.set, claims)

    def check(self, message: object, *, first: bool) -> None:
        """Abort with PERMISSION_DENIED unless the claims cover the tenant ``message`` names.

        After the first message of a stream, a message naming no tenant (an ingest batch)
        belongs to the tenant already authorised for the stream.
        """
        if not isinstance(message, Message):
            return  # bytes that did not parse: the service handler refuses them as invalid
        try:
            tenant = request_tenant(message)
            if first or tenant is not None:
                authorize(self._claims, tenant, self._method, request_branches(message))
        except PermissionDeniedError as exc:
            self._denied = exc
            self._context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))

    def requests(self, requests: Iterator[Any]) -> Iterator[Any]:
        """``requests``, each checked before the servicer receives it."""
        for index, message in enumerate(requests):
            self.check(message, first=index == 0)
            yield message

    def _reassert_denial(self) -> None:
        # A servicer may turn the abort raised inside its request loop into another status
        # or swallow it; a refused stream still ends with PERMISSION_DENIED.
        if self._denied is not None:
            self._context.abort(grpc.StatusCode.PERMISSION_DENIED, str(self._denied))

    def call(self, behaviour: Callable[[Any, grpc.ServicerContext], Any], argument: Any) -> Any:
        """Run a unary-response behaviour with ``current_claims`` set."""
        try:
            response = self._run.run(behaviour, argument, self._context)
        except Exception:
            self._reassert_denial()
            raise
        self._reassert_denial()
        return response

    def stream(self, behaviour: Callable[[Any, grpc.ServicerContext], Iterator[Any]],
               argument: Any) -> Iterator[Any]:
        """Run a streaming-response behaviour, each step with ``current_claims`` set."""
        try:
            responses = iter(self._run.run(behaviour, argument, self._context))
            while True:
                try:
                    response = self._run.run(lambda: next(responses))
                except StopIteration:
                    break
                yield response
        except Exception:
            self._reassert_denial()
            raise
        self._reassert_denial()


class AuthInterceptor(grpc.ServerInterceptor):
    """Refuses calls without a valid bearer token, or naming a tenant the token does not cover.

    Calls to ``open_methods`` (health checking and reflection by default) pass unchecked.
    """

    def __init__(self, authority: TokenAuthority,
                 open_methods: frozenset[str] = DEFAULT_OPEN_METHODS) -> None:
        self._authority = authority
        self._open_methods = open_methods

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """The method's handler, guarded unless the method is open."""
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method in self._open_methods:
            return handler
        return self._guarded(handler, method)

    def _authenticate(self, context: grpc.ServicerContext, method: str) -> Claims:
        """The claims of the call's bearer token; aborts with UNAUTHENTICATED without one."""
        values = [value for key, value in context.invocation_metadata()
                  if key.lower() == HEADER]
        try:
            if not values:
                raise Unauthenticated(
                    "missing bearer token: send metadata 'authorization: Bearer <token>'")
            if len(values) > 1:
                raise Unauthenticated("more than one authorization header")
            scheme, _, token = str(values[0]).partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("the authorization header must be 'Bearer <token>'")
            return self._authority.verify(token.strip())
        except Unauthenticated as exc:
            log.info("refused %s from %s: %s", method, context.peer(), exc)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        except StrataError as exc:  # the tenant left (and where to), the registry unreadable
            abort_with(context, exc)

    def _guarded(self, handler: grpc.RpcMethodHandler[Any, Any],
                 method: str) -> grpc.RpcMethodHandler[Any, Any]:
        """``handler`` rebuilt so each call is authenticated and each request authorised."""
        inner = (handler.unary_unary or handler.unary_stream or handler.stream_unary
                 or handler.stream_stream)
        if inner is None:
            raise TypeError(f"{method}: the method handler has no behaviour")
        streaming_requests = handler.request_streaming
        streaming_responses = handler.response_streaming

        def behaviour(argument: Any, context: grpc.ServicerContext) -> Any:
            guard = _CallGuard(self._authenticate(context, method), method, context)
            if streaming_requests:
                argument = guard.requests(argument)
            else:
                guard.check(argument, first=True)
            if streaming_responses:
                return guard.stream(inner, argument)
            return guard.call(inner, argument)

        factory = _HANDLER_FACTORIES[(streaming_requests, streaming_responses)]
        return factory(behaviour, handler.request_deserializer, handler.response_serializer)
