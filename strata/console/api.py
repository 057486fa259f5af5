"""The console's JSON API: each endpoint the same client calls (and the same local
orchestration) as the CLI command it stands for, on the caller's token.

Handlers run in a worker thread (the page server's client blocks); what they return is
the JSON body, failures become the answers of ``strata.console.access.error_response``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio.to_thread
import grpc
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from common.client import NEWEST, ClientError, HistoryPoint
from common.durations import parse_duration_s
from proto import strata_pb2 as pb
from strata.cli.commands import audit, branches, checkpoints, tenants
from strata.cli.render import branch_dict, checkpoint_dict, storage_history_dict, tenant_dict
from strata.cli.units import parse_time_us
from strata.console import figures
from strata.console.access import ApiError, caller, client, error_response, require_tenant
from strata.console.access import session as session_of
from strata.local import computes
from strata.local.home import Home
from strata.mcp.caller import ALL_TENANTS

MAX_BODY_BYTES: Final = 64 * 1024
MAX_PLANNED: Final = 200  # branches whose delete the storage view asks the server to plan
AUDIT_LIMIT: Final = 1000  # newest entries the audit endpoint returns

Work = Callable[[Request, dict[str, Any]], dict[str, Any]]


def endpoint(work: Work) -> Callable[[Request], Awaitable[Response]]:
    """An ASGI endpoint running ``work(request, body)`` in a thread; its dict as JSON."""
    async def handle(request: Request) -> Response:
        try:
            body = await _body(request)
            result = await anyio.to_thread.run_sync(work, request, body)
        except Exception as exc:  # error_response raises what it does not know again
            return error_response(exc)
        return JSONResponse(result)

    handle.__doc__ = work.__doc__
    return handle


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object a POST or PATCH carries ({} for other methods)."""
    if request.method not in ("POST", "PATCH"):
        return {}
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"the body has {len(raw)} bytes, at most {MAX_BODY_BYTES}")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise ApiError(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _text(body: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise ApiError(400, f"{key!r} is required")
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{key!r} must be a string")
    return value


def _ttl_s(text: str) -> int:
    seconds = parse_duration_s(text)
    if seconds <= 0:
        raise ApiError(400, "ttl must be positive, e.g. 2h")
    return seconds


def _path(request: Request, name: str) -> str:
    return str(request.path_params[name])


# --- who, tenants --------------------------------------------------------------------

def whoami(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """The token's claims, as the page server accepted it."""
    who = caller(request)
    return {"tenant": None if who.tenant == ALL_TENANTS else who.tenant,
            "admin": who.tenant == ALL_TENANTS, "scope": who.scope,
            "token_id": who.token_id, "branches": list(who.branches or []) or None,
            "read_only": who.read_only}


def list_tenants(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """`strata tenant list`: the tenants the token may see."""
    with client(session_of(request, "")) as strata:
        return {"tenants": [tenant_dict(t) for t in strata.list_tenants()]}


def show_tenant(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """`strata tenant show`: usage against quotas."""
    session = session_of(request, _path(request, "tenant"))
    with client(session) as strata:
        return tenants.tenant_usage(session, session.tenant, strata.get_tenant(session.tenant))


# --- branches and checkpoints ----------------------------------------------------------

def _compute_states(home: Home, tenant: str) -> dict[str, str]:
    """The state of each of the tenant's computes on this machine, by branch."""
    proxy = computes.proxy_view(home)
    return {node.spec.branch: computes.describe(node, proxy)["status"]
            for node in computes.listing(home, tenant)}


def _covered(request: Request, branch: str) -> bool:
    """Whether the caller's token reaches ``branch`` (one limited to branches: only
    those), for what the console reads on this machine rather than from the page server."""
    limited = caller(request).branches
    return limited is None or branch in limited


def list_branches(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """`strata branch list` and `checkpoint list` together: the tree's data, with each
    branch's checkpoints and compute state."""
    session = session_of(request, _path(request, "tenant"))
    with client(session) as strata:
        found = strata.list_branches(session.tenant)
        marks = strata.list_checkpoints(session.tenant)
    states = _compute_states(session.home, session.tenant)
    documents = []
    for info in found:
        document = branch_dict(info)
        document["checkpoints"] = [checkpoint_dict(c) for c in marks if c.branch == info.name]
        document["compute"] = states.get(info.name)
        documents.append(document)
    return {"tenant": session.tenant, "now_us": time.time_ns() // 1000,
            "branches": documents, "checkpoints": [checkpoint_dict(c) for c in marks]}


def show_branch(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """`strata branch show`."""
    session = session_of(request, _path(request, "tenant"))
    with client(session) as strata:
        return branch_dict(strata.get_branch(session.tenant, _path(request, "branch")))


def create_branch(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """`strata branch create NAME --parent P --ttl T [--at-checkpoint C]`."""
    session = session_of(request, _path(request, "tenant"))
    name = _text(body, "name")
    assert name is not None
    ttl = _text(body, "ttl", required=False)
    checkpoint = _text(body, "at_checkpoint", required=False)
    with client(session) as strata:
        info = strata.create_branch(
            session.tenant, name, parent=_text(body, "parent", required=False) or "main",
            at=HistoryPoint(checkpoint=checkpoint) if checkpoint else NEWEST,
            ttl_s=_ttl_s(ttl) if ttl else 0)
    return branch_dict(info)


def update_branch(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """`strata branch set NAME --ttl T`: the TTL from now (extend or shorten it)."""
    session = session_of(request, _path(request, "tenant"))
    ttl = _text(body, "ttl")
    assert ttl is not None
    with client(session) as strata:
        info = branches.update_locked(session, strata, _path(request, "branch"),
                                      ttl_s=_ttl_s(ttl))
    return branch_dict(info)


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")


def _deletion(response: pb.DeleteBranchResponse) -> dict[str, Any]:
    return {"deleted": list(response.deleted), "checkpoints": list(response.checkpoints),
            "freed_bytes": response.freed_bytes}


def delete_branch(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """`strata branch delete NAME [--cascade] [--force] --yes`: the page asked first."""
    session = session_of(request, _path(request, "tenant"))
    with client(session) as strata:
        done = branches.delete_stopping(session, strata, _path(request, "branch"),
                                        cascade=_flag(request, "cascade"),
                                        force=_flag(request, "force"),
                                        confirm_plan=lambda plan: None)
    return _deletion(done)


def plan_delete(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """The server's dry run of a delete: what it would remove and free."""
    session = session_of(request, _path(request, "tenant"))
    with client(session) as strata:
        plan = strata.delete_branch(session.tenant, _path(request, "branch"),
                                    cascade=_flag(request, "cascade"),
                                    force=_flag(request, "force"), dry_run=True)
    return _deletion(plan)


def restore_branch(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """`strata branch restore NAME --to-checkpoint C | --to-time T | --to-lsn N` (none of
    them: `strata branch reset`), its compute here paused around it."""
    session = session_of(request, _path(request, "tenant"))
    lsn = body.get("lsn")
    if lsn is not None and (not isinstance(lsn, int) or lsn < 0):
        raise ApiError(400, "'lsn' must be a non-negative integer")
    at_time = _text(body, "time", required=False)
    point = HistoryPoint(lsn=lsn, time_us=parse_time_us(at_time) if at_time else None,
                         checkpoint=_text(body, "checkpoint", required=False))
    if point.ways_given > 1:
        raise ApiError(400, "give at most one of checkpoint, time and lsn (none: reset)")
    with client(session) as strata:
        response, restarted = branches.restore_paused(
            session, strata, _path(request, "branch"), point,
            _text(body, "preserve_as", required=False))
    return {**branch_dict(response.branch), "preserved_as": response.preserved_as or None,
            "compute_restarted": restarted}


def list_checkpoints(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """`strata checkpoint list`: with what each holds and what deleting it frees."""
    session = session_of(request, _path(request, "tenant"))
    with client(session) as strata:
        return {"checkpoints": [checkpoint_dict(c, sizes=True) for c in
                                strata.list_checkpoints(session.tenant, sizes=True)]}


def create_checkpoint(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """`strata checkpoint create BRANCH NAME`."""
    session = session_of(request, _path(request, "tenant"))
    branch, name = _text(body, "branch"), _text(body, "name")
    assert branch is not None and name is not None
    with client(session) as strata:
        return checkpoint_dict(strata.create_checkpoint(session.tenant, branch, name))


def delete_checkpoint(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """`strata checkpoint delete NAME`: what it freed."""
    return _checkpoint_deletion(request, dry_run=False)


def plan_checkpoint_delete(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """`strata checkpoint delete NAME --dry-run`: what the delete would free."""
    return _checkpoint_deletion(request, dry_run=True)


def _checkpoint_deletion(request: Request, *, dry_run: bool) -> dict[str, Any]:
    session = session_of(request, _path(request, "tenant"))
    name = _path(request, "checkpoint")
    with client(session) as strata:
        done = strata.delete_checkpoint(session.tenant, name, dry_run=dry_run)
    return checkpoints.checkpoint_deletion_dict(name, done, dry_run=dry_run)


# --- computes, storage -----------------------------------------------------------------

def list_computes(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """`strata compute list`: the tenant's computes on this machine, with what the proxy
    saw of them and the phases of their last start."""
    session = session_of(request, _path(request, "tenant"))
    with client(session) as strata:
        require_tenant(strata, session.tenant)
    proxy = computes.proxy_view(session.home)
    documents = []
    for node in computes.listing(session.home, session.tenant):
        if not _covered(request, node.spec.branch):
            continue
        full = computes.describe(node, proxy)
        cache = (full["stats"] or {}).get("cache") or {}
        lookups = cache.get("hits", 0) + cache.get("misses", 0)
        documents.append({
            "branch": full["branch"], "status": full["status"], "clients": full["clients"],
            "idle_s": full["idle_s"], "started_at": full["started_at"],
            "cache_mb": full["cache_mb"], "cache_hits": cache.get("hits", 0),
            "cache_lookups": lookups,
            "cache_hit_ratio": round(cache["hits"] / lookups, 4) if lookups else None,
            "start_timings": node.start_timings or None})
    return {"tenant": session.tenant, "computes": documents}


def storage(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """Bytes per branch and per checkpoint, and what deleting each would free: the page
    server's own sizes, `checkpoint list` and `branch delete --cascade --dry-run`. A
    token that may not delete a branch (read-only, or limited to branches that leaves
    some below it) gets the page server's refusal in that row instead of a plan."""
    session = session_of(request, _path(request, "tenant"))
    rows = []
    with client(session) as strata:
        usage = tenants.tenant_usage(session, session.tenant, strata.get_tenant(session.tenant))
        found = strata.list_branches(session.tenant)
        marks = strata.list_checkpoints(session.tenant, sizes=True)
        for number, info in enumerate(found):
            plan, refused = None, None
            if number < MAX_PLANNED and info.name != "main":
                try:
                    plan = _deletion(strata.delete_branch(session.tenant, info.name,
                                                          cascade=True, force=True,
                                                          dry_run=True))
                except ClientError as exc:
                    if exc.code != grpc.StatusCode.PERMISSION_DENIED:
                        raise
                    refused = exc.message
            rows.append({"name": info.name, "parent": info.parent or None,
                         "logical_size": info.logical_size, "owned_bytes": info.owned_bytes,
                         "history_bytes": info.history_bytes,
                         "checkpoints": [c.name for c in marks if c.branch == info.name],
                         "delete": plan, "delete_refused": refused})
    return {"tenant": session.tenant, "now_us": time.time_ns() // 1000, "usage": usage,
            "branches": rows,
            "checkpoints": [checkpoint_dict(c, sizes=True) for c in marks]}


def storage_history(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """`strata tenant storage [--since D]`: each branch's and checkpoint's bytes over
    time, as the page server sampled them."""
    session = session_of(request, _path(request, "tenant"))
    since = request.query_params.get("since", "")
    since_us = time.time_ns() // 1000 - parse_duration_s(since) * 1_000_000 if since else 0
    with client(session) as strata:
        return storage_history_dict(session.tenant,
                                    strata.storage_history(session.tenant, since_us))


# --- the page server, the audit log ----------------------------------------------------

def server_metrics(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """The page server's Prometheus figures (all tenants together: admin tokens only)."""
    if caller(request).tenant != ALL_TENANTS:
        raise ApiError(403, "the page server's figures cover every tenant: they need an "
                            "admin token")
    settings = request.app.state.settings
    address = settings.metrics or str((settings.home.ready_info() or {}).get("metrics", ""))
    if not address:
        raise ApiError(503, "the page server publishes no metrics address")
    return {"at_us": time.time_ns() // 1000, "address": address,
            "figures": figures.read(address)}


def audit_log(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """`strata audit [--since D] [--tenant T]`, filtered by action and target text, the
    newest ``AUDIT_LIMIT``. A tenant token sees its tenant's entries only, this
    machine's logs included."""
    who = caller(request)
    query = request.query_params
    since = query.get("since", "")
    since_us = time.time_ns() // 1000 - parse_duration_s(since) * 1_000_000 if since else 0
    tenant = query.get("tenant", "")
    if who.tenant != ALL_TENANTS:
        if tenant and tenant != who.tenant:
            raise ApiError(403, f"the token is for tenant {who.tenant!r}, not {tenant!r}")
        tenant = who.tenant
    session = session_of(request, tenant or "")
    with client(session) as strata:
        if who.tenant != ALL_TENANTS:
            require_tenant(strata, who.tenant)
        entries = audit.collect(session, strata, since_us)
    action, target = query.get("action", ""), query.get("target", "")
    kept = [entry for entry in entries
            if (not tenant or entry["tenant"] == tenant)
            and (not action or action in entry["action"])
            and (not target or target in (entry["target"] or ""))]
    return {"entries": kept[-AUDIT_LIMIT:], "total": len(kept)}


ROUTES: Final = [
    Route("/whoami", endpoint(whoami), methods=["GET"]),
    Route("/tenants", endpoint(list_tenants), methods=["GET"]),
    Route("/tenants/{tenant}", endpoint(show_tenant), methods=["GET"]),
    Route("/tenants/{tenant}/branches", endpoint(list_branches), methods=["GET"]),
    Route("/tenants/{tenant}/branches", endpoint(create_branch), methods=["POST"]),
    Route("/tenants/{tenant}/branches/{branch}", endpoint(show_branch), methods=["GET"]),
    Route("/tenants/{tenant}/branches/{branch}", endpoint(update_branch), methods=["PATCH"]),
    Route("/tenants/{tenant}/branches/{branch}", endpoint(delete_branch), methods=["DELETE"]),
    Route("/tenants/{tenant}/branches/{branch}/delete-plan", endpoint(plan_delete),
          methods=["GET"]),
    Route("/tenants/{tenant}/branches/{branch}/restore", endpoint(restore_branch),
          methods=["POST"]),
    Route("/tenants/{tenant}/checkpoints", endpoint(list_checkpoints), methods=["GET"]),
    Route("/tenants/{tenant}/checkpoints", endpoint(create_checkpoint), methods=["POST"]),
    Route("/tenants/{tenant}/checkpoints/{checkpoint}", endpoint(delete_checkpoint),
          methods=["DELETE"]),
    Route("/tenants/{tenant}/checkpoints/{checkpoint}/delete-plan",
          endpoint(plan_checkpoint_delete), methods=["GET"]),
    Route("/tenants/{tenant}/computes", endpoint(list_computes), methods=["GET"]),
    Route("/tenants/{tenant}/storage", endpoint(storage), methods=["GET"]),
    Route("/tenants/{tenant}/storage/history", endpoint(storage_history), methods=["GET"]),
    Route("/metrics", endpoint(server_metrics), methods=["GET"]),
    Route("/audit", endpoint(audit_log), methods=["GET"]),
]
