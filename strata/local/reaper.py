"""Deletes branches whose TTL or lease has passed: their compute is stopped first, then the
branch and its storage go; and expired checkpoints (the automatic ones of undo). Run by
the proxy, the process that owns this machine's computes.

A leased branch (``branch create --lease``) is one whose expiry each ``branch renew``
moves a lease ahead: the same expiry, so the same deletion once nobody renews it.

A branch that others were forked from is left alone (and logged): deleting it would take
them too. ``main`` is created without a TTL and never expires. The listing only nominates
candidates: each is read again under its branch's lock right before it is deleted, so a
branch whose TTL was extended, or which was deleted and made again under the same name,
after the listing is kept. A time-travel endpoint's hidden branch (``ephemeral``) is
kept while its compute runs: the proxy stops that compute once idle, and the next pass
deletes the branch.
"""

from __future__ import annotations

import logging
import time

import grpc

from common.client import ClientError, StrataClient
from proto import strata_pb2 as pb
from strata.local import computes
from strata.local.home import Home

log = logging.getLogger("strata.local.reaper")


def reap_expired(home: Home, client: StrataClient, now_us: int | None = None) -> list[str]:
    """Delete every expired branch and checkpoint of every tenant; ``tenant/branch`` of
    the branches deleted."""
    now_us = now_us if now_us is not None else time.time_ns() // 1000
    deleted: list[str] = []
    for tenant in client.list_tenants():
        _reap_checkpoints(client, tenant.tenant, now_us)
        for listed in client.list_branches(tenant.tenant):
            if not listed.expires_at_us or listed.expires_at_us > now_us:
                continue
            # Under the branch's lock, so no client wakes the compute in between.
            with computes.branch_lock(computes.workdir(home, tenant.tenant, listed.name)):
                try:
                    branch = client.get_branch(tenant.tenant, listed.name)
                except ClientError as exc:
                    if exc.code != grpc.StatusCode.NOT_FOUND:
                        log.warning("could not read expired branch %s/%s: %s", tenant.tenant,
                                    listed.name, exc.message)
                    continue
                if not _reapable(tenant.tenant, branch, now_us):
                    continue  # as it is now: TTL extended, made again, forked, protected
                if branch.ephemeral and computes.find_running(home, tenant.tenant,
                                                              branch.name) is not None:
                    continue  # an endpoint in use: the proxy stops it once idle
                computes.forget(home, tenant.tenant, [branch.name])
                try:
                    client.delete_branch(tenant.tenant, branch.name)
                except ClientError as exc:
                    log.warning("could not delete expired branch %s/%s: %s", tenant.tenant,
                                branch.name, exc.message)
                    continue
                computes.forget_deleted(home, tenant.tenant, [branch.name])
            log.info("deleted expired branch %s/%s", tenant.tenant, branch.name)
            deleted.append(f"{tenant.tenant}/{branch.name}")
    return deleted


def _reap_checkpoints(client: StrataClient, tenant: str, now_us: int) -> None:
    """Delete the tenant's checkpoints whose expiry has passed (gone already: fine)."""
    for checkpoint in client.list_checkpoints(tenant):
        if not checkpoint.expires_at_us or checkpoint.expires_at_us > now_us:
            continue
        try:
            client.delete_checkpoint(tenant, checkpoint.name)
        except ClientError as exc:
            if exc.code != grpc.StatusCode.NOT_FOUND:
                log.warning("could not delete expired checkpoint %s of %s: %s",
                            checkpoint.name, tenant, exc.message)
            continue
        log.info("deleted expired checkpoint %s of %s/%s", checkpoint.name, tenant,
                 checkpoint.branch)


def _reapable(tenant: str, branch: pb.BranchInfo, now_us: int) -> bool:
    """Whether ``branch`` may be reaped now: past its TTL, not protected, no children."""
    if not branch.expires_at_us or branch.expires_at_us > now_us:
        return False
    if branch.protected:
        return False  # cannot happen (protected branches refuse a TTL); never reap them
    if branch.children:
        log.warning("branch %s/%s expired but %s were forked from it: kept",
                    tenant, branch.name, ", ".join(branch.children))
        return False
    return True
