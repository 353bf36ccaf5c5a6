"""Per-call latency of the gateway's metadata RPCs, one client, one call at a time.

A mount issues one gateway call per mkdir, mv, unlink or lookup, so the latency of a single
metadata call bounds how fast a shell loop over many small entries runs. This starts a real
cluster (gateway, storage nodes, SMTP sink), signs up, builds a tree a few levels deep
(``/r0-level0/r0-level1/r0-level2/work`` by default: the entries measured sit 5 levels
below the root, as in a real project tree) and times, call by call:

    CreateFolder            N new folders in one folder
    MoveEntry rename        each renamed within its folder
    MoveEntry across        each moved to a sibling folder
    StatEntry id            by entry id (the reply carries the path)
    StatEntry name          by parent id + name (the mount's lookup)
    ListFiles               a folder of 20 entries
    DeleteFile trash        N small files, to the trash (what ``rm`` on the mount does)
    DeleteFile permanent    N small files, for good

    python bench/bench_metadata.py [--count 500] [--depth 4] [--database-url URL]

``--profile "MoveEntry rename" --py-spy PATH`` records that one operation's calls in the
gateway with py-spy (raw collapsed stacks in ``--profile-out``).

PostgreSQL: start a throwaway server with ``scripts/postgres-throwaway.sh start DIR`` and
pass the URL it prints.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cloudgrpc_proto import cloud_storage_pb2 as pb  # noqa: E402
from tests.cluster import ADMIN_KEY, Account, Cluster  # noqa: E402


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Profiler:
    """py-spy attached to the gateway around one operation's calls, when asked for."""

    def __init__(self, label: str, py_spy: str, out: str) -> None:
        self.label, self.py_spy, self.out = label, py_spy, out
        self.pid = 0

    def start(self, label: str) -> subprocess.Popen[bytes] | None:
        if label != self.label or not self.pid:
            return None
        proc = subprocess.Popen([self.py_spy, "record", "-p", str(self.pid), "--rate", "500",
                                 "-f", "raw", "-o", self.out])
        time.sleep(1.5)  # attached before the first call
        return proc

    @staticmethod
    def stop(proc: subprocess.Popen[bytes] | None) -> None:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)


PROFILER = Profiler("", "", "")


def timed(label: str, items: list[object], call: Callable[[object], object],
          rows: list[tuple[str, list[float]]]) -> list[object]:
    """Call ``call`` on each item in turn, keeping each call's wall time."""
    lat: list[float] = []
    out: list[object] = []
    spy = PROFILER.start(label)
    for item in items:
        t0 = time.perf_counter()
        out.append(call(item))
        lat.append(time.perf_counter() - t0)
    PROFILER.stop(spy)
    rows.append((label, lat))
    return out


def mkdir(acct: Account, parent: str, name: str) -> str:
    return acct.cluster.files.CreateFolder(pb.CreateFolderRequest(
        session_token=acct.token, parent_folder_id=parent, name=name), timeout=10).folder.folder_id


