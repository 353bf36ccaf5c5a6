"""Mixed load with faults in the middle, then a byte-for-byte audit and fsck.

N concurrent clients (default 32) upload, upload small files in batches, download, list and
delete for a fixed time against a gateway and three storage nodes (replication 2) on this
machine, each through the shared client library (``cloudgrpc_proto.client.CloudClient``,
its deadlines and retries; uploads and deletes are retried after transient failures the
way the mount's upload queue does). Every acknowledged upload (file id, path, SHA-256) and
every acknowledged delete is remembered.

With ``--faults``, during the run:

- at ~25 % one storage node is killed with SIGKILL (it stays down until the cluster is back
  to full replication without it, then it is started again);
- at ~40 % bytes in the middle of one chunk file on another node's disk are overwritten
  (a chunk that still has a good copy on the third node, so no data is really lost);
- at ~60 % the gateway is killed with SIGKILL and started again on the same port and
  database.

Afterwards: the time from the node kill to zero chunks short of the replication factor
(polled from the admin status), an audit (every acknowledged, not deleted file downloaded
and compared with its SHA-256; every acknowledged delete still gone), ``cloudgrpc-admin
--fsck`` when this build has it, and one table: ops/s, p50, p99 per operation, errors by
kind (the typed errors of ``cloudgrpc_proto.errors`` and their exit codes), hangs.

    python bench/bench_load.py [--clients 32] [--seconds 120] [--database postgres|sqlite]
                               [--faults] [--hang-s 60] [--json FILE]
                               [--gateways N[,N...]] [--haproxy] [--connection-per-client]

With ``--gateways N`` (PostgreSQL) N gateways share the database behind Debian's HAProxy
(``tests/balancer.py``: the documented ``deploy/haproxy/haproxy.cfg``, one ``server`` line
per gateway); nodes register and clients call through it. ``--gateways 1`` is straight to
the gateway, as before, unless ``--haproxy``. Each run also reports the CPU seconds
(utime + stime from /proc/PID/stat, before and after the load) of the gateways, nodes,
HAProxy, PostgreSQL (postmaster and backends) and the clients, per operation and per GiB,
and on its own PostgreSQL the statements per operation (pg_stat_statements).

The bench starts PostgreSQL itself (``scripts/postgres-throwaway.sh``) when asked for it,
and stops every process it started (by PID) and removes its folders, Ctrl-C included.
Exit status 0 only when nothing acknowledged was lost or corrupt, nothing hung and fsck
(when present) ends clean.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.measure import (  # noqa: E402
    PG_STATEMENTS_OPTIONS,
    CpuMeter,
    PgStatements,
    postmaster_pid,
    tree_cpu_seconds,
)
from cloudgrpc_proto import cloud_storage_pb2 as pb  # noqa: E402
from cloudgrpc_proto import errors  # noqa: E402
from cloudgrpc_proto.channel import open_channel  # noqa: E402
from cloudgrpc_proto.client import CloudClient, SmallUpload  # noqa: E402
from tests.balancer import Site, gateway_names, gateways_behind_haproxy  # noqa: E402
from tests.cluster import ADMIN_KEY, Cluster  # noqa: E402

T = TypeVar("T")
KiB = 1024
MiB = 1024 * KiB
# Streamed uploads: below, at and above the gateway's 4 MiB chunk size.
UPLOAD_SIZES = [64 * KiB, 512 * KiB, 2 * MiB, 5 * MiB, 9 * MiB]
SMALL_FILES_PER_BATCH = (4, 16)
SMALL_FILE_SIZES = (1 * KiB, 48 * KiB)
OPERATIONS = ("upload", "small", "download", "list", "delete")
WEIGHTS = (3, 2, 4, 2, 1)
# What the mount's upload queue retries after (fusefs/writer.py TRANSIENT, RETRY_DELAYS):
# the outcome of the failed try is unknown, so uploads retry with replace_existing to the
# same name (the same file id if the first try did commit) and deletes through DeleteFiles,
# whose retry answers NotFound for what is already gone.
TRANSIENT = (errors.Unavailable, errors.DeadlineExceeded, errors.InternalError)
RETRY_DELAYS = (0.5, 1, 2, 4, 8, 15)

# Timings short enough that failure detection, repair, scrub and garbage collection act
# within a two-minute run (an operator would keep the defaults of DESIGN.md).
BENCH_TIMINGS = {
    "HEARTBEAT_INTERVAL_S": "0.5",
    "NODE_TIMEOUT_S": "6",  # 3 s made loaded nodes flap offline on 2 shared cores
    "REPAIR_GRACE_S": "5",
    "REPAIR_INTERVAL_S": "1",
    "SCRUB_INTERVAL_S": "20",
    "SCRUB_RATE_MBPS": "40",
    "GC_GRACE_S": "30",
    "GC_INTERVAL_S": "5",
    # Below GC_GRACE_S, as with the defaults (60 s < 3600 s): chunk files a returning node
    # holds for files deleted meanwhile are swept before fsck would call them stray.
    "GC_IDLE_S": "20",
}


# --- what the cluster acknowledged ---------------------------------------------------------


@dataclass
class Acked:
    """One acknowledged upload."""

    file_id: str
    path: str
    sha256: str
    size: int
    client: int
    account: int


@dataclass
class OpStats:
    latencies: list[float] = field(default_factory=list)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    retries: int = 0
    bytes: int = 0


class Ledger:
    """Acknowledged files and deletes, per-operation latencies and errors, shared by all
    client threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: dict[str, Acked] = {}
        self.deleted: dict[str, Acked] = {}
        self.uncertain: dict[str, Acked] = {}  # a delete whose outcome is unknown
        self.pinned: set[str] = set()  # the corrupted chunk's file: never deleted
        self.stats: dict[str, OpStats] = {op: OpStats() for op in OPERATIONS}
        self.samples: dict[str, str] = {}
        self.corrupt_reads: list[str] = []
        self.busy: dict[int, tuple[str, float]] = {}  # client -> (operation, started)
        self.hung: list[tuple[int, str, float]] = []

    def acked(self, entry: Acked) -> None:
        with self.lock:
            self.live[entry.file_id] = entry

    def record(self, op: str, seconds: float, nbytes: int = 0) -> None:
        with self.lock:
            self.stats[op].latencies.append(seconds)
            self.stats[op].bytes += nbytes

    def retried(self, op: str, exc: BaseException) -> None:
        with self.lock:
            self.stats[op].retries += 1
            self.samples.setdefault(f"{op} retried after {kind_of(exc)}", str(exc)[:200])

    def error(self, op: str, exc: BaseException) -> None:
        kind = kind_of(exc)
        with self.lock:
            self.stats[op].errors[kind] += 1
            self.samples.setdefault(f"{op} {kind}", str(exc)[:200])

    def mine(self, client: int, deletable: bool = False) -> list[str]:
        with self.lock:
            return [fid for fid, a in self.live.items() if a.client == client
                    and not (deletable and fid in self.pinned)]


