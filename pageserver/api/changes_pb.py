"""A branch's changes (``pageserver.changes``) as the BranchChanges reply."""

from __future__ import annotations

from common.keys import PAGE_SIZE
from pageserver.changes import Changes
from proto import strata_pb2 as pb


def changes_to_pb(found: Changes) -> pb.BranchChangesResponse:
    """The reply for ``found``: one entry per relation, byte counts of whole pages."""
    relations = []
    for item in found.relations:
        name = item.name
        relations.append(pb.RelationChange(
            relation=pb.Relation(spc_oid=item.relation.spc, db_oid=item.relation.db,
                                 rel_number=item.relation.rel, fork=item.relation.fork),
            database=item.database, schema=name.schema if name else "",
            name=name.name if name else "", kind=name.kind if name else "",
            table=name.table if name else "", change=item.change, pages=item.pages,
            writes=item.writes, bytes=item.pages * PAGE_SIZE, oid=name.oid if name else 0))
    pages = sum(item.pages for item in found.relations)
    return pb.BranchChangesResponse(
        since_lsn=found.since_lsn, upto_lsn=found.upto_lsn, relations=relations,
        pages=pages, bytes=pages * PAGE_SIZE, other_pages=found.other_pages,
        layers_read=found.layers_read, complete=found.complete)
