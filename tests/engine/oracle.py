"""A plain in-memory model of the versioned file tree, used as the oracle of the engine tests."""

from __future__ import annotations

from dataclasses import dataclass

from common.ops import (
    Batch,
    Chmod,
    Create,
    FileKind,
    FileOp,
    Mkdir,
    Rename,
    Rmdir,
    Truncate,
    Unlink,
    Write,
)


class OracleError(Exception):
    """The operation is invalid; the engine must refuse it too."""


@dataclass(frozen=True)
class Entry:
    kind: FileKind
    mode: int
    data: bytes = b""


Tree = dict[str, Entry]


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _is_dir(tree: Tree, path: str) -> bool:
    return path == "" or (path in tree and tree[path].kind == FileKind.DIR)


def _children(tree: Tree, path: str) -> list[str]:
    prefix = path + "/" if path else ""
    return [p for p in tree if p.startswith(prefix)]


def apply_batch(tree: Tree, batch: Batch) -> Tree:
    """The tree after ``batch``, or OracleError if any operation is invalid."""
    new = dict(tree)
    for op in batch.ops:
        _apply(new, op)
    return new


def _apply(tree: Tree, op: FileOp) -> None:
    match op:
        case Create(path, mode):
            if path == "" or path in tree or not _is_dir(tree, _parent(path)):
                raise OracleError(op)
            tree[path] = Entry(FileKind.FILE, mode & 0o7777)
        case Write(path, offset, data):
            entry = _file(tree, path)
            old = entry.data
            if not data:
                return
            new = old[:offset].ljust(offset, b"\0") + data + old[offset + len(data):]
            tree[path] = Entry(entry.kind, entry.mode, new)
        case Truncate(path, size):
            entry = _file(tree, path)
            tree[path] = Entry(entry.kind, entry.mode, entry.data[:size].ljust(size, b"\0"))
        case Unlink(path):
            _file(tree, path)
            del tree[path]
        case Mkdir(path, mode):
            if path == "" or path in tree or not _is_dir(tree, _parent(path)):
                raise OracleError(op)
            tree[path] = Entry(FileKind.DIR, mode & 0o7777)
        case Rmdir(path):
            if path == "" or not _is_dir(tree, path) or _children(tree, path):
                raise OracleError(op)
            del tree[path]
        case Chmod(path, mode):
            if path not in tree:
                raise OracleError(op)
            tree[path] = Entry(tree[path].kind, mode & 0o7777, tree[path].data)
        case Rename(src, dst):
            _rename(tree, src, dst)


def _file(tree: Tree, path: str) -> Entry:
    entry = tree.get(path)
    if entry is None or entry.kind != FileKind.FILE:
        raise OracleError(path)
    return entry


def _rename(tree: Tree, src: str, dst: str) -> None:
    if src == "" or src not in tree:
        raise OracleError(("rename", src, dst))
    if src == dst:
        return
    if not _is_dir(tree, _parent(dst)):
        raise OracleError(("rename", src, dst))
    moving = tree[src]
    target = tree.get(dst) if dst else Entry(FileKind.DIR, 0)
    if moving.kind == FileKind.DIR:
        if dst.startswith(src + "/"):
            raise OracleError(("rename", src, dst))
        if target is not None and (target.kind != FileKind.DIR or _children(tree, dst)):
            raise OracleError(("rename", src, dst))
        for child in _children(tree, src):
            tree[dst + child[len(src):]] = tree.pop(child)
    elif target is not None and target.kind == FileKind.DIR:
        raise OracleError(("rename", src, dst))
    del tree[src]
    tree[dst] = moving