def kind_of(exc: BaseException) -> str:
    """An error's class and the exit code the CLIs give it (the user-visible kind)."""
    if isinstance(exc, errors.CloudError):
        return f"{type(exc).__name__}(exit {exc.exit_code})"
    return type(exc).__name__


# --- the clients ---------------------------------------------------------------------------


class LoadClient(threading.Thread):
    """One user at work: a mix of operations on its own folder, until told to stop."""

    def __init__(self, idx: int, account: int, address: str, token: str, ledger: Ledger,
                 stop: threading.Event, seed: int, hang_s: float,
                 own_connection: bool = False) -> None:
        super().__init__(daemon=True, name=f"client-{idx}")
        self.idx = idx
        self.hang_s = hang_s
        self.account = account
        # gRPC shares one connection among a process's channels to the same address; a
        # local subchannel pool gives this client a TCP connection of its own, as a user's
        # own process would have.
        self.channel = (open_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
                        if own_connection else None)
        self.client = (CloudClient(address, channel=self.channel, session_token=token)
                       if self.channel is not None else
                       CloudClient(address, session_token=token))
        self.ledger = ledger
        self.stop_event = stop
        self.rng = random.Random(seed * 1000 + idx)
        self.folder_id = ""
        self.folder = f"client-{idx:02d}"
        self.seq = 0

    def run(self) -> None:
        try:
            self.folder_id = self._write("list", lambda: self.client.create_folder(
                self.folder, exist_ok=True)).folder.folder_id
        except Exception as exc:  # noqa: BLE001 - counted; this client then sits out
            self.ledger.error("list", exc)
            return
        while not self.stop_event.is_set():
            op = self.rng.choices(OPERATIONS, WEIGHTS)[0]
            started = time.monotonic()
            with self.ledger.lock:
                self.ledger.busy[self.idx] = (op, started)
            failed = False
            try:
                nbytes = getattr(self, f"op_{op}")()  # None: nothing to do (no file yet)
            except Exception as exc:  # noqa: BLE001 - counted and shown, the run goes on
                self.ledger.error(op, exc)
                nbytes, failed = None, True
            elapsed = time.monotonic() - started
            with self.ledger.lock:
                self.ledger.busy.pop(self.idx, None)
            if nbytes is not None:
                self.ledger.record(op, elapsed, nbytes)
            # A hang is any operation a user waits on this long, succeeded or not.
            if (failed or nbytes is not None) and elapsed > self.hang_s:
                with self.ledger.lock:
                    self.ledger.hung.append((self.idx, op, elapsed))
        self.client.close()
        if self.channel is not None:
            self.channel.close()

    def _write(self, op: str, call: Callable[[], T]) -> T:
        """Run a write, retrying transient failures as the mount's upload queue does."""
        for attempt, delay in enumerate((*RETRY_DELAYS, None)):
            try:
                return call()
            except TRANSIENT as exc:
                if delay is None or self.stop_event.is_set() and attempt >= 2:
                    raise
                self.ledger.retried(op, exc)
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _new_name(self, ext: str) -> str:
        self.seq += 1
        return f"f{self.seq:05d}-{self.rng.getrandbits(24):06x}.{ext}"

    def op_upload(self) -> int:
        data = os.urandom(self.rng.choice(UPLOAD_SIZES))
        name = self._new_name("bin")
        reply = self._write("upload", lambda: self.client.upload(
            io.BytesIO(data), filename=name, parent_folder_id=self.folder_id,
            replace_existing=True, upload_id=f"load-{self.idx}-{self.seq}"))
        self.ledger.acked(Acked(reply.file_id, f"/{self.folder}/{name}",
                                hashlib.sha256(data).hexdigest(), len(data), self.idx,
                                self.account))
        return len(data)

    def op_small(self) -> int:
        todo = {}
        for _ in range(self.rng.randint(*SMALL_FILES_PER_BATCH)):
            todo[self._new_name("txt")] = os.urandom(self.rng.randint(*SMALL_FILE_SIZES))
        sent = 0
        for attempt, delay in enumerate((*RETRY_DELAYS, None)):
            items = [SmallUpload(data=d, filename=n, parent_folder_id=self.folder_id,
                                 replace_existing=True) for n, d in todo.items()]
            try:
                replies = self.client.upload_small_files(items)
            except TRANSIENT as exc:
                if delay is None or self.stop_event.is_set() and attempt >= 2:
                    raise
                self.ledger.retried("small", exc)
                time.sleep(delay)
                continue
            failed: BaseException | None = None
            for (name, data), reply in zip(list(todo.items()), replies, strict=True):
                if isinstance(reply, errors.CloudError):
                    if not isinstance(reply, TRANSIENT):
                        raise reply
                    failed = reply
                    continue
                self.ledger.acked(Acked(reply.file_id, f"/{self.folder}/{name}",
                                        hashlib.sha256(data).hexdigest(), len(data),
                                        self.idx, self.account))
                sent += len(data)
                del todo[name]
            if not todo:
                return sent
            assert failed is not None
            if delay is None:
                raise failed
            self.ledger.retried("small", failed)
            time.sleep(delay)
        return sent

    def op_download(self) -> int | None:
        mine = self.ledger.mine(self.idx)
        if not mine:
            return None
        fid = self.rng.choice(mine)
        with self.ledger.lock:
            entry = self.ledger.live.get(fid)
        assert entry is not None
        sink = io.BytesIO()
        self.client.download_to(fid, sink)  # the library's retries and chunk manifest check
        got = sink.getvalue()
        if hashlib.sha256(got).hexdigest() != entry.sha256:
            with self.ledger.lock:
                self.ledger.corrupt_reads.append(f"{entry.path} ({fid}): {len(got)} bytes, "
                                                 "SHA-256 differs")
            raise errors.DataLoss(f"{entry.path}: downloaded bytes differ from the upload")
        return len(got)

    def op_list(self) -> int:
        self.client.list_files(folder_id=self.folder_id)
        return 0

    def op_delete(self) -> int | None:
        mine = self.ledger.mine(self.idx, deletable=True)
        if not mine:
            return None
        fid = self.rng.choice(mine)
        try:
            results = self._write("delete", lambda: self.client.delete_files(
                [fid], permanent=True))
        except TRANSIENT:
            with self.ledger.lock:  # it may or may not be gone: audited neither way
                self.ledger.uncertain[fid] = self.ledger.live.pop(fid)
            raise
        outcome = results.get(fid)
        if outcome is not None and not isinstance(outcome, errors.NotFound):
            raise outcome
        with self.ledger.lock:
            self.ledger.deleted[fid] = self.ledger.live.pop(fid)
        return 0


