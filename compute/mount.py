"""``python -m compute.mount``: attach as a branch's writer and serve its PGDATA over FUSE.

Runs in the foreground until unmounted (``fusermount3 -u``); on the way
out it ships every queued change, saves the page cache stamped with the branch's
LSN, and releases the writer epoch. Starts as root to mount (``allow_other``, so that
PostgreSQL, running as the tenant's user, can use it; ``default_permissions``, so the
kernel keeps everyone else out) and, with ``--run-as``, serves as the tenant's user from
the moment the kernel has mounted it: its token was read before, as root.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pwd
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import grpc

from common.client import ClientError, StrataClient
from common.collector import freeze_start_up
from common.convert import relation_from_pb
from common.durable import write_durably
from common.ops import FileKind
from compute.framed import parse_address
from compute.page_cache import CacheStamp, PageCache
from compute.remote import BatchWriter, PageReader
from compute.shim import StrataFS, StrataFUSE
from compute.token_renewal import TokenRenewal
from compute.view import PREFETCH_THREADS, FetchStats, Node
from proto import strata_pb2 as pb

log = logging.getLogger("compute.mount")


def load_tree(client: StrataClient, tenant: str, branch: str) -> tuple[dict[str, Node], int]:
    """The branch's file tree at its newest durable LSN, as shim nodes."""
    response = client.list_files(tenant, branch, timeout_s=60)
    tree = {"": Node("", FileKind.DIR, 0o700)}
    for info in response.files:
        kind = FileKind.DIR if info.kind == pb.FILE_KIND_DIR else FileKind.FILE
        relation = relation_from_pb(info.relation).to_bytes() if info.HasField("relation") else b""
        tree[info.path] = Node(info.path, kind, info.mode, info.size, relation,
                               info.block_offset, info.mtime_us * 1000)
    return tree, int(response.lsn)


def publish_stats(path: Path, cache: PageCache, reader: PageReader, writer: BatchWriter,
                  fetches: FetchStats) -> None:
    """What ``strata compute list`` shows of a running compute's cache and traffic."""
    stats = {"cache": asdict(cache.stats()), "get_pages_round_trips": reader.round_trips,
             "get_pages": {"requests": fetches.requests, "pages": fetches.pages,
                           "read_ahead_requests": fetches.background,
                           "max_in_flight": fetches.max_in_flight},
             "reads": {"count": fetches.reads, "bytes": fetches.read_bytes},
             "acked_lsn": writer.acked_lsn, "at": time.time()}
    write_durably(path, json.dumps(stats).encode())


def _do_nothing() -> None:
    """Stands in for ``publish_stats`` when no stats file was asked for."""


def heartbeat(client: StrataClient, args: argparse.Namespace, epoch: int, period_s: float,
              stop: threading.Event, publish: Callable[[], None],
              renewal: TokenRenewal) -> None:
    """Renew the writer lease until ``stop``; a fenced writer stops renewing and says so.

    Each beat also publishes the compute's statistics and renews its token when due.
    """
    while not stop.wait(period_s):
        publish()
        renewal.renew_if_due()
        try:
            client.renew_writer(args.tenant, args.branch, epoch, args.holder)
        except ClientError as exc:
            if exc.code is grpc.StatusCode.FAILED_PRECONDITION:
                log.error("lost the writer slot: %s", exc.message)
                return
            log.warning("writer heartbeat failed (will retry): %s", exc.message)


