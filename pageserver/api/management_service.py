"""ManagementService: tenants, branches, checkpoints, maintenance, writers, tokens, audit.

Every change is written to the audit log with the token that made it before the reply.
A token limited to branches sees and touches only those: listings are filtered, a
checkpoint or parent it would read through must be on one of them, and tenant-wide
operations (gc, compact, token and audit listings) need a token for the whole tenant.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import grpc

from common.durability import DEFAULT_MAX_LAG_S, STORE, Durability
from common.errors import InvalidArgumentError, NotFoundError, PermissionDeniedError
from common.postgres import pg_bin_dir
from pageserver import gc, importer
from pageserver.api.audit import AuditLog
from pageserver.api.auth import (
    MAX_TTL_S,
    Claims,
    Scope,
    TokenAuthority,
    check_branches,
    current_claims,
)
from pageserver.api.changes_pb import changes_to_pb
from pageserver.api.token_registry import TokenRecord
from pageserver.applied_batch import AppliedBatch
from pageserver.engine import Engine
from pageserver.history import check_history_s
from pageserver.manifest import CheckpointRecord, Quotas
from pageserver.tenant import MAIN_BRANCH, BranchInfo, BranchPoint, BranchSettings, Tenant
from proto import strata_pb2 as pb

log = logging.getLogger(__name__)

_SCOPE_RANK = {Scope.COMPUTE: 0, Scope.TENANT: 1, Scope.ADMIN: 2}
DEFAULT_TOKEN_TTL_S = 24 * 3600
MAX_BRANCH_TTL_S = 100 * 365 * 24 * 3600
MAX_STATEMENT_CHARS = 1000  # what an automatic checkpoint keeps of its statement


class ManagementServicer:
    """Control-plane operations on the engine."""

    def __init__(self, engine: Engine, authority: TokenAuthority, audit: AuditLog,
                 pg_bin_dir: str | None) -> None:
        self._engine = engine
        self._authority = authority
        self._audit = audit
        self._pg_bin_dir = pg_bin_dir

    def _record(self, context: grpc.ServicerContext, action: str, tenant: str,
                target: str = "", **details: object) -> None:
        """Put a change made by the calling token on the audit log."""
        claims = current_claims.get()
        self._audit.record(action, tenant, target,
                           token_id=claims.token_id if claims else "",
                           scope=claims.scope.value if claims else "", peer=context.peer(),
                           **details)

    # --- tenants ---------------------------------------------------------------------

    def _tenant_info(self, tenant: Tenant) -> pb.TenantInfo:
        """A tenant attached here: this page server holds its newest generation."""
        here = self._engine.locations
        return pb.TenantInfo(tenant=tenant.tenant_id, generation=tenant.generation,
                             branches=len(tenant.branch_names()),
                             pageserver_id=here.pageserver_id, address=here.address,
                             here=True)

    def _stored_tenant_info(self, tenant_id: str) -> pb.TenantInfo:
        """A tenant as the object store places it (its newest claim), attached here or not."""
        if tenant_id in self._engine.tenants():
            try:
                return self._tenant_info(self._engine.tenant(tenant_id))
            except NotFoundError:
                pass  # detached meanwhile: the store says where it went
        claim = self._engine.locations.newest(tenant_id)
        if claim is None:
            return pb.TenantInfo(tenant=tenant_id)
        return pb.TenantInfo(tenant=tenant_id, generation=claim.generation,
                             pageserver_id=claim.pageserver_id, address=claim.address,
                             detached=claim.detached)

    def CreateTenant(self, request: pb.CreateTenantRequest,
                     context: grpc.ServicerContext) -> pb.CreateTenantResponse:
        """A new tenant; unless ``empty``, initdb's cluster imported as branch main."""
        bin_dir = None if request.empty else pg_bin_dir(self._pg_bin_dir)
        durability = _durability_from_pb(request.durability)
        if request.history_s:
            check_history_s(request.history_s)  # refused before anything is made
        tenant = self._engine.create_tenant(request.tenant, durability)
        if request.history_s:
            tenant.set_history(request.history_s)
        main = tenant.branch(MAIN_BRANCH)
        if bin_dir is not None:
            try:
                importer.create_cluster(main, bin_dir)
            except Exception:
                self._engine.delete_tenant(request.tenant)
                raise
        self._record(context, "tenant.create", request.tenant, empty=request.empty,
                     durability=durability.mode, max_lag_s=durability.max_lag_s,
                     history_s=request.history_s or None)
        return pb.CreateTenantResponse(tenant=self._tenant_info(tenant), main_lsn=main.durable_lsn)

    def ListTenants(self, request: pb.ListTenantsRequest,
                    context: grpc.ServicerContext) -> pb.ListTenantsResponse:
        claims = current_claims.get()
        if request.all:
            stored = self._engine.locations.tenants_in_store()
            return pb.ListTenantsResponse(tenants=[
                self._stored_tenant_info(t) for t in stored if _may_see(claims, t)])
        visible = [t for t in self._engine.tenants() if _may_see(claims, t)]
        return pb.ListTenantsResponse(
            tenants=[self._tenant_info(self._engine.tenant(t)) for t in visible])

    def DeleteTenant(self, request: pb.DeleteTenantRequest,
                     context: grpc.ServicerContext) -> pb.DeleteTenantResponse:
        self._engine.delete_tenant(request.tenant)
        self._record(context, "tenant.delete", request.tenant)
        return pb.DeleteTenantResponse()

    def AttachTenant(self, request: pb.AttachTenantRequest,
                     context: grpc.ServicerContext) -> pb.AttachTenantResponse:
        """Serve a tenant from the object store at a new generation."""
        tenant = self._engine.attach_tenant(request.tenant, force=request.force)
        self._record(context, "tenant.attach", request.tenant, force=request.force,
                     generation=tenant.generation)
        return pb.AttachTenantResponse(tenant=self._tenant_info(tenant))

    def DetachTenant(self, request: pb.DetachTenantRequest,
                     context: grpc.ServicerContext) -> pb.DetachTenantResponse:
        """Flush a tenant to the object store and stop serving it; its objects stay."""
        self._engine.detach_tenant(request.tenant, force=request.force)
        self._record(context, "tenant.detach", request.tenant, force=request.force)
        return pb.DetachTenantResponse(tenant=self._stored_tenant_info(request.tenant))

    def GetTenant(self, request: pb.GetTenantRequest,
                  context: grpc.ServicerContext) -> pb.GetTenantResponse:
        tenant = self._engine.tenant(request.tenant)
        timelines = list(tenant.timelines.values())
        branches = [tenant.branch(name) for name in tenant.branch_names()]
        owned = sum(t.owned_bytes() for t in timelines)
        window = tenant.default_window()
        return pb.GetTenantResponse(
            tenant=self._tenant_info(tenant), quotas=_quotas_to_pb(tenant.manifest.quotas),
            owned_bytes=owned,
            logical_bytes=sum(t.logical_size() for t in branches),
            stored_bytes=tenant.stored_bytes(),
            durability=_durability_to_pb(tenant.manifest.durability),
            history_s=tenant.manifest.history_s or 0, history_window_s=window.seconds,
            history_window_from=window.source,
            history_bytes=sum(gc.history_bytes(t) for t in timelines), reclaim_bytes=owned)

    def SetQuotas(self, request: pb.SetQuotasRequest,
                  context: grpc.ServicerContext) -> pb.SetQuotasResponse:
        tenant = self._engine.tenant(request.tenant)
        given = request.quotas
        tenant.set_quotas(Quotas(given.max_branches or None, given.max_computes or None,
                                 given.max_ttl_s or None, given.max_storage or None))
        self._record(context, "tenant.quotas", request.tenant,
                     **vars(tenant.manifest.quotas))
        return pb.SetQuotasResponse(quotas=_quotas_to_pb(tenant.manifest.quotas))

    def SetDurability(self, request: pb.SetDurabilityRequest,
                      context: grpc.ServicerContext) -> pb.SetDurabilityResponse:
        """When the tenant's batches are acknowledged from now on (kept with the tenant)."""
        tenant = self._engine.tenant(request.tenant)
        durability = _durability_from_pb(request.durability)
        tenant.set_durability(durability)
        self._record(context, "tenant.durability", request.tenant, mode=durability.mode,
                     max_lag_s=durability.max_lag_s)
        return pb.SetDurabilityResponse(durability=_durability_to_pb(durability))

    def SetHistory(self, request: pb.SetHistoryRequest,
                   context: grpc.ServicerContext) -> pb.SetHistoryResponse:
        """The window of the tenant's branches without their own (kept with the tenant)."""
        tenant = self._engine.tenant(request.tenant)
        tenant.set_history(request.history_s or None)
        self._record(context, "tenant.history", request.tenant,
                     history_s=request.history_s or None)
        window = tenant.default_window()
        return pb.SetHistoryResponse(history_s=tenant.manifest.history_s or 0,
                                     history_window_s=window.seconds,
                                     history_window_from=window.source)

    # --- branches ------------------------------------------------------------------------

    def _branch_info(self, tenant: Tenant, name: str, info: BranchInfo | None = None,
                     *, reclaim: bool = False, history: bool = True,
                     sizes: bool = True) -> pb.BranchInfo:
        """A branch as the API shows it; with ``reclaim``, also what deleting it frees
        (worked out against the tenant's lineage, so single branches only); without
        ``history``, no history_bytes (a walk of its layers); without ``sizes``, none of
        the sizes (the record and the head only)."""
        info = info or tenant.branch_info(name)
        timeline = tenant.branch(name)
        window = tenant.branch_window(name)
        _, wal_lsn, time_us = timeline.last_batch()
        branch = pb.BranchInfo(
            name=info.name, timeline_id=info.timeline_id, parent=info.parent or "",
            branch_lsn=info.branch_lsn, last_lsn=info.last_lsn, last_wal_lsn=wal_lsn,
            last_time_us=time_us, children=list(info.children),
            created_at_us=info.created_at_us, expires_at_us=info.expires_at_us or 0,
            writer_epoch=timeline.writer_epoch, gc_cutoff=timeline.gc_cutoff,
            writer=lease.holder if (lease := timeline.writer_lease.current()) else "",
            suspend_timeout_s=info.suspend_timeout_s or 0, protected=info.protected,
            last_batch=_applied_batch_to_pb(timeline.durable_batch),
            history_s=info.history_s or 0, history_window_s=window.seconds,
            history_window_from=window.source, ephemeral=info.ephemeral,
            lease_s=info.lease_s or 0, undo_off=info.undo_off,
        )
        if sizes:
            branch.logical_size = timeline.logical_size()
            branch.owned_bytes = timeline.owned_bytes()
            branch.history_bytes = gc.history_bytes(timeline) if history else 0
            branch.reclaim_bytes = tenant.reclaimable_bytes(name) if reclaim else 0
        return branch

    def CreateBranch(self, request: pb.CreateBranchRequest,
                     context: grpc.ServicerContext) -> pb.CreateBranchResponse:
        tenant = self._engine.tenant(request.tenant)
        point = _branch_point(request, request.WhichOneof("at"))
        if point.checkpoint is not None:
            _check_covered(tenant.checkpoint(point.checkpoint).branch)
        if request.ttl_s and request.lease_s:
            raise InvalidArgumentError("give a TTL or a lease, not both")
        settings = BranchSettings(
            _expiry(request.ttl_s or request.lease_s), request.suspend_timeout_s or None,
            request.protected, history_s=request.history_s or None,
            ephemeral=request.ephemeral, lease_s=request.lease_s or None,
            undo_off=request.undo_off)
        tenant.create_branch(request.name, request.parent or MAIN_BRANCH, point,
                             settings=settings)
        self._record(context, "branch.create", request.tenant, request.name,
                     parent=request.parent or MAIN_BRANCH, ttl_s=request.ttl_s,
                     lease_s=request.lease_s, protected=request.protected,
                     checkpoint=point.checkpoint, history_s=request.history_s or None,
                     ephemeral=request.ephemeral)
        return pb.CreateBranchResponse(branch=self._branch_info(tenant, request.name))

    def ListBranches(self, request: pb.ListBranchesRequest,
                     context: grpc.ServicerContext) -> pb.ListBranchesResponse:
        """Branches by name from after ``page_token`` (the last name of the page before),
        at most ``page_size`` of them (0: all); history bytes only if asked for."""
        tenant = self._engine.tenant(request.tenant)
        claims = current_claims.get()
        names = sorted(name for name in tenant.branch_names()
                       if (claims is None or claims.covers_branch(name))
                       and name > request.page_token)
        more = 0 < request.page_size < len(names)
        if more:
            names = names[:request.page_size]
        infos = tenant.branch_infos(names)
        return pb.ListBranchesResponse(branches=[
            self._branch_info(tenant, info.name, info, history=request.history_bytes)
            for info in infos
        ], next_page_token=names[-1] if more else "")

    def BranchChanges(self, request: pb.BranchChangesRequest,
                      context: grpc.ServicerContext) -> pb.BranchChangesResponse:
        """What the branch wrote after a point, by relation, from its layers."""
        tenant = self._engine.tenant(request.tenant)
        which = request.WhichOneof("since")
        if which == "checkpoint":
            _check_covered(tenant.checkpoint(request.checkpoint).branch)
        since = None if which is None else _branch_point(request, which)
        return changes_to_pb(tenant.changes(request.branch, since))

    def GetBranch(self, request: pb.GetBranchRequest,
                  context: grpc.ServicerContext) -> pb.GetBranchResponse:
        """A branch with its sizes, or (``head_only``) without them."""
        tenant = self._engine.tenant(request.tenant)
        return pb.GetBranchResponse(branch=self._branch_info(
            tenant, request.name, reclaim=True, sizes=not request.head_only))

    def RestoreBranch(self, request: pb.RestoreBranchRequest,
                      context: grpc.ServicerContext) -> pb.RestoreBranchResponse:
        tenant = self._engine.tenant(request.tenant)
        which = request.WhichOneof("to")
        if which is None:
            raise InvalidArgumentError("say where to restore to: an LSN, a WAL position, a "
                                       "time, a checkpoint, or the parent's latest state")
        point = None if which == "parent_latest" else _branch_point(request, which)
        if point is None:  # a reset reads the parent's newest state
            _check_covered(tenant.branch_info(request.name).parent)
        elif point.checkpoint is not None:
            _check_covered(tenant.checkpoint(point.checkpoint).branch)
        _, preserved = tenant.restore_branch(request.name, point, request.preserve_as or None)
        self._record(context, "branch.reset" if point is None else "branch.restore",
                     request.tenant, request.name, to=which,
                     point=getattr(request, which), preserved_as=preserved)
        return pb.RestoreBranchResponse(branch=self._branch_info(tenant, request.name),
                                        preserved_as=preserved or "")

    def UpdateBranch(self, request: pb.UpdateBranchRequest,
                     context: grpc.ServicerContext) -> pb.UpdateBranchResponse:
        tenant = self._engine.tenant(request.tenant)
        changes: dict[str, object] = {}
        if request.HasField("ttl_s"):
            changes["expires_at_us"] = _expiry(request.ttl_s)
        if request.HasField("suspend_timeout_s"):
            changes["suspend_timeout_s"] = request.suspend_timeout_s or None
        if request.HasField("protected"):
            changes["protected"] = request.protected
        if request.HasField("history_s"):
            changes["history_s"] = request.history_s or None
        if request.HasField("undo_off"):
            changes["undo_off"] = request.undo_off
        if request.renew_lease:
            if "expires_at_us" in changes:
                raise InvalidArgumentError("renew a lease or set a TTL, not both")
            changes["renew_lease"] = True
        tenant.update_branch(request.name, changes)
        self._record(context, "branch.update", request.tenant, request.name, **changes)
        return pb.UpdateBranchResponse(branch=self._branch_info(tenant, request.name))

    def DeleteBranch(self, request: pb.DeleteBranchRequest,
                     context: grpc.ServicerContext) -> pb.DeleteBranchResponse:
        tenant = self._engine.tenant(request.tenant)
        claims = current_claims.get()
        if request.cascade and claims is not None and claims.branches is not None:
            # a token limited to branches deletes none beyond them
            planned = tenant.delete_branch(request.name, cascade=True, force=request.force,
                                           dry_run=True)
            for name in planned.branches:
                _check_covered(name)
        deletion = tenant.delete_branch(request.name, cascade=request.cascade,
                                        force=request.force, dry_run=request.dry_run)
        if not request.dry_run:
            self._record(context, "branch.delete", request.tenant, request.name,
                         deleted=deletion.branches, checkpoints=deletion.checkpoints)
        return pb.DeleteBranchResponse(deleted=deletion.branches,
                                       checkpoints=deletion.checkpoints,
                                       freed_bytes=deletion.freed_bytes)

    # --- checkpoints -------------------------------------------------------------------------

    def _checkpoint_info(self, name: str, record: CheckpointRecord) -> pb.CheckpointInfo:
        return pb.CheckpointInfo(name=name, branch=record.branch or "",
                                 timeline_id=record.timeline_id, lsn=record.lsn,
                                 created_at_us=record.created_at_us,
                                 statement=record.statement or "",
                                 expires_at_us=record.expires_at_us or 0)

    def CreateCheckpoint(self, request: pb.CreateCheckpointRequest,
                         context: grpc.ServicerContext) -> pb.CreateCheckpointResponse:
        tenant = self._engine.tenant(request.tenant)
        if len(request.statement) > MAX_STATEMENT_CHARS:
            raise InvalidArgumentError(
                f"a checkpoint's statement is at most {MAX_STATEMENT_CHARS} characters")
        record = tenant.create_checkpoint(request.branch, request.name,
                                          request.lsn if request.at_lsn else None,
                                          request.statement or None, _expiry(request.ttl_s))
        self._record(context, "checkpoint.create", request.tenant, request.name,
                     branch=request.branch, lsn=record.lsn,
                     automatic=bool(request.statement))
        return pb.CreateCheckpointResponse(
            checkpoint=self._checkpoint_info(request.name, record))

    def ListCheckpoints(self, request: pb.ListCheckpointsRequest,
                        context: grpc.ServicerContext) -> pb.ListCheckpointsResponse:
        tenant = self._engine.tenant(request.tenant)
        claims = current_claims.get()
        records = sorted((name, record) for name, record in tenant.manifest.checkpoints.items()
                         if claims is None or claims.covers_branch(record.branch or ""))
        costs = tenant.checkpoint_costs([name for name, _ in records]) if request.sizes else {}
        infos = [self._checkpoint_info(name, record) for name, record in records]
        for info in infos:
            if (cost := costs.get(info.name)) is not None:
                info.held_bytes, info.reclaim_bytes = cost.held_bytes, cost.reclaim_bytes
        return pb.ListCheckpointsResponse(checkpoints=infos)

    def DeleteCheckpoint(self, request: pb.DeleteCheckpointRequest,
                         context: grpc.ServicerContext) -> pb.DeleteCheckpointResponse:
        """Delete a checkpoint (or with dry_run only say what that frees)."""
        tenant = self._engine.tenant(request.tenant)
        _check_covered(tenant.checkpoint(request.name).branch)
        cost = tenant.checkpoint_costs([request.name]).get(request.name)
        if cost is None:
            raise NotFoundError(f"no checkpoint {request.name!r} in tenant {request.tenant!r}")
        if not request.dry_run:
            tenant.delete_checkpoint(request.name)
            self._record(context, "checkpoint.delete", request.tenant, request.name)
        return pb.DeleteCheckpointResponse(freed_bytes=cost.freed_bytes, gc_bytes=cost.gc_bytes)

    def StorageHistory(self, request: pb.StorageHistoryRequest,
                       context: grpc.ServicerContext) -> pb.StorageHistoryResponse:
        """The tenant's sampled bytes over time; a token limited to branches sees theirs."""
        self._engine.tenant(request.tenant)  # NotFoundError, TenantElsewhereError
        claims = current_claims.get()

        def covered(branch: str) -> bool:
            return claims is None or claims.covers_branch(branch)

        samples = self._engine.storage_history.read(request.tenant, request.since_us)
        return pb.StorageHistoryResponse(period_s=self._engine.config.storage_sample_period_s,
                                         samples=[pb.StorageSample(
            at_us=taken.at_us, stored_bytes=taken.stored_bytes,
            branches=[pb.BranchBytes(**vars(b)) for b in taken.branches if covered(b.name)],
            checkpoints=[pb.CheckpointBytes(**vars(c)) for c in taken.checkpoints
                         if covered(c.branch)],
        ) for taken in samples])

    # --- maintenance ---------------------------------------------------------------------

    def Gc(self, request: pb.GcRequest, context: grpc.ServicerContext) -> pb.GcResponse:
        _check_whole_tenant("collect garbage")
        result = self._engine.gc(request.tenant, explain=True)
        self._engine.sample_storage(request.tenant)  # what GC left, in the history
        return pb.GcResponse(
            timelines=result.timelines, layers_removed=result.layers_removed,
            bytes_removed=result.bytes_removed,
            history_window_s=self._engine.config.pitr_window_s,
            reports=[pb.GcTimelineReport(
                history_window_s=report.window.seconds,
                history_window_from=report.window.source,
                timeline_id=report.timeline_id, branches=report.branches,
                cutoff_lsn=report.result.cutoff, layers_removed=report.result.layers_removed,
                bytes_removed=report.result.bytes_removed, current_bytes=report.kept.current,
                window_bytes=report.kept.window, checkpoint_bytes=report.kept.checkpoints,
                branch_point_bytes=report.kept.branch_points, pinned_by=report.kept.pinned_by,
            ) for report in result.reports])

    def Compact(self, request: pb.CompactRequest,
                context: grpc.ServicerContext) -> pb.CompactResponse:
        _check_whole_tenant("compact")
        self._engine.flush(request.tenant)
        result = self._engine.compact(request.tenant, force=request.force)
        self._engine.sample_storage(request.tenant)
        return pb.CompactResponse(l0_merged=result.l0_merged, l1_written=result.l1_written,
                                  images_written=result.images_written)

    # --- writers and tokens ----------------------------------------------------------------

    def AttachWriter(self, request: pb.AttachWriterRequest,
                     context: grpc.ServicerContext) -> pb.AttachWriterResponse:
        timeline = self._engine.timeline(request.tenant, request.branch or MAIN_BRANCH)
        epoch = timeline.attach_writer(request.holder, request.force)
        return pb.AttachWriterResponse(writer_epoch=epoch, lsn=timeline.durable_lsn,
                                       lease_ms=int(timeline.writer_lease.lease_s * 1000))

    def RenewWriter(self, request: pb.RenewWriterRequest,
                    context: grpc.ServicerContext) -> pb.RenewWriterResponse:
        timeline = self._engine.timeline(request.tenant, request.branch or MAIN_BRANCH)
        timeline.renew_writer(request.holder, request.writer_epoch)
        return pb.RenewWriterResponse(lease_ms=int(timeline.writer_lease.lease_s * 1000))

    def DetachWriter(self, request: pb.DetachWriterRequest,
                     context: grpc.ServicerContext) -> pb.DetachWriterResponse:
        timeline = self._engine.timeline(request.tenant, request.branch or MAIN_BRANCH)
        timeline.writer_lease.release(request.writer_epoch)
        if request.writer_epoch == timeline.writer_epoch:
            timeline.freeze()
            timeline.flush()
        return pb.DetachWriterResponse()

    def CreateToken(self, request: pb.CreateTokenRequest,
                    context: grpc.ServicerContext) -> pb.CreateTokenResponse:
        try:
            scope = Scope(request.scope)
        except ValueError as exc:
            raise InvalidArgumentError(
                f"unknown scope {request.scope!r}: use admin, tenant or compute") from exc
        claims = current_claims.get()
        ttl = request.ttl_s or DEFAULT_TOKEN_TTL_S
        branches = tuple(request.branches) or None
        try:
            check_branches(branches)
        except ValueError as exc:
            raise InvalidArgumentError(str(exc)) from exc
        if claims is not None:
            if _SCOPE_RANK[scope] > _SCOPE_RANK[claims.scope]:
                raise PermissionDeniedError(
                    f"a {claims.scope} token cannot create a {scope} token")
            if claims.branches is not None:  # never wider than the caller's
                branches = branches or claims.branches
                for name in branches:
                    _check_covered(name)
            ttl = min(ttl, max(1, claims.expires_at - int(time.time())))  # never outlive it
        if scope is Scope.ADMIN and (branches or request.read_only):
            raise InvalidArgumentError("an admin token covers everything: a token limited to "
                                       "branches or to reading needs scope tenant or compute")
        return self._issue(context, "token.create", request.tenant, scope, ttl,
                           branches=branches, read_only=request.read_only)

    def _issue(self, context: grpc.ServicerContext, action: str, tenant: str, scope: Scope,
               ttl: int, **limits: Any) -> pb.CreateTokenResponse:
        """Issue a token, audited; its id and expiry come back with it."""
        try:
            token = self._authority.issue(tenant, scope, ttl, **limits)
        except ValueError as exc:
            raise InvalidArgumentError(str(exc)) from exc
        issued = self._authority.verify(token)
        self._record(context, action, tenant, issued.token_id, issued_scope=scope.value,
                     branches=list(issued.branches or ()), read_only=issued.read_only,
                     expires_at=issued.expires_at)
        return pb.CreateTokenResponse(token=token, expires_at=issued.expires_at,
                                      token_id=issued.token_id)

    def RenewToken(self, request: pb.RenewTokenRequest,
                   context: grpc.ServicerContext) -> pb.CreateTokenResponse:
        """A token with the caller's claims, for as long as the caller's was issued for:
        how a compute, whose tokens are short-lived, keeps working for days. A revoked
        token cannot renew, so revoking a compute's token ends it within that lifetime."""
        claims = _claims()
        ttl = min(max(1, claims.expires_at - claims.issued_at), MAX_TTL_S)
        return self._issue(context, "token.renew", claims.tenant, claims.scope, ttl,
                           branches=claims.branches, read_only=claims.read_only,
                           renewed_from=claims.token_id)

    def ListTokens(self, request: pb.ListTokensRequest,
                   context: grpc.ServicerContext) -> pb.ListTokensResponse:
        _check_whole_tenant("list tokens")
        claims = current_claims.get()
        return pb.ListTokensResponse(tokens=[
            _token_info(record) for record in self._authority.registry.records()
            if _may_see(claims, record.tenant)])

    def RevokeToken(self, request: pb.RevokeTokenRequest,
                    context: grpc.ServicerContext) -> pb.RevokeTokenResponse:
        """Refuse a token from now on (for good); a tenant token revokes its tenant's."""
        _check_whole_tenant("revoke tokens")
        record = self._authority.registry.get(request.token_id)
        if record is None or not _may_see(current_claims.get(), record.tenant):
            raise NotFoundError(f"no token {request.token_id!r} that this token may revoke")
        record = self._authority.registry.revoke(request.token_id)
        self._record(context, "token.revoke", record.tenant, record.token_id,
                     revoked_scope=record.scope)
        return pb.RevokeTokenResponse(token=_token_info(record))

    def ReadAudit(self, request: pb.ReadAuditRequest,
                  context: grpc.ServicerContext) -> pb.ReadAuditResponse:
        """Audit entries since ``since_us``; a tenant token sees only its tenant's."""
        _check_whole_tenant("read the audit log")
        claims = current_claims.get()
        return pb.ReadAuditResponse(entries=[
            pb.AuditEntry(**vars(entry)) for entry in self._audit.entries(request.since_us)
            if _may_see(claims, entry.tenant)])