# --- watching replication ------------------------------------------------------------------


class ReplicationWatch(threading.Thread):
    """Polls the admin status: nodes online and chunks short of the replication factor."""

    def __init__(self, address: str, t0: float) -> None:
        super().__init__(daemon=True, name="replication-watch")
        self.admin = CloudClient(address, admin_key=ADMIN_KEY, timeout=10)
        self.t0 = t0
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.last: pb.SystemStatusResponse | None = None
        self.node_killed_at: float | None = None
        self.saw_offline = False
        self.healed_at: float | None = None
        self.max_short = 0
        self.series: list[tuple[float, int, int]] = []  # (s since start, online, short)

    def run(self) -> None:
        while not self.stop_event.wait(1.0):
            self.poll()
        self.admin.close()

    def poll(self) -> pb.SystemStatusResponse | None:
        try:
            st = self.admin.system_status()
        except errors.CloudError:
            return None  # the gateway is down (a fault) or busy: try again next second
        now = time.monotonic()
        with self.lock:
            self.last = st
            self.series.append((round(now - self.t0, 1), int(st.online_nodes),
                                int(st.under_replicated_chunks)))
            if self.node_killed_at is not None and self.healed_at is None:
                # Only copies on online nodes count as live: once the gateway has marked
                # the killed node offline, the short figure is the truth.
                short = st.under_replicated_chunks
                self.max_short = max(self.max_short, short)
                if st.online_nodes < st.total_nodes:
                    self.saw_offline = True
                if self.saw_offline and not short:
                    self.healed_at = now
                    log(self.t0, f"full replication again ({st.online_nodes} nodes online, "
                                 f"0 chunks short; at most {self.max_short} were)")
        return st

    def node_killed(self, when: float) -> None:
        with self.lock:
            self.node_killed_at = when

    def short(self) -> int | None:
        st = self.poll()
        return None if st is None else int(st.under_replicated_chunks)


def log(t0: float, text: str) -> None:
    print(f"[{time.monotonic() - t0:6.1f}s] {text}", flush=True)


# --- the faults ----------------------------------------------------------------------------


@dataclass
class FaultReport:
    node_killed: str = ""
    node_killed_at_s: float | None = None
    node_held_mb: float = 0.0
    node_restarted_at_s: float | None = None
    replication_s: float | None = None  # node kill -> zero chunks short
    corrupted_node: str = ""
    corrupted_chunk: str = ""
    corrupted_file: str = ""
    corrupted_at_s: float | None = None
    corrupted_copy_after: str = ""  # the overwritten file after the audit and fsck
    gateway_killed_at_s: float | None = None
    gateway_listening_s: float | None = None  # kill -> listening again
    gateway_serving_s: float | None = None  # kill -> status answers with the nodes back


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in (path / "chunks").rglob("*") if p.is_file())


def chunk_path(cluster: Cluster, node: str, sha: str) -> Path:
    return cluster.node_dir(node) / "chunks" / sha[:2] / sha[2:4] / sha


def corrupt_a_chunk(cluster: Cluster, ledger: Ledger, clients: dict[int, CloudClient],
                    victim: str, witness: str) -> tuple[str, str]:
    """Overwrite bytes in the middle of a chunk file on ``victim`` that ``witness`` also
    holds (a good copy stays); a chunk of an acknowledged file when one is found, which is
    then never deleted so the audit reads it. Returns (sha256, file path or "")."""
    with ledger.lock:
        candidates = sorted(ledger.live.values(), key=lambda a: -a.size)[:40]
    for entry in candidates:
        try:
            manifest = clients[entry.account].get_file_chunks(entry.file_id)
        except errors.CloudError:
            continue
        for c in manifest.chunks:
            path = chunk_path(cluster, victim, c.sha256)
            if path.is_file() and chunk_path(cluster, witness, c.sha256).is_file():
                with ledger.lock:
                    if entry.file_id not in ledger.live:
                        break
                    ledger.pinned.add(entry.file_id)
                flip_bytes(path)
                return c.sha256, entry.path
    for path in (cluster.node_dir(victim) / "chunks").rglob("*"):
        if path.is_file() and chunk_path(cluster, witness, path.name).is_file():
            flip_bytes(path)
            return path.name, ""
    return "", ""


