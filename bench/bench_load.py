"""Mixed load with a node failure in the middle, then a byte-for-byte audit.

N concurrent clients (default 32) upload, download, list and delete for a fixed time
against a gateway and three storage nodes (replication 2) on this machine. A third of the
way in, one node is killed with SIGKILL; at two thirds it is started again. The script
reports operations per second, p50/p99 latency per operation, errors by kind, the time the
cluster took to get back to full replication after the loss (and how much data the node
held), and finally downloads every acknowledged file and compares it with what was sent.

    python bench/bench_load.py [--clients 32] [--seconds 60] [--accounts 8]
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc  # noqa: E402

from cloudgrpc_proto import cloud_storage_pb2 as pb  # noqa: E402
from tests.cluster import ADMIN_KEY, Account, Cluster  # noqa: E402

SIZES = [4 * 1024, 64 * 1024, 512 * 1024, 2 * 1024 * 1024, 6 * 1024 * 1024]


class Ledger:
    """What the cluster acknowledged: file id -> (account, sha256, size)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.files: dict[str, tuple[Account, str, int]] = {}
        self.owner: dict[str, int] = {}
        self.latency: dict[str, list[float]] = collections.defaultdict(list)
        self.errors: collections.Counter[str] = collections.Counter()
        self.samples: dict[str, str] = {}
        self.ops = 0

    def record(self, op: str, seconds: float) -> None:
        with self.lock:
            self.latency[op].append(seconds)
            self.ops += 1

    def error(self, op: str, exc: BaseException) -> None:
        kind = exc.code().name if isinstance(exc, grpc.RpcError) else type(exc).__name__
        detail = exc.details() if isinstance(exc, grpc.RpcError) else str(exc)
        with self.lock:
            self.errors[f"{op}:{kind}"] += 1
            self.samples.setdefault(f"{op}:{kind}", detail)

    def pick(self, rng: random.Random, idx: int) -> str | None:
        """A file this client uploaded (clients never race each other on one file)."""
        with self.lock:
            mine = [fid for fid in self.files if self.owner.get(fid) == idx]
        return rng.choice(mine) if mine else None