def _claims() -> Claims:
    """The caller's claims; every call reaching a servicer has them."""
    claims = current_claims.get()
    if claims is None:
        raise PermissionDeniedError("no token verified for this call")
    return claims


def _check_covered(branch: str | None) -> None:
    """PermissionDeniedError unless the caller's token covers ``branch`` (None: unknown,
    which only a token for every branch covers)."""
    claims = current_claims.get()
    if claims is not None and claims.branches is not None and (
            branch is None or not claims.covers_branch(branch)):
        raise PermissionDeniedError(
            f"the token is limited to branch {', '.join(claims.branches)}, not "
            f"{branch or 'an unknown branch'}")


def _check_whole_tenant(what: str) -> None:
    """PermissionDeniedError if the caller's token is limited to branches."""
    claims = current_claims.get()
    if claims is not None and claims.branches is not None:
        raise PermissionDeniedError(f"a token limited to branches cannot {what}")


def _token_info(record: TokenRecord) -> pb.TokenInfo:
    return pb.TokenInfo(token_id=record.token_id, tenant=record.tenant, scope=record.scope,
                        branches=list(record.branches or ()), read_only=record.read_only,
                        created_at=record.created_at, expires_at=record.expires_at,
                        revoked_at=record.revoked_at or 0,
                        renewed_from=record.renewed_from or "")


