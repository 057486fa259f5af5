"""A typed client of the page server: its management API, health check and the compute's
page and ingest calls.

It attaches the bearer token to every call, applies a per-call deadline (long ones for
calls that run initdb or compaction), and turns ``grpc.RpcError`` into ``ClientError``
carrying the status code and the server's message. Every call goes through the generated
stubs, so a renamed RPC fails type checking, not a run. The CLI, the proxy and the compute
use it, so none of them names a method by its path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from common.bearer import call_credentials_metadata
from common.errors import TENANT_LOCATION
from proto import strata_pb2 as pb
from proto import strata_pb2_grpc as pb_grpc

DEFAULT_TIMEOUT_S: Final = 30.0
LIST_PAGE_SIZE: Final = 500  # branches per ListBranches call: a reply stays a few 100 KB
LONG_TIMEOUT_S: Final = 600.0  # initdb + import, tenant attach and detach, compaction, GC
MAX_MESSAGE_BYTES: Final = 128 * 1024 * 1024
# What gRPC says when no connection could be made at all (as opposed to a server's UNAVAILABLE).
_CONNECT_FAILURES: Final = ("failed to connect to all addresses", "connection refused",
                            "errors resolving", "dns resolution failed")

_Response = TypeVar("_Response", bound=Message)
log = logging.getLogger(__name__)


class ClientError(Exception):
    """A failed call: the gRPC status and the server's message; ``location``: the address
    the server named for a tenant that moved there ("" if none)."""

    def __init__(self, code: grpc.StatusCode, message: str, method: str,
                 location: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.method = method
        self.location = location


def moved_to(exc: grpc.RpcError) -> str:
    """The address a failed call's trailing metadata names for its tenant ("" if none)."""
    if not isinstance(exc, grpc.Call):
        return ""
    return next((str(value) for key, value in exc.trailing_metadata() or ()
                 if key == TENANT_LOCATION), "")


class ServerUnreachable(ClientError):
    """No connection to the page server could be made (not running, wrong address)."""

    def __init__(self, address: str, detail: str, method: str) -> None:
        super().__init__(grpc.StatusCode.UNAVAILABLE, f"cannot reach {address}: {detail}", method)
        self.address = address


@dataclass(frozen=True)
class HistoryPoint:
    """A point of a branch's history, given at most one way; none given: the newest."""

    lsn: int | None = None
    wal_lsn: int | None = None
    time_us: int | None = None
    checkpoint: str | None = None

    @property
    def ways_given(self) -> int:
        """How many ways the point is given (the server takes one; none means the newest)."""
        ways = (self.lsn, self.wal_lsn, self.time_us, self.checkpoint)
        return sum(way is not None for way in ways)

    def set_in(self, request: pb.CreateBranchRequest | pb.RestoreBranchRequest
               | pb.BranchChangesRequest) -> bool:
        """Set the request's field of this point (the first way given); False if none is."""
        if self.lsn is not None:
            request.lsn = self.lsn
        elif self.wal_lsn is not None:
            request.wal_lsn = self.wal_lsn
        elif self.time_us is not None:
            request.time_us = self.time_us
        elif self.checkpoint is not None:
            request.checkpoint = self.checkpoint
        else:
            return False
        return True


NEWEST: Final = HistoryPoint()