class _Ready(StrataFS):
    """StrataFS that, once the kernel has mounted it, drops to ``run_as`` and announces
    readiness."""

    def __init__(self, ready_file: Path | None, run_as: pwd.struct_passwd | None,
                 *args: Any) -> None:
        super().__init__(*args)
        self._ready_file = ready_file
        self._run_as = run_as

    def init_with_config(self, conn_info: Any, config_3: Any) -> None:
        super().init_with_config(conn_info, config_3)
        if self._run_as is not None:  # for every thread of the process (glibc)
            os.setgroups([])
            os.setgid(self._run_as.pw_gid)
            os.setuid(self._run_as.pw_uid)
        if self._ready_file is not None:
            write_durably(self._ready_file, json.dumps({"pid": os.getpid()}).encode())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="compute.mount", description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--token-file", required=True, type=Path)
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--branch", required=True)
    parser.add_argument("--mountpoint", required=True, type=Path)
    parser.add_argument("--scratch", required=True, type=Path)
    parser.add_argument("--cache-dir", required=True, type=Path)
    parser.add_argument("--cache-mb", type=int, default=256)
    parser.add_argument("--cache-keep-mb", type=int, default=0,
                        help="MB of the cache a clean stop keeps on disk for the next start "
                        "(the rest of the file is given back); 0: delete it")
    parser.add_argument("--run-as", help="user to serve as once mounted (the files belong "
                        "to it); default: the user that runs this, whom the files then "
                        "belong to")
    parser.add_argument("--ready-file", type=Path)
    parser.add_argument("--stats-file", type=Path,
                        help="JSON of cache and traffic counters, rewritten every heartbeat")
    parser.add_argument("--holder", default="",
                        help="name of this compute slot for the writer lease (host:path)")
    parser.add_argument("--data-plane", default="", metavar="unix:PATH|unix:@NAME|HOST:PORT",
                        help="ship batches and read pages over the page server's framed "
                        "data plane there (rfcs/0020); default: gRPC streams")
    parser.add_argument("--force", action="store_true",
                        help="take the writer slot even if another compute holds it")
    args = parser.parse_args(argv)
    if args.data_plane:
        try:
            parse_address(args.data_plane)
        except ValueError as exc:
            parser.error(str(exc))
    # Hand the GIL over sooner than every 5 ms: a thread woken by a reply (an fsync
    # waiting on the page server, a stream waiting on the log) runs ~10% sooner under load.
    sys.setswitchinterval(0.0005)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_as = pwd.getpwnam(args.run_as) if args.run_as else None
    owner = run_as or pwd.getpwuid(os.getuid())
    token = args.token_file.read_text().strip()
    client = StrataClient(args.server, token, follow_moves=True)  # the tenant may move
    renewal = TokenRenewal(client, args.tenant, token)
    holder = args.holder or f"{socket.gethostname()}:{args.mountpoint.resolve()}"
    args.holder = holder
    try:
        attached = client.attach_writer(args.tenant, args.branch, holder=holder,
                                        force=args.force)
    except ClientError as exc:
        log.error("cannot attach as the writer of %s/%s: %s", args.tenant, args.branch,
                  exc.message)
        sys.exit(2)
    tree, lsn = load_tree(client, args.tenant, args.branch)
    timeline_id = client.get_branch(args.tenant, args.branch).timeline_id
    cache = PageCache.open(args.cache_dir, args.cache_mb,
                           CacheStamp(args.tenant, timeline_id, lsn))
    writer = BatchWriter(client, args.tenant, args.branch, attached.writer_epoch, lsn,
                         data_plane=args.data_plane)
    args.scratch.mkdir(parents=True, exist_ok=True)
    args.mountpoint.mkdir(parents=True, exist_ok=True)
    # Streams for every read-ahead thread and four more, so a reader that waits is never
    # queued behind read-ahead for a stream.
    reader = PageReader(client, args.tenant, args.branch, data_plane=args.data_plane,
                        streams=PREFETCH_THREADS + 4)
    fs = _Ready(args.ready_file, run_as, tree, cache, reader, writer, args.scratch,
                owner.pw_uid, owner.pw_gid)
    publish: Callable[[], None] = (
        partial(publish_stats, args.stats_file, cache, reader, writer, fs.view.fetches)
        if args.stats_file
        else partial(_do_nothing))
    stop_heartbeat = threading.Event()
    beating = threading.Thread(target=heartbeat, name="writer-heartbeat", daemon=True,
                               args=(client, args, attached.writer_epoch,
                                     max(attached.lease_ms / 4000, 0.2), stop_heartbeat,
                                     publish, renewal))
    beating.start()
    log.info("mounting %s/%s at LSN %d (writer epoch %d) on %s", args.tenant, args.branch, lsn,
             attached.writer_epoch, args.mountpoint)
    freeze_start_up()  # the tree and the modules: full collections skip them
    try:
        StrataFUSE(fs, str(args.mountpoint), foreground=True, allow_other=True,
                  default_permissions=True, hard_remove=True, fsname="strata",
                  subtype="strata")
    finally:
        # Each step is logged: a stop that waits for this daemon to exit shows in this
        # log where it waits.
        log.info("unmounted: ending the heartbeat, read-ahead and the cache")
        # Every call ends before the channel closes: a renewal or stream cut off by
        # client.close() would look like a failure in both logs.
        stop_heartbeat.set()
        beating.join(timeout=client.timeout_s)
        fs.view.close()  # read-ahead ends before the cache and the reader close
        publish()
        clean = fs.view.failed is None
        cache.close(CacheStamp(args.tenant, timeline_id, writer.acked_lsn) if clean else None,
                    keep_mb=args.cache_keep_mb)
        log.info("shipping what is queued")
        writer.close()
        reader.close()
        if clean:
            client.detach_writer(args.tenant, args.branch, attached.writer_epoch)
        client.close()
        log.info("shipped up to LSN %d%s; exiting", writer.acked_lsn,
                 ", released the writer slot" if clean else "")
        if args.ready_file is not None:
            args.ready_file.unlink(missing_ok=True)
    sys.exit(0 if clean else 1)


if __name__ == "__main__":
    main()