def _may_see(claims: Claims | None, tenant: str) -> bool:
    return claims is not None and claims.tenant in ("*", tenant)


def _expiry(ttl_s: int) -> int | None:
    """Microseconds since the epoch ``ttl_s`` from now; None for 0 (never)."""
    if ttl_s > MAX_BRANCH_TTL_S:
        raise InvalidArgumentError(f"a TTL of {ttl_s} s is longer than {MAX_BRANCH_TTL_S} s "
                                   "(100 years): to keep a branch forever, give no TTL")
    return time.time_ns() // 1000 + ttl_s * 1_000_000 if ttl_s else None


def _applied_batch_to_pb(batch: AppliedBatch) -> pb.AppliedBatch:
    return pb.AppliedBatch(writer_epoch=batch.writer_epoch, batch_id=batch.batch_id,
                           lsn=batch.lsn)


def _durability_from_pb(given: pb.Durability) -> Durability:
    """The setting a request asks for; InvalidArgumentError for a mode or lag out of range."""
    return Durability(given.mode or STORE, given.max_lag_s or DEFAULT_MAX_LAG_S)


def _durability_to_pb(durability: Durability) -> pb.Durability:
    return pb.Durability(mode=durability.mode, max_lag_s=durability.max_lag_s,
                         description=durability.describe())


def _quotas_to_pb(quotas: Quotas) -> pb.Quotas:
    return pb.Quotas(max_branches=quotas.max_branches or 0,
                     max_computes=quotas.max_computes or 0, max_ttl_s=quotas.max_ttl_s or 0,
                     max_storage=quotas.max_storage or 0)


def _branch_point(request: pb.CreateBranchRequest | pb.RestoreBranchRequest
                  | pb.BranchChangesRequest, which: str | None) -> BranchPoint:
    """The engine's point for the request's field ``which`` of its oneof (None: the newest)."""
    return BranchPoint(
        lsn=request.lsn if which == "lsn" else None,
        wal_lsn=request.wal_lsn if which == "wal_lsn" else None,
        time_us=request.time_us if which == "time_us" else None,
        checkpoint=request.checkpoint if which == "checkpoint" else None,
    )