def flip_bytes(path: Path, count: int = 64) -> None:
    """Invert ``count`` bytes in the middle of the file, in place (as bit rot would)."""
    with open(path, "r+b") as handle:
        size = os.fstat(handle.fileno()).st_size
        at = max(0, size // 2 - count // 2)
        handle.seek(at)
        old = handle.read(count)
        handle.seek(at)
        handle.write(bytes(b ^ 0xFF for b in old))
        handle.flush()
        os.fsync(handle.fileno())


def sha_of(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return ""


def corrupted_copy_state(path: Path, corrupted_sha: str) -> str:
    """What became of the overwritten chunk file: the scrubber or fsck --repair
    quarantines it, repair may write a good copy back; still the same bytes means nobody
    noticed (yet)."""
    now = sha_of(path)
    if not now:
        return "gone from the node (quarantined or dropped)"
    if now == corrupted_sha:
        return "STILL the corrupted bytes"
    return "replaced by a good copy"


def restart_gateway(cluster: Cluster, watch: ReplicationWatch, nodes_up: int, t0: float,
                    report: FaultReport, cpu: CpuMeter) -> None:
    """SIGKILL the gateway and start it again on the same port and database (its CPU time
    read just before the kill, the new process's counted from its start)."""
    assert cluster.gateway is not None
    killed = time.monotonic()
    cpu.final(cluster.gateway.popen.pid)
    cluster.gateway.stop(signal.SIGKILL)
    report.gateway_killed_at_s = killed - t0
    log(t0, "gateway killed (SIGKILL)")
    cluster.start_gateway()  # same port (Cluster keeps it), same DATA_DIR and database
    assert cluster.gateway is not None
    cpu.start(cluster.gateway.popen.pid)
    report.gateway_listening_s = time.monotonic() - killed
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        st = watch.poll()
        if st is not None and st.online_nodes >= nodes_up:
            report.gateway_serving_s = time.monotonic() - killed
            break
        time.sleep(0.2)
    log(t0, f"gateway listening again after {report.gateway_listening_s:.1f} s, serving "
            f"with {nodes_up} nodes online after "
            f"{fmt_s(report.gateway_serving_s)}")


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


# --- after the run -------------------------------------------------------------------------


@dataclass
class AuditReport:
    checked: int = 0
    lost: int = 0
    corrupt: int = 0
    deletes_checked: int = 0
    resurrected: int = 0
    uncertain: int = 0
    problems: list[str] = field(default_factory=list)


def audit(ledger: Ledger, clients: dict[int, CloudClient]) -> AuditReport:
    """Download every acknowledged, not deleted file and compare its SHA-256; check that
    every acknowledged delete is still gone."""
    report = AuditReport(uncertain=len(ledger.uncertain))

    def check(entry: Acked) -> str | None:
        sink = io.BytesIO()
        for attempt in range(3):
            try:
                clients[entry.account].download_to(entry.file_id, sink)
                break
            except errors.CloudError as exc:
                if attempt == 2 or not isinstance(exc, TRANSIENT):
                    return f"LOST {entry.path} ({entry.file_id}): {kind_of(exc)} {exc}"
                sink = io.BytesIO()
                time.sleep(2)
        got = sink.getvalue()
        if hashlib.sha256(got).hexdigest() != entry.sha256:
            return f"CORRUPT {entry.path} ({entry.file_id}): {len(got)} of {entry.size} bytes"
        return None

    def gone(entry: Acked) -> str | None:
        try:
            clients[entry.account].stat(entry_id=entry.file_id)
        except errors.NotFound:
            return None
        except errors.CloudError as exc:
            return f"UNCHECKED delete {entry.path}: {kind_of(exc)} {exc}"
        return f"RESURRECTED {entry.path} ({entry.file_id}): deleted, but it is back"

    with cf.ThreadPoolExecutor(4) as pool:
        for problem in pool.map(check, list(ledger.live.values())):
            report.checked += 1
            if problem:
                report.problems.append(problem)
                report.lost += problem.startswith("LOST")
                report.corrupt += problem.startswith("CORRUPT")
        for problem in pool.map(gone, list(ledger.deleted.values())):
            report.deletes_checked += 1
            if problem:
                report.problems.append(problem)
                report.resurrected += problem.startswith("RESURRECTED")
    return report


def wait_full_replication(watch: ReplicationWatch, limit: float, t0: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        short = watch.short()
        if short == 0:
            return True
        time.sleep(1)
    log(t0, f"still {watch.short()} chunks short after {limit:.0f} s")
    return False


@dataclass
class FsckResult:
    available: bool
    runs: list[dict[str, object]] = field(default_factory=list)

    @property
    def clean(self) -> bool | None:
        return bool(self.runs) and self.runs[-1]["exit"] == 0 if self.available else None


def run_fsck(address: str, t0: float) -> FsckResult:
    """``cloudgrpc-admin --fsck`` when this build has it; ``--fsck --repair`` and a second
    check when the first one is not clean (exit 0 = nothing remains wrong)."""
    admin = Path(sys.executable).with_name("cloudgrpc-admin")
    argv = [str(admin)] if admin.exists() else [sys.executable, "-m", "cloudgrpc_admin.cli"]
    # The admin key travels in the environment, never on a command line (ps shows those).
    env = {**os.environ, "ADMIN_KEY": ADMIN_KEY, "CLOUDGRPC_SERVER": address}
    helptext = subprocess.run([*argv, "--help"], env=env, capture_output=True, text=True,
                              timeout=60).stdout
    if "--fsck" not in helptext:
        print("fsck: not available in this build")
        return FsckResult(available=False)
    result = FsckResult(available=True)
    for extra in ([], ["--repair"], []):
        started = time.monotonic()
        proc = subprocess.run([*argv, "--server", address, "--json", "--fsck", *extra],
                              env=env, capture_output=True, text=True, timeout=1800)
        kinds: collections.Counter[str] = collections.Counter()
        summary: dict[str, object] = {}
        examples: list[str] = []
        for line in proc.stdout.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and isinstance(item.get("finding"), dict):
                finding = item["finding"]
                kinds[str(finding.get("kind", "?"))] += 1
                if len(examples) < 5:
                    examples.append(json.dumps(finding, sort_keys=True)[:300])
            elif isinstance(item, dict) and isinstance(item.get("summary"), dict):
                summary = item["summary"]
        run = {"command": " ".join(["cloudgrpc-admin --fsck", *extra]),
               "exit": proc.returncode, "seconds": round(time.monotonic() - started, 1),
               "findings": dict(kinds), "summary": summary}
        if not summary:  # not the JSON we expected: keep what it said
            run["output_tail"] = (proc.stdout + proc.stderr).strip().splitlines()[-12:]
        result.runs.append(run)
        log(t0, f"{run['command']}: exit {proc.returncode} in {run['seconds']} s; findings "
                f"{dict(kinds) or 'none'}")
        for line in examples + list(run.get("output_tail", [])):  # type: ignore[arg-type]
            print(f"    {line}")
        if summary:
            print("    summary: " + ", ".join(f"{k}={v}" for k, v in summary.items()))
        if proc.returncode == 0 and not extra:
            break
    return result


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def print_table(opts: argparse.Namespace, ledger: Ledger, elapsed: float,
                how: str) -> dict[str, object]:
    print(f"\n{opts.clients} clients, {elapsed:.0f} s, {opts.database}, {how}, 3 nodes "
          f"(replication 2), faults {'on' if opts.faults else 'off'}")
    print(f"{'operation':10}{'ok':>7}{'ops/s':>8}{'MB/s':>7}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'max ms':>9}{'errors':>8}{'retries':>8}")
    rows: dict[str, object] = {}
    everything: list[float] = []
    for op in OPERATIONS:
        s = ledger.stats[op]
        everything += s.latencies
        rows[op] = {"ok": len(s.latencies), "ops_s": len(s.latencies) / elapsed,
                    "mb_s": s.bytes / elapsed / 1e6, "p50_ms": 1000 * pct(s.latencies, 0.5),
                    "p99_ms": 1000 * pct(s.latencies, 0.99),
                    "max_ms": 1000 * max(s.latencies, default=0.0),
                    "errors": dict(s.errors), "retries": s.retries}
    total_errors = sum(sum(s.errors.values()) for s in ledger.stats.values())
    rows["all"] = {"ok": len(everything), "ops_s": len(everything) / elapsed,
                   "mb_s": sum(s.bytes for s in ledger.stats.values()) / elapsed / 1e6,
                   "p50_ms": 1000 * pct(everything, 0.5), "p99_ms": 1000 * pct(everything, 0.99),
                   "max_ms": 1000 * max(everything, default=0.0), "errors": total_errors,
                   "retries": sum(s.retries for s in ledger.stats.values())}
    for op, r in rows.items():
        assert isinstance(r, dict)
        errs = r["errors"] if isinstance(r["errors"], int) else sum(r["errors"].values())
        print(f"{op:10}{r['ok']:7d}{r['ops_s']:8.1f}{r['mb_s']:7.1f}{r['p50_ms']:9.0f}"
              f"{r['p99_ms']:9.0f}{r['max_ms']:9.0f}{errs:8d}{r['retries']:8d}")
    print("errors by kind (after the client's retries):")
    kinds = {op: dict(ledger.stats[op].errors) for op in OPERATIONS if ledger.stats[op].errors}
    if not kinds:
        print("  none")
    for op, counts in kinds.items():
        print(f"  {op}: " + ", ".join(f"{k} x{n}" for k, n in sorted(counts.items())))
    for what, detail in sorted(ledger.samples.items()):
        print(f"  e.g. {what}: {detail}")
    return rows


# --- the run -------------------------------------------------------------------------------


def shown(name: str, value: str) -> str:
    """A setting's value as printed: never a secret's (a --set could name one)."""
    secret = any(w in name.upper() for w in ("KEY", "SECRET", "PASSWORD", "TOKEN"))
    return "(set)" if secret else value


class Stopped(Exception):
    """SIGTERM: leave through the same clean-up as Ctrl-C."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--accounts", type=int, default=0,
                        help="accounts the clients share (default: one per 4 clients)")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite",
                        help="postgres: a throwaway server started (and stopped) by the bench")
    parser.add_argument("--database-url", default="", help="use this database instead")
    parser.add_argument("--gateways", default="1", metavar="N[,N...]",
                        help="gateways on one PostgreSQL behind HAProxy (more than 1 needs "
                             "--database postgres); a list (1,2) runs each in turn, on a new "
                             "throwaway database each, and compares them")
    parser.add_argument("--haproxy", action="store_true",
                        help="one gateway through HAProxy too (default: clients and nodes "
                             "straight to it, as before --gateways existed)")
    parser.add_argument("--haproxy-global", action="append", default=[], metavar="LINE",
                        help="a line for HAProxy's global section (e.g. "
                             "'tune.h2.initial-window-size 16384'); repeatable")
    parser.add_argument("--connection-per-client", action="store_true",
                        help="each client on a TCP connection of its own (default: the "
                             "clients share one, as gRPC does within a process)")
    parser.add_argument("--faults", action="store_true",
                        help="node SIGKILL at 25%%, chunk corrupted at 40%%, gateway SIGKILL "
                             "and restart at 60%% (with several gateways: the first one)")
    parser.add_argument("--hang-s", type=float, default=60.0,
                        help="an operation taking longer than this counts as a hang")
    parser.add_argument("--node-gb", type=float, default=20.0, help="capacity of each node")
    parser.add_argument("--heal-limit", type=float, default=300,
                        help="longest wait for full replication after the load")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="NAME=VALUE", help="a setting for gateway and nodes, over "
                        "the bench's timings (e.g. REPAIR_CONCURRENCY=16); repeatable")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", metavar="FILE", help="also write a JSON summary here")
    parser.add_argument("--keep", action="store_true",
                        help="keep the cluster's folder (logs, chunks) for a post-mortem")
    opts = parser.parse_args()
    for item in opts.overrides:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--set wants NAME=VALUE, got {item!r}")
        BENCH_TIMINGS[name] = value
    try:
        opts.gateway_counts = [int(n) for n in opts.gateways.split(",")]
    except ValueError:
        parser.error(f"--gateways wants numbers like 1 or 1,2, got {opts.gateways!r}")
    if any(n < 1 for n in opts.gateway_counts):
        parser.error("--gateways: at least 1")
    shared_db = opts.database == "postgres" or opts.database_url.startswith("postgres")
    if not shared_db and any(n > 1 or opts.haproxy for n in opts.gateway_counts):
        parser.error("several gateways (and --haproxy) need PostgreSQL: --database postgres")
    return opts


def main() -> int:
    opts = parse_args()
    signal.signal(signal.SIGTERM, _raise_stopped)
    summaries: list[dict[str, object]] = []
    status = 0
    for index, count in enumerate(opts.gateway_counts):
        if len(opts.gateway_counts) > 1:
            print(f"\n=== run {index + 1} of {len(opts.gateway_counts)}: {count} gateway(s) ===",
                  flush=True)
        code, summary = run_once(opts, count, index)
        if code in (130, 143):
            return code
        summaries.append(summary)
        status = status or code
    if len(summaries) > 1:
        print_comparison(summaries)
    if opts.json:
        doc = summaries[0] if len(summaries) == 1 else {"runs": summaries}
        Path(opts.json).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return status


@dataclass
class RunCosts:
    """CPU seconds each kind of process used while the clients ran (utime + stime from
    /proc/PID/stat, read when the load started and when the clients had stopped), and what
    PostgreSQL ran meanwhile."""

    gateways: int
    through: str
    wall_s: float = 0.0
    ops: int = 0
    mib: float = 0.0
    gateway_cpu_s: float = 0.0
    node_cpu_s: float = 0.0
    haproxy_cpu_s: float | None = None
    postgres_cpu_s: float | None = None  # postmaster and every backend
    clients_cpu_s: float = 0.0  # this process: the client threads
    machine_busy: float = 0.0  # of every core, whoever used it (other jobs too)
    statements: int | None = None
    transactions: int | None = None


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of every core since boot, from /proc/stat's first line."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already in user
    return total - idle, total


def run_once(opts: argparse.Namespace, gateway_count: int,
             index: int) -> tuple[int, dict[str, object]]:
    """One load run with ``gateway_count`` gateways: start, load, audit, report, stop."""
    accounts_n = opts.accounts or max(1, (opts.clients + 3) // 4)
    balanced = gateway_count > 1 or opts.haproxy
    root = Path(tempfile.mkdtemp(prefix="cloudgrpc-load-"))
    pg_dir: Path | None = None
    cluster: Cluster | None = None
    stop = threading.Event()
    threads: list[LoadClient] = []
    watch: ReplicationWatch | None = None
    owners: dict[int, CloudClient] = {}
    stack = contextlib.ExitStack()
    statements: PgStatements | None = None
    try:
        url = opts.database_url
        if not url and opts.database == "postgres":
            # Its own folder: the PostgreSQL server runs as another user when we are root,
            # and our 0700 root folder would keep it out.
            pg_dir = Path(tempfile.mkdtemp(prefix="cloudgrpc-load-pg-"))
            url = subprocess.run([str(ROOT / "scripts" / "postgres-throwaway.sh"), "start",
                                  str(pg_dir)], check=True, capture_output=True, text=True,
                                 env={**os.environ,
                                      "POSTGRES_EXTRA_OPTIONS": PG_STATEMENTS_OPTIONS},
                                 ).stdout.strip()
        env = {"LOG_LEVEL": "WARNING", "GRPC_MAX_WORKERS": "96", **BENCH_TIMINGS}
        how = (f"{gateway_count} gateway{'s' if gateway_count > 1 else ''} "
               + ("behind HAProxy (clients and nodes through it)" if balanced
                  else "(clients and nodes straight to it, no HAProxy)")
               + ("; a connection per client" if opts.connection_per_client
                  else "; the clients share one connection")
               + "".join(f"; HAProxy {line}" for line in opts.haproxy_global if balanced))
        print("settings: " + ", ".join(f"{k}={shown(k, v)}" for k, v in BENCH_TIMINGS.items())
              + f"; hang threshold {opts.hang_s:g} s; database "
              + ("postgres (throwaway)" if pg_dir else ("given URL" if url else "sqlite"))
              + f"; {how}", flush=True)
        site: Site | None = None
        if balanced:
            site = stack.enter_context(gateways_behind_haproxy(
                root, url, gateways=gateway_count, nodes=3, env=env,
                node_capacity_gb=opts.node_gb, haproxy_global=tuple(opts.haproxy_global)))
            cluster = site.front
            restartable = site.gateways[gateway_names(gateway_count)[0]]
        else:
            cluster = Cluster(root, database_url=url, env=env, node_capacity_gb=opts.node_gb)
            stack.callback(cluster.stop)
            cluster.start()
            restartable = cluster
        address = cluster.address
        admin = CloudClient(address, admin_key=ADMIN_KEY)
        tokens = []
        for i in range(accounts_n):
            acct = cluster.sign_up(f"load{i}-run{index}@example.com", f"Load {i}")
            admin.set_user_quota(acct.email, 200 * 1024**3)
            tokens.append(acct.token)
            owners[i] = CloudClient(address, session_token=acct.token)
        admin.close()
        if pg_dir is not None:
            statements = PgStatements(url)
        costs = RunCosts(gateway_count, "HAProxy" if balanced else "direct")
        gateway_cpu, node_cpu, haproxy_cpu = CpuMeter(), CpuMeter(), CpuMeter()
        gateway_procs = ({n: g.gateway for n, g in site.gateways.items() if g.gateway}
                         if site else {"gateway": cluster.gateway} if cluster.gateway else {})
        for proc in gateway_procs.values():
            gateway_cpu.start(proc.popen.pid)
        for proc in cluster.nodes.values():
            node_cpu.start(proc.popen.pid)
        if site is not None:
            haproxy_cpu.start(site.haproxy.popen.pid)
        pg_cpu_before = tree_cpu_seconds(postmaster_pid(pg_dir)) if pg_dir else 0.0
        if statements is not None:
            statements.reset()
        clients_cpu_before = sum(os.times()[:2])
        busy_before = machine_ticks()
        ledger = Ledger()
        t0 = time.monotonic()
        watch = ReplicationWatch(address, t0)
        watch.start()
        threads = [LoadClient(i, i % accounts_n, address, tokens[i % accounts_n], ledger,
                              stop, opts.seed, opts.hang_s, opts.connection_per_client)
                   for i in range(opts.clients)]
        for th in threads:
            th.start()
        log(t0, f"{opts.clients} clients on {accounts_n} accounts started; {how}")
        faults = FaultReport()
        victim, other, witness = "node1", "node2", "node3"
        schedule = ([(0.25, "kill node"), (0.40, "corrupt chunk"), (0.60, "kill gateway")]
                    if opts.faults else [])
        node_down = False
        corrupted_sha = ""
        end = t0 + opts.seconds
        while time.monotonic() < end or (node_down and watch.healed_at is None
                                         and time.monotonic() < end + opts.heal_limit):
            now = time.monotonic()
            if now >= end and not stop.is_set():
                stop.set()
                log(t0, "load stopped; waiting for full replication without "
                        f"{victim} (at most {opts.heal_limit:.0f} s)")
            if schedule and now - t0 >= schedule[0][0] * opts.seconds:
                _, action = schedule.pop(0)
                if action == "kill node":
                    faults.node_held_mb = du(cluster.node_dir(victim)) / 1e6
                    node_cpu.final(cluster.nodes[victim].popen.pid)
                    cluster.stop_node(victim, signal.SIGKILL)
                    node_down = True
                    faults.node_killed = victim
                    faults.node_killed_at_s = time.monotonic() - t0
                    watch.node_killed(time.monotonic())
                    log(t0, f"{victim} killed (SIGKILL), it held {faults.node_held_mb:.0f} MB")
                elif action == "corrupt chunk":
                    sha, path = corrupt_a_chunk(cluster, ledger, owners, other, witness)
                    corrupted_sha = sha_of(chunk_path(cluster, other, sha)) if sha else ""
                    faults.corrupted_node, faults.corrupted_chunk = other, sha
                    faults.corrupted_file, faults.corrupted_at_s = path, time.monotonic() - t0
                    log(t0, f"chunk {sha[:12] or '(none found)'} overwritten on {other}"
                            + (f" (a chunk of {path})" if path else ""))
                else:
                    restart_gateway(restartable, watch, 2 if node_down else 3, t0, faults,
                                    gateway_cpu)
            if node_down and watch.healed_at is not None:
                node_cpu.start(cluster.start_node(victim).popen.pid)
                node_down = False
                faults.node_restarted_at_s = time.monotonic() - t0
                log(t0, f"{victim} started again")
            time.sleep(0.25)
        stop.set()
        joined_by = time.monotonic() + opts.hang_s
        for th in threads:
            th.join(max(0.1, joined_by - time.monotonic()))
        elapsed = opts.seconds  # the clients were told to stop then
        read_costs(costs, ledger, time.monotonic() - t0, gateway_cpu, node_cpu,
                   haproxy_cpu if site else None,
                   tree_cpu_seconds(postmaster_pid(pg_dir)) - pg_cpu_before if pg_dir else None,
                   sum(os.times()[:2]) - clients_cpu_before, busy_before, statements)
        with ledger.lock:
            for idx, (op, started) in ledger.busy.items():
                ledger.hung.append((idx, op, time.monotonic() - started))
        if watch.node_killed_at is not None and watch.healed_at is not None:
            faults.replication_s = watch.healed_at - watch.node_killed_at
        if node_down:
            cluster.start_node(victim)
            faults.node_restarted_at_s = time.monotonic() - t0
            log(t0, f"{victim} started again" + (
                "" if watch.healed_at is not None
                else f" (no full replication without it within {opts.heal_limit:.0f} s)"))
        cluster.wait_nodes_online(3, timeout=60)
        healed = wait_full_replication(watch, opts.heal_limit, t0)
        log(t0, "auditing every acknowledged file" + ("" if healed else
                                                       " (replication not complete)"))
        result = audit(ledger, owners)
        log(t0, f"audit done: {result.checked} files read back")
        # Let garbage collection pass over the node that came back (its copies of chunks
        # deleted meanwhile) before fsck looks.
        settle = (faults.node_restarted_at_s or 0.0) + t0 + 3 * float(
            BENCH_TIMINGS["GC_INTERVAL_S"]) + float(BENCH_TIMINGS["GC_IDLE_S"])
        time.sleep(max(0.0, settle - time.monotonic()))
        fsck = run_fsck(address, t0)
        if faults.corrupted_chunk:  # after scrub, the audit's reads and fsck had their go
            faults.corrupted_copy_after = corrupted_copy_state(
                chunk_path(cluster, other, faults.corrupted_chunk), corrupted_sha)
        return report(opts, ledger, elapsed, faults, result, fsck, healed, list(watch.series),
                      costs, how)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything", file=sys.stderr)
        return 130, {}
    except Stopped:
        print("\nterminated: stopping everything", file=sys.stderr)
        return 143, {}
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip this
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop.set()
        if watch is not None:
            watch.stop_event.set()
        for client in owners.values():
            client.close()
        if statements is not None:
            statements.close()
        stack.close()  # the gateways, nodes and HAProxy, by PID
        if pg_dir is not None:
            subprocess.run([str(ROOT / "scripts" / "postgres-throwaway.sh"), "stop",
                            str(pg_dir)], check=False, capture_output=True)
            shutil.rmtree(pg_dir, ignore_errors=True)
        if opts.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _raise_stopped)


def _raise_stopped(signum: int, frame: object) -> None:
    raise Stopped()


def read_costs(costs: RunCosts, ledger: Ledger, wall_s: float, gateway_cpu: CpuMeter,
               node_cpu: CpuMeter, haproxy_cpu: CpuMeter | None, postgres_cpu_s: float | None,
               clients_cpu_s: float, busy_before: tuple[int, int],
               statements: PgStatements | None) -> None:
    """Fill ``costs`` right after the clients stopped (before the audit adds its own)."""
    busy_after = machine_ticks()
    costs.wall_s = wall_s
    with ledger.lock:
        costs.ops = sum(len(s.latencies) for s in ledger.stats.values())
        costs.mib = sum(s.bytes for s in ledger.stats.values()) / MiB
    costs.gateway_cpu_s = gateway_cpu.seconds()
    costs.node_cpu_s = node_cpu.seconds()
    costs.haproxy_cpu_s = haproxy_cpu.seconds() if haproxy_cpu is not None else None
    costs.postgres_cpu_s = postgres_cpu_s
    costs.clients_cpu_s = clients_cpu_s
    costs.machine_busy = ((busy_after[0] - busy_before[0])
                          / max(1, busy_after[1] - busy_before[1]))
    if statements is not None:
        counts = statements.counts()
        costs.statements, costs.transactions = counts.statements, counts.transactions


def print_costs(costs: RunCosts) -> None:
    ops = max(1, costs.ops)
    gib = max(costs.mib / 1024, 1e-9)
    print(f"CPU while the clients ran ({costs.wall_s:.0f} s wall; utime+stime from "
          "/proc/PID/stat before and after; per operation = over every completed operation "
          "of every kind, per GiB = over the bytes uploaded and downloaded):")

    def line(what: str, seconds: float | None) -> None:
        if seconds is None:
            return
        print(f"  {what:34}{seconds:8.1f} s  {1000 * seconds / ops:7.1f} ms/op  "
              f"{seconds / gib:6.2f} s/GiB  {seconds / max(costs.wall_s, 1e-9):5.2f} cores")

    line(f"gateway{'s' if costs.gateways > 1 else ''} ({costs.gateways}, {costs.through})",
         costs.gateway_cpu_s)
    line("storage nodes (3)", costs.node_cpu_s)
    line("HAProxy", costs.haproxy_cpu_s)
    line("PostgreSQL (postmaster + backends)", costs.postgres_cpu_s)
    line("clients (this bench process)", costs.clients_cpu_s)
    print(f"  the whole machine was {100 * costs.machine_busy:.0f} % busy on "
          f"{os.cpu_count()} cores (other jobs included)")
    if costs.statements is not None:
        print(f"  PostgreSQL: {costs.statements} statements sent ({costs.statements / ops:.1f}/op; "
              "BEGIN, COMMIT and pool pings included, foreign-key checks not), "
              f"about {costs.transactions} transactions ({(costs.transactions or 0) / ops:.1f}"
              "/op; pg_stat_statements and pg_stat_database, reset when the load started)")


def print_comparison(summaries: list[dict[str, object]]) -> None:
    """One line per run: throughput, latency of the whole mix, gateway CPU per operation."""
    print("\ncomparison (same clients, seconds and seed; each run on a new database):")
    print(f"{'gateways':18}{'ops/s':>8}{'MB/s':>7}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'gw ms/op':>10}{'gw cores':>10}{'busy %':>8}  result")
    for s in summaries:
        costs = s["costs"]
        assert isinstance(costs, dict)
        everything = s["operations"]["all"]  # type: ignore[index]
        ops = max(1, int(costs["ops"]))
        label = f"{costs['gateways']} ({costs['through']})"
        print(f"{label:18}{everything['ops_s']:8.1f}{everything['mb_s']:7.1f}"
              f"{everything['p50_ms']:8.0f}{everything['p99_ms']:8.0f}"
              f"{1000 * costs['gateway_cpu_s'] / ops:10.1f}"
              f"{costs['gateway_cpu_s'] / max(costs['wall_s'], 1e-9):10.2f}"
              f"{100 * costs['machine_busy']:8.0f}  {'ok' if s['ok'] else 'FAILED'}")
    print(f"this machine has {os.cpu_count()} cores shared by the clients, gateways, nodes, "
          "HAProxy and PostgreSQL (and other jobs): a second gateway adds a process, not "
          "cores; a gain needs cores the first gateway could not use")


def thin(series: list[tuple[float, int, int]], step: float) -> list[tuple[float, int, int]]:
    """One sample per ``step`` seconds, plus every change of the online node count."""
    out: list[tuple[float, int, int]] = []
    for sample in series:
        if not out or sample[0] - out[-1][0] >= step or sample[1] != out[-1][1]:
            out.append(sample)
    return out


def report(opts: argparse.Namespace, ledger: Ledger, elapsed: float, faults: FaultReport,
           result: AuditReport, fsck: FsckResult, healed: bool,
           series: list[tuple[float, int, int]], costs: RunCosts,
           how: str) -> tuple[int, dict[str, object]]:
    rows = print_table(opts, ledger, elapsed, how)
    print_costs(costs)
    print(f"hangs (> {opts.hang_s:g} s): {len(ledger.hung)}"
          + "".join(f"\n  client {i} {op} {s:.0f} s" for i, op, s in ledger.hung))
    print(f"audit: {result.checked} acknowledged files checked, {result.lost} lost, "
          f"{result.corrupt} corrupt; {result.deletes_checked} acknowledged deletes checked, "
          f"{result.resurrected} back; {result.uncertain} deletes of unknown outcome skipped; "
          f"{len(ledger.corrupt_reads)} corrupt reads during the run")
    for line in result.problems[:30] + ledger.corrupt_reads[:10]:
        print(f"  {line}")
    if opts.faults:
        print(f"node loss: {faults.node_killed} killed at {fmt_s(faults.node_killed_at_s)} "
              f"holding {faults.node_held_mb:.0f} MB; full replication without it "
              + (f"{faults.replication_s:.1f} s after the kill" if faults.replication_s
                 is not None else "not reached")
              + f"; started again at {fmt_s(faults.node_restarted_at_s)}")
        print(f"corruption: chunk {faults.corrupted_chunk[:16] or '-'} on "
              f"{faults.corrupted_node} at {fmt_s(faults.corrupted_at_s)}"
              + (f" ({faults.corrupted_file})" if faults.corrupted_file else "")
            + f"; by the end: {faults.corrupted_copy_after or '-'}")
        print(f"gateway restart: killed at {fmt_s(faults.gateway_killed_at_s)}, listening "
              f"after {fmt_s(faults.gateway_listening_s)}, serving with the nodes after "
              f"{fmt_s(faults.gateway_serving_s)}")
    if series:
        print("chunks short over time (s: short/online): " + ", ".join(
            f"{t:.0f}: {short}/{online}" for t, online, short in thin(series, 10.0)))
    print(f"full replication at the end: {'yes' if healed else 'NO'}")
    print("fsck: " + ("not available in this build" if not fsck.available else
                      "clean" if fsck.clean else "NOT clean")
          + (f" (after --repair; the first check exited {fsck.runs[0]['exit']})"
             if fsck.available and len(fsck.runs) > 1 else ""))
    acked = len(ledger.live) + len(ledger.deleted) + len(ledger.uncertain)
    print(f"acknowledged: {acked} uploads, {len(ledger.deleted)} deletes")
    # A clean fsck while the overwritten bytes still sit in place would be fsck missing
    # corruption; without fsck it is only a copy the scrubber has not reached yet.
    missed = bool(fsck.clean) and faults.corrupted_copy_after.startswith("STILL")
    if missed:
        print("fsck said clean, but the overwritten chunk file is still corrupt on "
              f"{faults.corrupted_node}")
    ok = (acked > 0 and result.lost == 0 and result.corrupt == 0 and result.resurrected == 0
          and not ledger.corrupt_reads and not ledger.hung and fsck.clean is not False
          and not missed)
    summary = {"clients": opts.clients, "seconds": elapsed, "database": opts.database,
               "gateways": costs.gateways, "through": costs.through,
               "faults": opts.faults, "operations": rows, "costs": asdict(costs),
               "settings": {k: shown(k, v) for k, v in BENCH_TIMINGS.items()},
               "hangs": len(ledger.hung), "hang_threshold_s": opts.hang_s,
               "audit": asdict(result), "fault_report": asdict(faults),
               "full_replication_at_end": healed, "short_chunks_series": series,
               "fsck": {"available": fsck.available, "clean": fsck.clean, "runs": fsck.runs},
               "ok": ok}
    print("RESULT: " + ("ok" if ok else "FAILED"))
    return (0 if ok else 1), summary


if __name__ == "__main__":
    sys.exit(main())
