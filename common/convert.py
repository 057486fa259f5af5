"""Conversions between protobuf messages and the wire types both sides of the API use."""

from __future__ import annotations

from common.errors import InvalidArgumentError
from common.keys import Relation
from common.ops import (
    MAX_OPS_PER_BATCH,
    Batch,
    Chmod,
    Create,
    FileKind,
    FileMeta,
    FileOp,
    Mkdir,
    Rename,
    Rmdir,
    Truncate,
    Unlink,
    Write,
)
from proto import strata_pb2 as pb


def relation_from_pb(message: pb.Relation) -> Relation:
    fields = (message.spc_oid, message.db_oid, message.rel_number)
    if message.fork > 0xFF:
        raise InvalidArgumentError(f"fork number {message.fork} is out of range")
    return Relation(*fields, message.fork)


def relation_to_pb(relation: Relation) -> pb.Relation:
    return pb.Relation(spc_oid=relation.spc, db_oid=relation.db, rel_number=relation.rel,
                       fork=relation.fork)


def file_info(path: str, meta: FileMeta) -> pb.FileInfo:
    info = pb.FileInfo(
        path=path, size=meta.size, mode=meta.mode, block_offset=meta.block_offset,
        mtime_us=meta.mtime_us,
        kind=pb.FILE_KIND_FILE if meta.kind == FileKind.FILE else pb.FILE_KIND_DIR,
    )
    if meta.relation:
        info.relation.CopyFrom(relation_to_pb(Relation.from_bytes(meta.relation)))
    return info


def batch_from_pb(message: pb.IngestBatch) -> Batch:
    if len(message.ops) >= MAX_OPS_PER_BATCH:
        raise InvalidArgumentError(f"batch has {len(message.ops)} operations")
    return Batch(tuple(op_from_pb(op) for op in message.ops), message.wal_lsn,
                 message.timestamp_us, batch_id=message.batch_id)


def op_from_pb(message: pb.FileOp) -> FileOp:
    which = message.WhichOneof("op")
    if which == "write":
        return Write(message.write.path, message.write.offset, message.write.data)
    if which == "truncate":
        return Truncate(message.truncate.path, message.truncate.size)
    if which == "create":
        chosen = (relation_from_pb(message.create.relation).to_bytes()
                  if message.create.HasField("relation") else b"")
        return Create(message.create.path, message.create.mode, chosen)
    if which == "unlink":
        return Unlink(message.unlink.path)
    if which == "rename":
        return Rename(message.rename.src, message.rename.dst)
    if which == "mkdir":
        return Mkdir(message.mkdir.path, message.mkdir.mode)
    if which == "rmdir":
        return Rmdir(message.rmdir.path)
    if which == "chmod":
        return Chmod(message.chmod.path, message.chmod.mode)
    raise InvalidArgumentError("file operation with no operation set")


def op_to_pb(op: FileOp) -> pb.FileOp:
    """The protobuf form of a file operation (used by clients such as the compute shim)."""
    match op:
        case Write(path, offset, data):
            return pb.FileOp(write=pb.WriteOp(path=path, offset=offset, data=data))
        case Truncate(path, size):
            return pb.FileOp(truncate=pb.TruncateOp(path=path, size=size))
        case Create(path, mode, relation):
            create = pb.CreateOp(path=path, mode=mode)
            if relation:
                create.relation.CopyFrom(relation_to_pb(Relation.from_bytes(relation)))
            return pb.FileOp(create=create)
        case Unlink(path):
            return pb.FileOp(unlink=pb.UnlinkOp(path=path))
        case Rename(src, dst):
            return pb.FileOp(rename=pb.RenameOp(src=src, dst=dst))
        case Mkdir(path, mode):
            return pb.FileOp(mkdir=pb.MkdirOp(path=path, mode=mode))
        case Rmdir(path):
            return pb.FileOp(rmdir=pb.RmdirOp(path=path))
        case Chmod(path, mode):
            return pb.FileOp(chmod=pb.ChmodOp(path=path, mode=mode))
    raise InvalidArgumentError(f"unknown operation {op!r}")