class StrataClient:
    """One channel to a page server; every RPC Strata's clients make as a typed method."""

    def __init__(self, address: str, token: str | None = None, *,
                 timeout_s: float = DEFAULT_TIMEOUT_S, follow_moves: bool = False) -> None:
        self.timeout_s = timeout_s
        self.follow_moves = follow_moves
        self.token = token or ""  # the framed data plane sends it in its HELLO (rfcs/0020)
        self._metadata = call_credentials_metadata(token) if token else ()
        self._lock = threading.Lock()
        self._channels: list[grpc.Channel] = []
        self._connect(address)

    def _connect(self, address: str) -> None:
        """Send every later call to ``address``. Channels to earlier addresses stay open
        until ``close``: a stream still on one ends by itself (its server refuses it)."""
        channel = grpc.insecure_channel(address, options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ])
        with self._lock:
            self.address = address
            self._channels.append(channel)
            # The generated stubs are untyped: mypy checks their RPCs by name only.
            self._manage = pb_grpc.ManagementServiceStub(channel)  # type: ignore[no-untyped-call]
            self._pages = pb_grpc.PageServiceStub(channel)  # type: ignore[no-untyped-call]
            self._ingest = pb_grpc.IngestServiceStub(channel)  # type: ignore[no-untyped-call]
            self._health = health_pb2_grpc.HealthStub(channel)

    def follow(self, exc: grpc.RpcError) -> bool:
        """If ``exc`` says the tenant moved to another page server, send every later call
        there; whether it did. (A compute's client follows its tenant; the CLI's does not:
        an operator asked one page server.)"""
        return self.follow_to(moved_to(exc))

    def follow_to(self, address: str) -> bool:
        """Send every later call to ``address``, where a page server said the tenant is
        now (from gRPC's trailing metadata or a framed ERROR); False if it is "" or the
        current address."""
        if not address or address == self.address:
            return False
        log.info("the tenant moved from %s to %s: following it", self.address, address)
        self._connect(address)
        return True

    def close(self) -> None:
        with self._lock:
            channels, self._channels = self._channels, []
        for channel in channels:
            channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def _unary(self, rpc: Callable[..., Any], request: Message,
               response_type: type[_Response], timeout_s: float | None = None) -> _Response:
        """Call a stub's unary ``rpc``, answered with ``response_type``; a failure becomes
        ClientError naming the method (each request message is named after its RPC)."""
        method = type(request).__name__.removesuffix("Request")
        try:
            response = rpc(request, metadata=self._metadata, timeout=timeout_s or self.timeout_s)
        except grpc.RpcError as exc:
            raise self._error(exc, method) from None
        if not isinstance(response, response_type):
            raise TypeError(f"{method} answered {type(response).__name__}, "
                            f"not {response_type.__name__}")
        return response

    def _error(self, exc: grpc.RpcError, method: str) -> ClientError:
        if self.follow_moves:
            self.follow(exc)
        code, detail = exc.code(), exc.details() or ""
        if code is grpc.StatusCode.UNAVAILABLE and any(
                marker in detail.lower() for marker in _CONNECT_FAILURES):
            return ServerUnreachable(self.address, detail, method)
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            detail = f"no answer from the page server at {self.address} to {method} in time"
        return ClientError(code, detail or code.name.lower().replace("_", " "), method,
                           moved_to(exc))

    # --- health --------------------------------------------------------------------

    def health(self, timeout_s: float = 2.0) -> str:
        """The server's overall health status name (SERVING, NOT_SERVING, ...); needs no token."""
        check = self._health.Check  # type: ignore[attr-defined]  # missing from its type stub
        response = self._unary(check, health_pb2.HealthCheckRequest(service=""),
                               health_pb2.HealthCheckResponse, timeout_s)
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    # --- tenants -------------------------------------------------------------------

    def create_tenant(self, tenant: str, *, empty: bool = False,
                      durability: pb.Durability | None = None,
                      history_s: int = 0) -> pb.CreateTenantResponse:
        """Create ``tenant``; unless ``empty`` the server runs initdb and imports it as main.
        ``durability``: when its batches are acknowledged (unset: once in the store);
        ``history_s``: the history window of its branches (0: the server's default)."""
        request = pb.CreateTenantRequest(tenant=tenant, empty=empty, durability=durability,
                                         history_s=history_s)
        return self._unary(self._manage.CreateTenant, request, pb.CreateTenantResponse,
                           LONG_TIMEOUT_S)

    def list_tenants(self, *, all_in_store: bool = False) -> list[pb.TenantInfo]:
        """The tenants this page server serves; with ``all_in_store``, every tenant of its
        object store and where each is attached."""
        request = pb.ListTenantsRequest(all=all_in_store)
        return list(self._unary(self._manage.ListTenants, request,
                                pb.ListTenantsResponse).tenants)

    def attach_tenant(self, tenant: str, *, force: bool = False) -> pb.TenantInfo:
        """Serve ``tenant`` from the object store; ``force`` takes it from a page server
        that never stopped or detached it (one gone for good). Needs an admin token."""
        request = pb.AttachTenantRequest(tenant=tenant, force=force)
        return self._unary(self._manage.AttachTenant, request, pb.AttachTenantResponse,
                           LONG_TIMEOUT_S).tenant

    def detach_tenant(self, tenant: str, *, force: bool = False) -> pb.TenantInfo:
        """Flush ``tenant`` to the object store and stop serving it; ``force`` fences the
        computes writing to it. Needs an admin token."""
        request = pb.DetachTenantRequest(tenant=tenant, force=force)
        return self._unary(self._manage.DetachTenant, request, pb.DetachTenantResponse,
                           LONG_TIMEOUT_S).tenant

    def get_tenant(self, tenant: str) -> pb.GetTenantResponse:
        """The tenant, its quotas and its storage use."""
        return self._unary(self._manage.GetTenant, pb.GetTenantRequest(tenant=tenant),
                           pb.GetTenantResponse)

    def set_quotas(self, tenant: str, quotas: pb.Quotas) -> pb.Quotas:
        """Replace the tenant's quotas (0: unlimited); needs an admin token."""
        request = pb.SetQuotasRequest(tenant=tenant, quotas=quotas)
        return self._unary(self._manage.SetQuotas, request, pb.SetQuotasResponse).quotas

    def set_durability(self, tenant: str, durability: pb.Durability) -> pb.Durability:
        """When the tenant's batches are acknowledged from now on; needs an admin token."""
        request = pb.SetDurabilityRequest(tenant=tenant, durability=durability)
        return self._unary(self._manage.SetDurability, request,
                           pb.SetDurabilityResponse).durability

    def set_history(self, tenant: str, history_s: int) -> pb.SetHistoryResponse:
        """The history window of the tenant's branches without their own (0: the page
        server's default); needs an admin token."""
        request = pb.SetHistoryRequest(tenant=tenant, history_s=history_s)
        return self._unary(self._manage.SetHistory, request, pb.SetHistoryResponse)

    def delete_tenant(self, tenant: str) -> None:
        self._unary(self._manage.DeleteTenant, pb.DeleteTenantRequest(tenant=tenant),
                    pb.DeleteTenantResponse, LONG_TIMEOUT_S)

    # --- branches ------------------------------------------------------------------

    def create_branch(self, tenant: str, name: str, *, parent: str = "",
                      at: HistoryPoint = NEWEST, ttl_s: int = 0, suspend_timeout_s: int = 0,
                      protected: bool = False, history_s: int = 0,
                      ephemeral: bool = False, lease_s: int = 0,
                      undo_off: bool = False) -> pb.BranchInfo:
        """Branch ``parent`` (default main) at the point ``at`` of its history;
        ``history_s``: its history window (0: the default); ``ephemeral``: a time-travel
        endpoint's hidden branch; with ``lease_s`` it expires unless renewed
        (``renew_lease``)."""
        request = pb.CreateBranchRequest(tenant=tenant, name=name, parent=parent, ttl_s=ttl_s,
                                         suspend_timeout_s=suspend_timeout_s,
                                         protected=protected, history_s=history_s,
                                         ephemeral=ephemeral, lease_s=lease_s,
                                         undo_off=undo_off)
        at.set_in(request)
        return self._unary(self._manage.CreateBranch, request, pb.CreateBranchResponse).branch

    def restore_branch(self, tenant: str, name: str, *, to: HistoryPoint = NEWEST,
                       preserve_as: str = "") -> pb.RestoreBranchResponse:
        """Put ``name`` back to the point ``to`` of its history; with none, reset it to its
        parent's newest state."""
        request = pb.RestoreBranchRequest(tenant=tenant, name=name, preserve_as=preserve_as)
        if not to.set_in(request):
            request.parent_latest = True
        return self._unary(self._manage.RestoreBranch, request, pb.RestoreBranchResponse)

    def list_branches(self, tenant: str, *, limit: int | None = None,
                      page_size: int = LIST_PAGE_SIZE,
                      history_bytes: bool = False) -> list[pb.BranchInfo]:
        """The tenant's branches by name, the first ``limit`` of them (None: all), fetched a
        page of ``page_size`` at a time; their history bytes (a walk of each one's
        layers) only with ``history_bytes``."""
        branches: list[pb.BranchInfo] = []
        token = ""
        while limit is None or len(branches) < limit:
            size = page_size if limit is None else min(page_size, limit - len(branches))
            request = pb.ListBranchesRequest(tenant=tenant, page_size=size, page_token=token,
                                             history_bytes=history_bytes)
            page = self._unary(self._manage.ListBranches, request, pb.ListBranchesResponse)
            branches.extend(page.branches)
            token = page.next_page_token
            if not token:
                break
        return branches

    def branch_changes(self, tenant: str, branch: str,
                       since: HistoryPoint = NEWEST) -> pb.BranchChangesResponse:
        """What ``branch`` wrote after the point ``since`` (none given: its branch point)."""
        request = pb.BranchChangesRequest(tenant=tenant, branch=branch)
        since.set_in(request)
        return self._unary(self._manage.BranchChanges, request, pb.BranchChangesResponse,
                           timeout_s=LONG_TIMEOUT_S)

    def get_branch(self, tenant: str, name: str, *, timeout_s: float | None = None,
                   head_only: bool = False) -> pb.BranchInfo:
        """A branch with its sizes; with ``head_only``, its record and head only (LSNs,
        settings), a read that walks no layers."""
        request = pb.GetBranchRequest(tenant=tenant, name=name, head_only=head_only)
        return self._unary(self._manage.GetBranch, request, pb.GetBranchResponse,
                           timeout_s).branch

    def update_branch(self, tenant: str, name: str, *, ttl_s: int | None = None,
                      suspend_timeout_s: int | None = None,
                      protected: bool | None = None,
                      history_s: int | None = None, undo_off: bool | None = None,
                      renew_lease: bool = False) -> pb.BranchInfo:
        """Change what is given: TTL from now (0: none), suspend timeout, protection,
        history window (0: the default), automatic checkpoints off; or move a leased
        branch's expiry a lease ahead."""
        request = pb.UpdateBranchRequest(tenant=tenant, name=name, renew_lease=renew_lease)
        if history_s is not None:
            request.history_s = history_s
        if undo_off is not None:
            request.undo_off = undo_off
        if ttl_s is not None:
            request.ttl_s = ttl_s
        if suspend_timeout_s is not None:
            request.suspend_timeout_s = suspend_timeout_s
        if protected is not None:
            request.protected = protected
        return self._unary(self._manage.UpdateBranch, request, pb.UpdateBranchResponse).branch

    def delete_branch(self, tenant: str, name: str, *, cascade: bool = False,
                      force: bool = False, dry_run: bool = False) -> pb.DeleteBranchResponse:
        """Delete ``name`` (and with ``cascade`` its descendants); the branches,
        checkpoints and bytes that went (with ``dry_run``: would go; nothing is deleted)."""
        request = pb.DeleteBranchRequest(tenant=tenant, name=name, cascade=cascade, force=force,
                                         dry_run=dry_run)
        return self._unary(self._manage.DeleteBranch, request, pb.DeleteBranchResponse)

    # --- checkpoints ---------------------------------------------------------------

    def create_checkpoint(self, tenant: str, branch: str, name: str,
                          lsn: int | None = None, statement: str = "",
                          ttl_s: int = 0) -> pb.CheckpointInfo:
        """Pin ``branch`` at ``lsn`` (default: its newest durable LSN) as ``name``; an
        automatic one names its ``statement`` and expires after ``ttl_s``."""
        request = pb.CreateCheckpointRequest(tenant=tenant, branch=branch, name=name,
                                             lsn=lsn or 0, at_lsn=lsn is not None,
                                             statement=statement, ttl_s=ttl_s)
        return self._unary(self._manage.CreateCheckpoint, request,
                           pb.CreateCheckpointResponse).checkpoint

    def list_checkpoints(self, tenant: str, *, sizes: bool = False) -> list[pb.CheckpointInfo]:
        """The tenant's checkpoints; with ``sizes``, what each holds and would free."""
        request = pb.ListCheckpointsRequest(tenant=tenant, sizes=sizes)
        return list(self._unary(self._manage.ListCheckpoints, request,
                                pb.ListCheckpointsResponse, LONG_TIMEOUT_S if sizes else None)
                    .checkpoints)

    def delete_checkpoint(self, tenant: str, name: str, *,
                          dry_run: bool = False) -> pb.DeleteCheckpointResponse:
        """Delete checkpoint ``name``; the bytes that frees (with ``dry_run``: would free,
        nothing is deleted)."""
        request = pb.DeleteCheckpointRequest(tenant=tenant, name=name, dry_run=dry_run)
        return self._unary(self._manage.DeleteCheckpoint, request, pb.DeleteCheckpointResponse)

    def storage_history(self, tenant: str, since_us: int = 0) -> pb.StorageHistoryResponse:
        """The tenant's sampled storage over time, oldest first."""
        request = pb.StorageHistoryRequest(tenant=tenant, since_us=since_us)
        return self._unary(self._manage.StorageHistory, request, pb.StorageHistoryResponse)

    # --- maintenance ---------------------------------------------------------------

    def gc(self, tenant: str) -> pb.GcResponse:
        return self._unary(self._manage.Gc, pb.GcRequest(tenant=tenant), pb.GcResponse,
                           LONG_TIMEOUT_S)

    def compact(self, tenant: str, *, force: bool = False) -> pb.CompactResponse:
        return self._unary(self._manage.Compact, pb.CompactRequest(tenant=tenant, force=force),
                           pb.CompactResponse, LONG_TIMEOUT_S)

    # --- writers and tokens --------------------------------------------------------

    def attach_writer(self, tenant: str, branch: str, *, holder: str = "",
                      force: bool = False) -> pb.AttachWriterResponse:
        """Become the branch's only writer: a new writer epoch (older ones are fenced).

        Refused while another ``holder`` keeps a live lease, unless ``force``.
        """
        request = pb.AttachWriterRequest(tenant=tenant, branch=branch, holder=holder,
                                         force=force)
        return self._unary(self._manage.AttachWriter, request, pb.AttachWriterResponse)

    def renew_writer(self, tenant: str, branch: str, writer_epoch: int, holder: str) -> int:
        """Heartbeat of the writer lease; the lease length in ms."""
        request = pb.RenewWriterRequest(tenant=tenant, branch=branch, writer_epoch=writer_epoch,
                                        holder=holder)
        return int(self._unary(self._manage.RenewWriter, request,
                               pb.RenewWriterResponse).lease_ms)

    def detach_writer(self, tenant: str, branch: str, writer_epoch: int) -> None:
        request = pb.DetachWriterRequest(tenant=tenant, branch=branch, writer_epoch=writer_epoch)
        self._unary(self._manage.DetachWriter, request, pb.DetachWriterResponse, LONG_TIMEOUT_S)

    def create_token(self, tenant: str, scope: str, ttl_s: int = 0, *,
                     branches: tuple[str, ...] = (), read_only: bool = False
                     ) -> pb.CreateTokenResponse:
        """A token for ``tenant`` ("*" for admin) with ``scope``, limited to ``branches``
        (empty: all) and to reading if asked; ttl 0: the server's default."""
        request = pb.CreateTokenRequest(tenant=tenant, scope=scope, ttl_s=ttl_s,
                                        branches=list(branches), read_only=read_only)
        return self._unary(self._manage.CreateToken, request, pb.CreateTokenResponse)

    def renew_token(self, tenant: str) -> pb.CreateTokenResponse:
        """A new token like this client's, for ``tenant`` (its token's; "*" for admin),
        which the client uses from now on: calls and streams opened later carry it."""
        response = self._unary(self._manage.RenewToken, pb.RenewTokenRequest(tenant=tenant),
                               pb.CreateTokenResponse)
        self._metadata = call_credentials_metadata(response.token)
        self.token = response.token
        return response

    def list_tokens(self) -> list[pb.TokenInfo]:
        """The tokens the page server issued that this client's token may see."""
        return list(self._unary(self._manage.ListTokens, pb.ListTokensRequest(),
                                pb.ListTokensResponse).tokens)

    def revoke_token(self, token_id: str) -> pb.TokenInfo:
        """Refuse token ``token_id`` from now on."""
        return self._unary(self._manage.RevokeToken, pb.RevokeTokenRequest(token_id=token_id),
                           pb.RevokeTokenResponse).token

    def read_audit(self, since_us: int = 0) -> list[pb.AuditEntry]:
        """Audit log entries since ``since_us`` that this client's token may see."""
        return list(self._unary(self._manage.ReadAudit, pb.ReadAuditRequest(since_us=since_us),
                                pb.ReadAuditResponse, LONG_TIMEOUT_S).entries)

    # --- pages and ingest (the compute) --------------------------------------------

    def list_files(self, tenant: str, branch: str,
                   timeout_s: float | None = None) -> pb.ListFilesResponse:
        """The branch's file tree at its newest durable LSN."""
        request = pb.ListFilesRequest(at=pb.ReadPoint(tenant=tenant, branch=branch, latest=True))
        return self._unary(self._pages.ListFiles, request, pb.ListFilesResponse, timeout_s)

    def open_page_stream(self, requests: Iterator[pb.GetPagesRequest]
                         ) -> Iterator[pb.GetPagesResponse]:
        """A GetPages stream answering ``requests`` in order; no deadline (it lives long)."""
        responses: Iterator[pb.GetPagesResponse] = self._pages.GetPages(
            requests, metadata=self._metadata)
        return responses

    def open_ingest_stream(self, requests: Iterator[pb.IngestRequest]
                           ) -> Iterator[pb.IngestResponse]:
        """An Ingest stream acknowledging ``requests`` in order; no deadline (it lives long)."""
        responses: Iterator[pb.IngestResponse] = self._ingest.Ingest(
            requests, metadata=self._metadata)
        return responses
