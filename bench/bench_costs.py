"""What one operation costs the gateway, the nodes and PostgreSQL: CPU and statements.

The capacity figures of docs/scaling.md come from here. One gateway (straight, no balancer)
on a throwaway PostgreSQL that preloads pg_stat_statements, three storage nodes
(replication 2), the operator's default timings (heartbeat 5 s, repair every 10 s...), one
account. Phase by phase, one call at a time through the client library:

    idle            nothing: the background cost (heartbeats, maintenance) per second
    upload large    files of --large-mib MiB (UploadFile streamed, FindChunks first)
    upload tiny     4 KiB files through UploadFile
    small batch     4 KiB files, 16 per UploadSmallFiles call, into a folder of their own:
                    the database's growth per file (rows and bytes with indexes) too
    download large  the large files (DownloadFile, GetFileChunks to verify)
    download tiny   the tiny files
    list            ListFiles of a folder of --tiny entries
    stat            StatEntry by id
    mkdir           CreateFolder
    delete          DeleteFiles of one tiny file, permanently
    watch idle      --streams WatchChanges streams open and silent, per stream-second
    watch fan-out   one CreateFolder heard by every open stream of the account, per event

For each phase: CPU seconds (utime + stime from /proc/PID/stat, before and after) of the
gateway, the nodes and PostgreSQL (postmaster and every backend), minus what the idle phase
says they use per second anyway; the statements pg_stat_statements counted (reset before
each phase) minus the idle rate; and the gateway's resident memory per open stream. CPU time,
not wall time: this machine's two cores are shared with other work.

    python bench/bench_costs.py [--large-mib 32] [--large 6] [--tiny 200] [--streams 40]
                                [--json FILE]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.measure import (  # noqa: E402
    PG_STATEMENTS_OPTIONS,
    PgStatements,
    cpu_seconds,
    postmaster_pid,
    tree_cpu_seconds,
)
from cloudgrpc_proto.client import CloudClient, SmallUpload  # noqa: E402
from tests.cluster import ADMIN_KEY, Cluster  # noqa: E402

MiB = 1024 * 1024
TINY = 4096
# The rows a stored file adds (folders, users... grow with people and folders, not files).
METADATA_TABLES = ("files", "file_chunks", "chunks", "user_chunks", "replicas")
# The operator's defaults (DESIGN.md), not the tests' fast timings, so the idle cost is the
# one a deployment pays.
DEFAULT_TIMINGS = {"HEARTBEAT_INTERVAL_S": "5", "NODE_TIMEOUT_S": "30", "LOG_LEVEL": "WARNING"}


def stream_settings(streams: int) -> dict[str, str]:
    """Workers and per-account streams for the watch phases: every open stream holds a
    gateway worker, and a quarter of the workers is kept for short calls."""
    workers = max(64, (streams + 16) * 4 // 3 + 8)
    return {"GRPC_MAX_WORKERS": str(workers), "STREAMS_PER_USER": str(streams + 8)}


@dataclass
class Phase:
    name: str
    unit: str  # what one "call" is (a call, a file, a stream-second, an event)
    calls: float
    mib: float
    wall_s: float
    gateway_s: float  # net of the idle rate
    nodes_s: float
    postgres_s: float
    statements: float  # sent by the gateway
    nested: float  # foreign-key checks and the like inside them
    transactions: float


class Meter:
    """Reads every counter before and after a phase."""

    def __init__(self, cluster: Cluster, pg_dir: Path, stats: PgStatements, top: int) -> None:
        self.cluster, self.pg_dir, self.stats, self.top = cluster, pg_dir, stats, top
        self.idle: Phase | None = None  # per second

    def _read(self) -> tuple[float, float, float, float, int, int, int]:
        assert self.cluster.gateway is not None
        gateway = cpu_seconds(self.cluster.gateway.popen.pid) or 0.0
        nodes = sum(cpu_seconds(p.popen.pid) or 0.0 for p in self.cluster.nodes.values())
        counts = self.stats.counts()
        return (time.monotonic(), gateway, nodes, tree_cpu_seconds(postmaster_pid(self.pg_dir)),
                counts.statements, counts.nested, counts.transactions)

    def run(self, name: str, unit: str, calls: float, mib: float,
            work: Callable[[], object]) -> Phase:
        self.stats.reset()
        time.sleep(1.2)  # PostgreSQL's cumulative statistics settle after a reset
        before = self._read()
        work()
        after = self._read()
        wall = after[0] - before[0]
        d = [a - b for a, b in zip(after, before, strict=True)]
        idle = self.idle
        net = (lambda i, rate: max(0.0, d[i] - rate * wall)) if idle else (lambda i, rate: d[i])
        phase = Phase(name, unit, calls, mib, wall,
                      net(1, idle.gateway_s if idle else 0), net(2, idle.nodes_s if idle else 0),
                      net(3, idle.postgres_s if idle else 0),
                      net(4, idle.statements if idle else 0), net(5, idle.nested if idle else 0),
                      net(6, idle.transactions if idle else 0))
        print(f"  {name}: {calls:g} {unit}s, {wall:.1f} s wall", flush=True)
        for count, query in self.stats.top(self.top):
            print(f"      {count / max(calls, 1e-9):6.2f}/{unit}  {query[:110]}")
        return phase


def sign_up(cluster: Cluster) -> CloudClient:
    account = cluster.sign_up("costs@example.com", "Costs")
    admin = CloudClient(cluster.address, admin_key=ADMIN_KEY)
    admin.set_user_quota(account.email, 100 * 1024**3)
    admin.close()
    return CloudClient(cluster.address, session_token=account.token)


class Streams:
    """``count`` WatchChanges streams, each read by its own thread (as mounts would)."""

    def __init__(self, client: CloudClient, count: int) -> None:
        self.events = 0
        self.lock = threading.Lock()
        self.streams = [client.watch_changes() for _ in range(count)]
        self.threads = [threading.Thread(target=self._read, args=(s,), daemon=True)
                        for s in self.streams]
        for t in self.threads:
            t.start()

    def _read(self, stream: object) -> None:
        try:
            for event in stream:  # type: ignore[attr-defined]
                if event.kind != "hello":
                    with self.lock:
                        self.events += 1
        except Exception:  # noqa: BLE001 - cancelled at the end
            return

    def wait_events(self, total: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.events >= total:
                    return
            time.sleep(0.05)
        raise AssertionError(f"only {self.events} of {total} change events arrived")

    def close(self) -> None:
        for s in self.streams:
            s.cancel()  # type: ignore[attr-defined]
        for t in self.threads:
            t.join(5)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def measure(opts: argparse.Namespace, cluster: Cluster, pg_dir: Path, url: str) -> dict:
    client = sign_up(cluster)
    stats = PgStatements(url)
    meter = Meter(cluster, pg_dir, stats, opts.top)
    phases: list[Phase] = []
    try:
        folder = client.create_folder("costs").folder.folder_id
        small_folder = client.create_folder("small").folder.folder_id
        time.sleep(2)  # the sign-up's and nodes' first rounds done
        idle = meter.run("idle", "second", opts.idle_s, 0, lambda: time.sleep(opts.idle_s))
        meter.idle = Phase("idle rate", "second", 1, 0, 1, *(
            v / idle.wall_s for v in (idle.gateway_s, idle.nodes_s, idle.postgres_s,
                                      idle.statements, idle.nested, idle.transactions)))
        phases.append(meter.idle)

        large = [os.urandom(opts.large_mib * MiB) for _ in range(opts.large)]
        large_ids: list[str] = []
        phases.append(meter.run("upload large", "file", opts.large, opts.large * opts.large_mib,
                                lambda: large_ids.extend(client.upload(
                                    io.BytesIO(d), filename=f"large-{i}.bin",
                                    parent_folder_id=folder, file_size=len(d)).file_id
                                    for i, d in enumerate(large))))
        tiny_ids: list[str] = []
        phases.append(meter.run("upload tiny", "file", opts.tiny, opts.tiny * TINY / MiB,
                                lambda: tiny_ids.extend(client.upload(
                                    io.BytesIO(os.urandom(TINY)), filename=f"tiny-{i}.txt",
                                    parent_folder_id=folder, file_size=TINY).file_id
                                    for i in range(opts.tiny))))
        batches = max(1, opts.batch_files // 16)
        before = stats.footprint(METADATA_TABLES)
        phases.append(meter.run("small batch (16/call)", "file", batches * 16,
                                batches * 16 * TINY / MiB, lambda: [client.upload_small_files(
                                    [SmallUpload(data=os.urandom(TINY), filename=f"s{b}-{i}.txt",
                                                 parent_folder_id=small_folder)
                                     for i in range(16)]) for b in range(batches)]))
        after = stats.footprint(METADATA_TABLES)
        footprint = {t: {"rows": after[t][0] - before[t][0],
                         "bytes": after[t][1] - before[t][1]} for t in METADATA_TABLES}
        footprint["files added"] = {"rows": batches * 16, "bytes": 0}

        def download(ids: list[str]) -> None:
            for file_id in ids:
                client.download_to(file_id, io.BytesIO())

        phases.append(meter.run("download large", "file", opts.large,
                                opts.large * opts.large_mib, lambda: download(large_ids)))
        phases.append(meter.run("download tiny", "file", opts.tiny, opts.tiny * TINY / MiB,
                                lambda: download(tiny_ids)))
        listed = len(client.list_files(folder_id=folder).files)
        phases.append(meter.run(f"list ({listed} entries)", "call", opts.tiny, 0,
                                lambda: [client.list_files(folder_id=folder)
                                         for _ in range(opts.tiny)]))
        phases.append(meter.run("stat", "call", opts.tiny, 0,
                                lambda: [client.stat(entry_id=i) for i in tiny_ids]))
        phases.append(meter.run("mkdir", "call", opts.tiny, 0,
                                lambda: [client.create_folder(f"d{i}", parent_folder_id=folder)
                                         for i in range(opts.tiny)]))
        phases.append(meter.run("delete (permanent)", "call", opts.tiny, 0,
                                lambda: [client.delete_files([i], permanent=True)
                                         for i in tiny_ids]))

        assert cluster.gateway is not None
        gateway_pid = cluster.gateway.popen.pid
        rss_before = rss_kib(gateway_pid)
        streams = Streams(client, opts.streams)
        try:
            time.sleep(2)  # every stream open and said hello
            rss_per_stream = (rss_kib(gateway_pid) - rss_before) / opts.streams
            phases.append(meter.run(f"watch idle ({opts.streams} streams)", "stream-second",
                                    opts.streams * opts.idle_s, 0,
                                    lambda: time.sleep(opts.idle_s)))
            changes = 20

            def fan_out() -> None:
                for i in range(changes):
                    client.create_folder(f"w{i}", parent_folder_id=folder)
                streams.wait_events(changes * opts.streams)

            fan = meter.run(f"watch fan-out ({opts.streams} streams)", "event",
                            changes * opts.streams, 0, fan_out)
            # What the CreateFolder calls themselves cost (the mkdir phase) is not fan-out.
            mkdir = next(p for p in phases if p.name == "mkdir")
            for attr in ("gateway_s", "nodes_s", "postgres_s", "statements", "nested",
                         "transactions"):
                setattr(fan, attr, max(0.0, getattr(fan, attr)
                                       - getattr(mkdir, attr) / mkdir.calls * changes))
            phases.append(fan)
        finally:
            streams.close()
    finally:
        client.close()
        stats.close()
    return {"phases": [asdict(p) for p in phases], "rss_kib_per_stream": rss_per_stream,
            "footprint": footprint}


def print_table(result: dict) -> None:
    print("\nper unit, net of the idle rate (first line: the idle rate, per second); CPU in "
          "ms (utime+stime); stmts = statements the gateway sent (BEGIN, COMMIT and pool "
          "pings included), nested = run inside them (foreign-key checks), from "
          "pg_stat_statements; xacts = transactions, about")
    print(f"{'phase':32}{'unit':>14}{'n':>7}{'gw ms':>8}{'gw s/GiB':>9}{'node ms':>8}"
          f"{'node s/GiB':>11}{'pg ms':>7}{'stmts':>7}{'nested':>7}{'xacts':>7}")
    for p in result["phases"]:
        n = max(p["calls"], 1e-9)
        gib = p["mib"] / 1024

        def per_gib(value: float, gib: float = gib) -> str:
            return f"{value / gib:.2f}" if gib else "-"

        print(f"{p['name']:32}{p['unit']:>14}{p['calls']:7g}{1000 * p['gateway_s'] / n:8.2f}"
              f"{per_gib(p['gateway_s']):>9}{1000 * p['nodes_s'] / n:8.2f}"
              f"{per_gib(p['nodes_s']):>11}{1000 * p['postgres_s'] / n:7.2f}"
              f"{p['statements'] / n:7.1f}{p['nested'] / n:7.1f}{p['transactions'] / n:7.1f}")
    print(f"gateway resident memory per open WatchChanges stream: "
          f"{result['rss_kib_per_stream']:.0f} KiB")
    files = result["footprint"]["files added"]["rows"]
    print(f"PostgreSQL footprint of {files} files of 4 KiB (one chunk each, 2 replicas), "
          "growth per table with its indexes, after VACUUM:")
    total = 0
    for table, grew in result["footprint"].items():
        if table != "files added" and grew["rows"]:
            total += grew["bytes"]
            print(f"  {table:14}{grew['rows']:7d} rows {grew['bytes'] / max(grew['rows'], 1):8.0f}"
                  f" bytes/row {grew['bytes'] / files:8.0f} bytes/file")
    print(f"  {'all':14}{'':7} {'':14} {total / files:8.0f} bytes/file")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large-mib", type=int, default=32)
    parser.add_argument("--large", type=int, default=6, help="large files")
    parser.add_argument("--tiny", type=int, default=200, help="tiny files and metadata calls")
    parser.add_argument("--batch-files", type=int, default=1600,
                        help="4 KiB files sent by UploadSmallFiles (the database footprint)")
    parser.add_argument("--streams", type=int, default=40, help="WatchChanges streams")
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=0, metavar="N",
                        help="show each phase's N most-called statements")
    parser.add_argument("--json", metavar="FILE")
    opts = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    root = Path(tempfile.mkdtemp(prefix="cloudgrpc-costs-"))
    pg_dir = Path(tempfile.mkdtemp(prefix="cloudgrpc-costs-pg-"))
    script = str(ROOT / "scripts" / "postgres-throwaway.sh")
    cluster: Cluster | None = None
    try:
        url = subprocess.run([script, "start", str(pg_dir)], check=True, capture_output=True,
                             text=True, env={**os.environ,
                                             "POSTGRES_EXTRA_OPTIONS": PG_STATEMENTS_OPTIONS},
                             ).stdout.strip()
        settings = {**DEFAULT_TIMINGS, **stream_settings(opts.streams)}
        cluster = Cluster(root, database_url=url, env=settings, node_capacity_gb=20)
        cluster.start()
        print(f"1 gateway (direct), 3 nodes (replication 2), PostgreSQL with "
              f"pg_stat_statements; {os.cpu_count()} cores; " + ", ".join(
                  f"{k}={v}" for k, v in settings.items()), flush=True)
        result = measure(opts, cluster, pg_dir, url)
        print_table(result)
        if opts.json:
            Path(opts.json).write_text(json.dumps(result, indent=2) + "\n")
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        if cluster is not None:
            cluster.stop()
        subprocess.run([script, "stop", str(pg_dir)], check=False, capture_output=True)
        shutil.rmtree(pg_dir, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