def run(acct: Account, count: int, depth: int, tag: str) -> list[tuple[str, list[float]]]:
    files = acct.cluster.files
    token = acct.token
    # The working folders sit ``depth`` levels below the root.
    parent = ""
    for level in range(depth - 1):
        parent = mkdir(acct, parent, f"{tag}-level{level}")
    work = mkdir(acct, parent, "work")
    other = mkdir(acct, parent, "other")
    small = mkdir(acct, parent, "small")
    rows: list[tuple[str, list[float]]] = []

    # Warm-up: the first calls pay connection set-up, statement compilation, session lookup.
    for i in range(20):
        mkdir(acct, small, f"warm{i}")

    ids = timed("CreateFolder", list(range(count)), lambda i: files.CreateFolder(
        pb.CreateFolderRequest(session_token=token, parent_folder_id=work, name=f"d{i}"),
        timeout=10).folder.folder_id, rows)
    timed("MoveEntry rename", list(enumerate(ids)), lambda p: files.MoveEntry(
        pb.MoveEntryRequest(session_token=token, entry_id=p[1], new_name=f"e{p[0]}"),  # type: ignore[index]
        timeout=10), rows)
    timed("MoveEntry across", ids, lambda fid: files.MoveEntry(
        pb.MoveEntryRequest(session_token=token, entry_id=fid, new_parent_folder_id=other),  # type: ignore[arg-type]
        timeout=10), rows)
    timed("StatEntry id", ids, lambda fid: files.StatEntry(
        pb.StatEntryRequest(session_token=token, entry_id=fid), timeout=10), rows)  # type: ignore[arg-type]
    timed("StatEntry name", list(range(count)), lambda i: files.StatEntry(
        pb.StatEntryRequest(session_token=token, parent_folder_id=other, name=f"e{i}"),
        timeout=10), rows)
    timed("ListFiles 20", list(range(count)), lambda _i: files.ListFiles(
        pb.ListFilesRequest(session_token=token, folder_id=small), timeout=10), rows)

    # Files to delete: symlinks are file rows without chunks, so making many is cheap and
    # DeleteFile takes the same path as for any file.
    def links(prefix: str) -> list[str]:
        return [files.CreateSymlink(pb.CreateSymlinkRequest(
            session_token=token, parent_folder_id=work, name=f"{prefix}{i}", target="x"),
            timeout=10).file.file_id for i in range(count)]

    trash = links("t")
    timed("DeleteFile trash", trash, lambda fid: files.DeleteFile(pb.DeleteFileRequest(
        session_token=token, file_id=fid), timeout=10), rows)  # type: ignore[arg-type]
    gone = links("p")
    timed("DeleteFile permanent", gone, lambda fid: files.DeleteFile(pb.DeleteFileRequest(
        session_token=token, file_id=fid, permanent=True), timeout=10), rows)  # type: ignore[arg-type]
    return rows


def drain_changes(acct: Account) -> None:
    """A WatchChanges subscriber reading every event: the gateway pushes one per change."""
    try:
        for _ in acct.cluster.files.WatchChanges(pb.WatchChangesRequest(
                session_token=acct.token)):
            pass
    except Exception:  # noqa: BLE001 - the stream ends when the cluster stops
        return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500, help="calls per operation")
    parser.add_argument("--depth", type=int, default=4,
                        help="levels below the root of the folders worked in")
    parser.add_argument("--database-url", default="")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the whole set (fresh folders) and keep every sample")
    parser.add_argument("--watch", action="store_true",
                        help="keep a change-feed subscriber connected, as a mount does")
    parser.add_argument("--profile", default="", help="an operation's label to profile")
    parser.add_argument("--py-spy", default="py-spy")
    parser.add_argument("--profile-out", default="profile.txt")
    opts = parser.parse_args()
    global PROFILER
    PROFILER = Profiler(opts.profile, opts.py_spy, opts.profile_out)
    root = Path(tempfile.mkdtemp(prefix="cloudgrpc-meta-"))
    cluster = Cluster(root, database_url=opts.database_url, nodes=2,
                      env={"LOG_LEVEL": "WARNING"})
    try:
        cluster.start()
        assert cluster.gateway is not None
        PROFILER.pid = cluster.gateway.popen.pid
        acct = cluster.sign_up()
        cluster.admin.SetUserQuota(pb.SetUserQuotaRequest(
            admin_key=ADMIN_KEY, email=acct.email, storage_bytes=10 * 1024**3))
        if opts.watch:
            threading.Thread(target=drain_changes, args=(acct,), daemon=True).start()
        merged: dict[str, list[float]] = {}
        for round_no in range(opts.rounds):
            for label, lat in run(acct, opts.count, opts.depth, f"r{round_no}"):
                merged.setdefault(label, []).extend(lat)
        db = "PostgreSQL" if opts.database_url.startswith("postgres") else "SQLite"
        print(f"{db}, depth {opts.depth}, {opts.count} calls x {opts.rounds}, one client, "
              f"sequential{', change feed watched' if opts.watch else ''}")
        print(f"{'call':22}{'p50 ms':>8}{'p99 ms':>8}{'mean ms':>9}{'ops/s':>8}")
        for label, lat in merged.items():
            mean = statistics.fmean(lat)
            print(f"{label:22}{1000 * pct(lat, 0.5):8.2f}{1000 * pct(lat, 0.99):8.2f}"
                  f"{1000 * mean:9.2f}{1 / mean:8.0f}")
        return 0
    finally:
        cluster.stop()
        subprocess.run(["rm", "-rf", str(root)], check=False)


if __name__ == "__main__":
    sys.exit(main())