def client(idx: int, accounts: list[Account], ledger: Ledger, stop: threading.Event) -> None:
    rng = random.Random(idx)
    acct = accounts[idx % len(accounts)]
    while not stop.is_set():
        op = rng.choices(["upload", "download", "list", "delete"], [4, 4, 2, 1])[0]
        started = time.perf_counter()
        try:
            if op == "upload":
                data = os.urandom(rng.choice(SIZES))
                fid = acct.upload(data, f"c{idx}-{rng.getrandbits(40):x}.bin").file_id
                with ledger.lock:
                    ledger.files[fid] = (acct, hashlib.sha256(data).hexdigest(), len(data))
                    ledger.owner[fid] = idx
            elif op == "download":
                fid = ledger.pick(rng, idx)
                if fid is None:
                    continue
                got = acct.download(fid)
                with ledger.lock:
                    entry = ledger.files.get(fid)
                if entry is not None and hashlib.sha256(got).hexdigest() != entry[1]:
                    ledger.errors["download:CORRUPT"] += 1
            elif op == "list":
                acct.ls()
            else:
                fid = ledger.pick(rng, idx)
                if fid is None:
                    continue
                with ledger.lock:
                    ledger.files.pop(fid, None)
                acct.cluster.files.DeleteFile(pb.DeleteFileRequest(
                    session_token=acct.token, file_id=fid, permanent=True), timeout=30)
            ledger.record(op, time.perf_counter() - started)
        except grpc.RpcError as exc:
            ledger.error(op, exc)


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in (path / "chunks").rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--accounts", type=int, default=8)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--node-gb", type=float, default=20.0, help="capacity of each node")
    parser.add_argument("--heal-limit", type=float, default=180,
                        help="longest wait for full replication before restarting the node")
    opts = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cloudgrpc-load-"))
    # Timings an operator of a busy cluster might pick: quick failure detection and repair,
    # deleted data collected after 30 s so the nodes do not fill up during the run.
    env = {"LOG_LEVEL": "WARNING", "NODE_TIMEOUT_S": "3", "REPAIR_GRACE_S": "2",
           "REPAIR_INTERVAL_S": "1", "GRPC_MAX_WORKERS": "96", "GC_GRACE_S": "30",
           "GC_INTERVAL_S": "5"}
    cluster = Cluster(root, database_url=opts.database_url, env=env,
                      node_capacity_gb=opts.node_gb)
    stop = threading.Event()
    try:
        cluster.start()
        accounts = [cluster.sign_up(f"load{i}@example.com", f"Load {i}")
                    for i in range(opts.accounts)]
        for a in accounts:
            cluster.admin.SetUserQuota(pb.SetUserQuotaRequest(
                admin_key=ADMIN_KEY, email=a.email, storage_bytes=50 * 1024**3))
        ledger = Ledger()
        threads = [threading.Thread(target=client, args=(i, accounts, ledger, stop),
                                    daemon=True) for i in range(opts.clients)]
        t0 = time.monotonic()
        for th in threads:
            th.start()
        time.sleep(opts.seconds / 3)
        held = du(cluster.node_dir("node2"))
        cluster.stop_node("node2", signal.SIGKILL)
        killed_at = time.monotonic()
        print(f"[{killed_at - t0:5.1f}s] node2 killed (held {held / 1e6:.1f} MB)", flush=True)
        healed_at = None
        # The node stays down until the cluster has healed (bounded), so the time to full
        # replication is measured under the same load.
        while time.monotonic() - t0 < 2 * opts.seconds / 3 or (
                healed_at is None and time.monotonic() - killed_at < opts.heal_limit):
            time.sleep(0.5)
            st = cluster.status()
            if healed_at is None and st.online_nodes == 2 and st.under_replicated_chunks == 0:
                healed_at = time.monotonic()
                print(f"[{healed_at - t0:5.1f}s] full replication again on 2 nodes",
                      flush=True)
        cluster.start_node("node2")
        print(f"[{time.monotonic() - t0:5.1f}s] node2 restarted", flush=True)
        time.sleep(max(opts.seconds - (time.monotonic() - t0), opts.seconds / 3))
        stop.set()
        for th in threads:
            th.join(120)
        elapsed = time.monotonic() - t0
        # Audit every acknowledged, undeleted file.
        lost = corrupt = 0
        for fid, (acct, sha, _size) in list(ledger.files.items()):
            try:
                got = acct.download(fid)
            except grpc.RpcError as exc:
                lost += 1
                print(f"LOST {fid}: {exc.code().name} {exc.details()}", file=sys.stderr)
                continue
            if hashlib.sha256(got).hexdigest() != sha:
                corrupt += 1
        print()
        print(f"{opts.clients} clients, {elapsed:.0f} s, 3 nodes (replication 2), "
              "node2 killed at 1/3 and restarted at 2/3")
        print(f"{'operation':10}{'count':>8}{'ops/s':>8}{'p50 ms':>9}{'p99 ms':>9}")
        for op in ("upload", "download", "list", "delete"):
            lat = ledger.latency.get(op, [])
            print(f"{op:10}{len(lat):8d}{len(lat) / elapsed:8.1f}"
                  f"{1000 * pct(lat, 0.5):9.1f}{1000 * pct(lat, 0.99):9.1f}")
        all_lat = [x for v in ledger.latency.values() for x in v]
        print(f"{'all':10}{len(all_lat):8d}{len(all_lat) / elapsed:8.1f}"
              f"{1000 * statistics.median(all_lat) if all_lat else 0:9.1f}"
              f"{1000 * pct(all_lat, 0.99):9.1f}")
        print("errors by kind:", dict(ledger.errors) or "none")
        for kind, detail in ledger.samples.items():
            print(f"  e.g. {kind}: {detail}")
        if healed_at is not None:
            print(f"back to full replication {healed_at - killed_at:.1f} s after the loss "
                  f"of a node holding {held / 1e6:.1f} MB")
        else:
            print(f"full replication was not reached within {opts.heal_limit:.0f} s")
        print(f"audit: {len(ledger.files)} acknowledged files, {lost} lost, {corrupt} corrupt")
        return 0 if lost == 0 and corrupt == 0 else 1
    finally:
        stop.set()
        cluster.stop()
        subprocess.run(["rm", "-rf", str(root)], check=False)


if __name__ == "__main__":
    sys.exit(main())
