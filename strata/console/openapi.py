"""The console API's OpenAPI 3.1 document, served at ``/api/openapi.json``.

Written here by hand, one entry per route; ``tests/console/test_api.py`` checks that the
routes of ``strata.console.api`` and the operations here are the same set.
"""

from __future__ import annotations

from typing import Any, Final

_ERROR: Final = {"$ref": "#/components/schemas/Error"}
_OBJECT: Final = {"type": "object"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _strings(*names: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "required": list(required),
            "properties": {name: {"type": "string"} for name in names}}


_SCHEMAS: Final[dict[str, Any]] = {
    "Error": {"type": "object", "required": ["error", "error_description"],
              "properties": {"error": {"type": "string"},
                             "error_description": {"type": "string"}}},
    "Branch": {"type": "object", "description": "`strata branch show --json`",
               "properties": {
                   "name": {"type": "string"}, "parent": {"type": ["string", "null"]},
                   "branch_lsn": {"type": "integer"}, "last_lsn": {"type": "integer"},
                   "created_at": {"type": ["string", "null"]},
                   "expires_at": {"type": ["string", "null"]},
                   "logical_size": {"type": "integer"}, "owned_bytes": {"type": "integer"},
                   "protected": {"type": "boolean"},
                   "children": {"type": "array", "items": {"type": "string"}}}},
    "TreeBranch": {"allOf": [_ref("Branch"), {"type": "object", "properties": {
        "checkpoints": {"type": "array", "items": _ref("Checkpoint")},
        "compute": {"type": ["string", "null"],
                    "description": "running, suspended, stopped, crashed; null: none here"}}}]},
    "Checkpoint": {"type": "object", "properties": {
        "name": {"type": "string"}, "branch": {"type": ["string", "null"]},
        "lsn": {"type": "integer"}, "created_at": {"type": ["string", "null"]},
        "held_bytes": {"type": "integer", "description": "listings and storage only: "
                       "history below the GC cutoff reads at it reach (shared)"},
        "reclaim_bytes": {"type": "integer", "description": "listings and storage only: "
                          "what deleting it alone frees"}}},
    "CheckpointDeletion": {"type": "object", "properties": {
        "checkpoint": {"type": "string"}, "deleted": {"type": ["string", "null"]},
        "dry_run": {"type": "boolean"},
        "freed_bytes": {"type": "integer", "description": "a reset branch's past only it "
                                                          "kept, reclaimed by the delete"},
        "gc_bytes": {"type": "integer", "description": "history only it read, removed by "
                                                       "the next GC"},
        "reclaim_bytes": {"type": "integer"}}},
    "StorageHistory": {"type": "object", "description": "`strata tenant storage --json`",
                       "properties": {
        "period_s": {"type": "number"},
        "samples": {"type": "array", "items": {"type": "object", "properties": {
            "at_us": {"type": "integer"}, "stored_bytes": {"type": "integer"},
            "branches": {"type": "array", "items": _OBJECT},
            "checkpoints": {"type": "array", "items": _OBJECT}}}}}},
    "Deletion": {"type": "object", "properties": {
        "deleted": {"type": "array", "items": {"type": "string"}},
        "checkpoints": {"type": "array", "items": {"type": "string"}},
        "freed_bytes": {"type": "integer"}}},
}

_TENANT: Final = {"name": "tenant", "in": "path", "required": True,
                  "schema": {"type": "string"}}
_BRANCH: Final = {"name": "branch", "in": "path", "required": True,
                  "schema": {"type": "string"}}
_CHECKPOINT: Final = {"name": "checkpoint", "in": "path", "required": True,
                      "schema": {"type": "string"}}


def _flag(name: str, what: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": {"type": "boolean"}, "description": what}


def _query(name: str, what: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": {"type": "string"}, "description": what}


_DELETE_FLAGS: Final = [_flag("cascade", "also the branches forked from it"),
                        _flag("force", "also a protected branch (never main)")]

# (path, method): (summary, parameters, request body schema or None, response schema)
OPERATIONS: Final[dict[tuple[str, str], tuple[str, list[Any], Any, Any]]] = {
    ("/whoami", "get"): ("The token's claims, once the page server accepted it", [],
                         None, _OBJECT),
    ("/tenants", "get"): ("`strata tenant list`: the tenants the token may see", [], None,
                          _OBJECT),
    ("/tenants/{tenant}", "get"): ("`strata tenant show`: usage against quotas", [_TENANT],
                                   None, _OBJECT),
    ("/tenants/{tenant}/branches", "get"): (
        "Branches with their checkpoints and compute state (the tree)", [_TENANT], None,
        {"type": "object", "properties": {
            "branches": {"type": "array", "items": _ref("TreeBranch")},
            "checkpoints": {"type": "array", "items": _ref("Checkpoint")}}}),
    ("/tenants/{tenant}/branches", "post"): (
        "`strata branch create NAME --parent P --ttl T [--at-checkpoint C]`", [_TENANT],
        _strings("name", "parent", "ttl", "at_checkpoint", required=("name",)),
        _ref("Branch")),
    ("/tenants/{tenant}/branches/{branch}", "get"): ("`strata branch show`",
                                                     [_TENANT, _BRANCH], None,
                                                     _ref("Branch")),
    ("/tenants/{tenant}/branches/{branch}", "patch"): (
        "`strata branch set --ttl T`: a TTL from now", [_TENANT, _BRANCH],
        _strings("ttl", required=("ttl",)), _ref("Branch")),
    ("/tenants/{tenant}/branches/{branch}", "delete"): (
        "`strata branch delete --yes`: stops its compute here first",
        [_TENANT, _BRANCH, *_DELETE_FLAGS], None, _ref("Deletion")),
    ("/tenants/{tenant}/branches/{branch}/delete-plan", "get"): (
        "The page server's dry run of that delete: what would go and be freed",
        [_TENANT, _BRANCH, *_DELETE_FLAGS], None, _ref("Deletion")),
    ("/tenants/{tenant}/branches/{branch}/restore", "post"): (
        "`strata branch restore` to a checkpoint, time or LSN; none of them: `branch reset`",
        [_TENANT, _BRANCH],
        {"type": "object", "properties": {
            "checkpoint": {"type": "string"}, "time": {"type": "string"},
            "lsn": {"type": "integer", "minimum": 0}, "preserve_as": {"type": "string"}}},
        _ref("Branch")),
    ("/tenants/{tenant}/checkpoints", "get"): (
        "`strata checkpoint list`: with what each holds and what deleting it frees",
        [_TENANT], None, _OBJECT),
    ("/tenants/{tenant}/checkpoints", "post"): (
        "`strata checkpoint create BRANCH NAME`", [_TENANT],
        _strings("branch", "name", required=("branch", "name")), _ref("Checkpoint")),
    ("/tenants/{tenant}/checkpoints/{checkpoint}", "delete"): (
        "`strata checkpoint delete NAME`: what it freed", [_TENANT, _CHECKPOINT], None,
        _ref("CheckpointDeletion")),
    ("/tenants/{tenant}/checkpoints/{checkpoint}/delete-plan", "get"): (
        "`strata checkpoint delete NAME --dry-run`: what the delete would free",
        [_TENANT, _CHECKPOINT], None, _ref("CheckpointDeletion")),
    ("/tenants/{tenant}/computes", "get"): (
        "`strata compute list`: state, clients, idle time, cache hits, start phases",
        [_TENANT], None, _OBJECT),
    ("/tenants/{tenant}/storage", "get"): (
        "Bytes per branch and per checkpoint, and what deleting each would free",
        [_TENANT], None, _OBJECT),
    ("/tenants/{tenant}/storage/history", "get"): (
        "`strata tenant storage`: bytes per branch and checkpoint over time",
        [_TENANT, _query("since", "only the last DURATION, e.g. 1d")], None,
        _ref("StorageHistory")),
    ("/metrics", "get"): ("The page server's Prometheus figures (admin tokens only)", [],
                          None, _OBJECT),
    ("/audit", "get"): (
        "`strata audit`, filtered; a tenant token: its tenant's entries",
        [_query("since", "only the last DURATION, e.g. 1h"),
         _query("tenant", "only this tenant"),
         _query("action", "only actions containing this text"),
         _query("target", "only targets containing this text")], None, _OBJECT),
}


def document() -> dict[str, Any]:
    """The OpenAPI document of every operation."""
    paths: dict[str, dict[str, Any]] = {}
    for (path, method), (summary, parameters, body, answer) in OPERATIONS.items():
        operation: dict[str, Any] = {
            "summary": summary, "parameters": parameters,
            "responses": {
                "200": {"description": "done",
                        "content": {"application/json": {"schema": answer}}},
                "default": {"description": "refused or failed (401 bad token, 403 not "
                                           "allowed, 404 not found, 409 conflict, 503 page "
                                           "server away)",
                            "content": {"application/json": {"schema": _ERROR}}}}}
        if body is not None:
            operation["requestBody"] = {"required": True,
                                        "content": {"application/json": {"schema": body}}}
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Strata console API", "version": "1",
                 "description": "The operations of the strata CLI over HTTP, on the "
                                "caller's bearer token, which the page server authorises."},
        "servers": [{"url": "/api"}],
        "security": [{"bearer": []}],
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": _SCHEMAS},
        "paths": paths,
    }
