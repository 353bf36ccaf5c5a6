"""What chunk compression saves on disk and costs in throughput, through the real API.

Starts two clusters on this machine, each a gateway and three storage nodes (replication
2): one whose nodes compress (``CHUNK_COMPRESSION=zstd``, the default) and one whose nodes
do not (``CHUNK_COMPRESSION=off``). Through the streaming UploadFile / DownloadFile it
uploads and downloads ``--size-mib`` of text-like data (this Python's standard library
sources, shuffled differently on every run so no chunk repeats) and of random bytes (as
photos, video and archives are) on each, interleaved so that background load hits both
alike, checks every download byte for byte, and prints the medians: MB/s, the bytes the
nodes' disks took per byte uploaded, and compression's throughput cost per kind of data.

    python bench/bench_compression.py [--size-mib 256] [--runs 3] [--level 1]

The target (issue 17): uploading incompressible data with compression on runs at >= 0.95
of the speed with it off; text shrinks.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cloudgrpc_node.chunk_codec import ChunkCodec  # noqa: E402
from cloudgrpc_node.chunk_store import ChunkStore  # noqa: E402
from cloudgrpc_proto import cloud_storage_pb2 as pb  # noqa: E402
from tests.cluster import ADMIN_KEY, Account, Cluster  # noqa: E402

MB = 1_000_000
MiB = 1024 * 1024
MESSAGE = MiB  # bytes per UploadFile message, as the CLI sends


def stdlib_sources() -> list[bytes]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return [p.read_bytes() for p in sorted(root.rglob("*.py"))
            if "site-packages" not in p.parts and p.is_file()]


def text_data(sources: list[bytes], size: int, run: int) -> bytes:
    """``size`` bytes of source code: the files in a run-specific order, each with a
    header naming the run, so no chunk of one run equals a chunk of another."""
    order = list(range(len(sources)))
    rng = random.Random(run)
    parts: list[bytes] = []
    total = 0
    round_ = 0
    while total < size:
        rng.shuffle(order)
        for i in order:
            part = f"# --- run {run} round {round_} file {i} ---\n".encode() + sources[i]
            parts.append(part)
            total += len(part)
            if total >= size:
                break
        round_ += 1
    return b"".join(parts)[:size]


def random_data(size: int, run: int) -> bytes:
    return os.urandom(size)


def upload(account: Account, data: bytes, name: str) -> str:
    def requests() -> Iterator[pb.UploadFileRequest]:
        yield pb.UploadFileRequest(metadata=pb.FileMetadata(
            session_token=account.token, filename=name, file_size=len(data)))
        view = memoryview(data)
        for i in range(0, len(data), MESSAGE):
            yield pb.UploadFileRequest(chunk_data=bytes(view[i:i + MESSAGE]))

    return account.cluster.files.UploadFile(requests(), timeout=900).file_id


def download_digest(account: Account, file_id: str) -> str:
    digest = hashlib.sha256()
    for msg in account.cluster.files.DownloadFile(pb.DownloadFileRequest(
            session_token=account.token, file_id=file_id), timeout=900):
        if msg.WhichOneof("data") == "chunk_data":
            digest.update(msg.chunk_data)
    return digest.hexdigest()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far (``/proc/PID/stat``)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def disk_bytes(cluster: Cluster) -> int:
    """Bytes of chunk files on every node's disk (each replica counts)."""
    return sum(p.stat().st_size for name in cluster.nodes
               for p in (cluster.node_dir(name) / "chunks").rglob("*") if p.is_file())


class Side:
    """One cluster and its measurements, per kind of data."""

    def __init__(self, label: str, root: Path, compression: str, level: int) -> None:
        self.label = label
        self.cluster = Cluster(root, node_capacity_gb=16.0, env={
            "LOG_LEVEL": "WARNING", "CHUNK_COMPRESSION": compression,
            "CHUNK_COMPRESSION_LEVEL": str(level), "HEARTBEAT_INTERVAL_S": "1",
            "NODE_TIMEOUT_S": "30"})
        self.account: Account | None = None
        self.up: dict[str, list[float]] = {}
        self.down: dict[str, list[float]] = {}
        self.disk: dict[str, list[float]] = {}
        # CPU seconds the nodes spent per GiB moved: what compression costs, measured in a
        # way the machine's other load does not blur the way it blurs wall-clock speed.
        self.node_cpu_up: dict[str, list[float]] = {}
        self.node_cpu_down: dict[str, list[float]] = {}
        self.all_cpu_up: dict[str, list[float]] = {}  # gateway and nodes together

    def node_pids(self) -> list[int]:
        return [proc.popen.pid for proc in self.cluster.nodes.values()]

    def all_pids(self) -> list[int]:
        assert self.cluster.gateway is not None
        return [self.cluster.gateway.popen.pid, *self.node_pids()]

    def start(self) -> None:
        self.cluster.start()
        self.account = self.cluster.sign_up(f"bench-{self.label}@example.com", "Bench")
        self.cluster.admin.SetUserQuota(pb.SetUserQuotaRequest(
            admin_key=ADMIN_KEY, email=self.account.email, storage_bytes=64 * 1024**3))

    def measure(self, kind: str, data: bytes, run: int) -> bool:
        assert self.account is not None
        want = hashlib.sha256(data).hexdigest()
        gib = len(data) / 1024**3
        before = disk_bytes(self.cluster)
        cpu = cpu_seconds(self.node_pids())
        cpu_all = cpu_seconds(self.all_pids())
        t = time.perf_counter()
        fid = upload(self.account, data, f"{kind}-{run}.bin")
        up = len(data) / (time.perf_counter() - t) / MB
        cpu_up = (cpu_seconds(self.node_pids()) - cpu) / gib
        self.all_cpu_up.setdefault(kind, []).append(
            (cpu_seconds(self.all_pids()) - cpu_all) / gib)
        stored = disk_bytes(self.cluster) - before
        cpu = cpu_seconds(self.node_pids())
        t = time.perf_counter()
        got = download_digest(self.account, fid)
        down = len(data) / (time.perf_counter() - t) / MB
        cpu_down = (cpu_seconds(self.node_pids()) - cpu) / gib
        self.node_cpu_up.setdefault(kind, []).append(cpu_up)
        self.node_cpu_down.setdefault(kind, []).append(cpu_down)
        self.up.setdefault(kind, []).append(up)
        self.down.setdefault(kind, []).append(down)
        self.disk.setdefault(kind, []).append(stored / (2 * len(data)))  # 2 replicas
        print(f"  run {run + 1} {kind:6} compression {self.label:3}: upload {up:6.1f} MB/s, "
              f"download {down:6.1f} MB/s, disk {stored / 2 / len(data):.3f} x plaintext, "
              f"node CPU {cpu_up:.1f} s/GiB up, {cpu_down:.1f} s/GiB down", flush=True)
        return got == want


def store_cpu(root: Path, chunks: list[bytes], level: int, rounds: int = 7
              ) -> dict[str, tuple[float, float]]:
    """CPU milliseconds per chunk a node's store spends to put and to read back these
    chunks, compression on and off, alternating (the one place compression is paid)."""
    hashes = [hashlib.sha256(c).hexdigest() for c in chunks]
    stores = {"on": ChunkStore(root / "store-on", 1 << 40, ChunkCodec(True, level)),
              "off": ChunkStore(root / "store-off", 1 << 40, ChunkCodec(False))}
    puts: dict[str, list[float]] = {"on": [], "off": []}
    gets: dict[str, list[float]] = {"on": [], "off": []}
    for r in range(rounds):
        for label in (("on", "off") if r % 2 == 0 else ("off", "on")):
            store = stores[label]
            t = time.process_time()
            for sha, chunk in zip(hashes, chunks, strict=True):
                store.put(sha, chunk)
            puts[label].append((time.process_time() - t) * 1000 / len(chunks))
            t = time.process_time()
            for sha in hashes:
                store.get(sha)
            gets[label].append((time.process_time() - t) * 1000 / len(chunks))
            store.delete(hashes)
    return {label: (statistics.median(puts[label]), statistics.median(gets[label]))
            for label in stores}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--level", type=int, default=1, help="CHUNK_COMPRESSION_LEVEL")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    opts = parser.parse_args()
    size = opts.size_mib * MiB
    root = Path(tempfile.mkdtemp(prefix="cloudgrpc-bench-zstd-"))
    sides = [Side("on", root / "on", "zstd", opts.level), Side("off", root / "off", "off", 1)]
    sources = stdlib_sources()
    kinds: dict[str, Callable[[int, int], bytes]] = {
        "text": lambda n, run: text_data(sources, n, run), "random": random_data}
    try:
        print("a node's chunk store alone, CPU ms per 4 MiB chunk (put / read back):")
        for kind, make in (("text", lambda: text_data(sources, 64 * MiB, 99)),
                           ("random", lambda: os.urandom(64 * MiB))):
            blob = make()
            cpu = store_cpu(root, [blob[i:i + 4 * MiB] for i in range(0, len(blob), 4 * MiB)],
                            opts.level)
            print(f"  {kind:6}  on {cpu['on'][0]:6.2f} / {cpu['on'][1]:5.2f}   "
                  f"off {cpu['off'][0]:6.2f} / {cpu['off'][1]:5.2f}", flush=True)
        for side in sides:
            side.start()
        for run in range(opts.runs):
            for kind, make in kinds.items():
                # Fresh bytes per run and side (no deduplication flatters either), the
                # side that goes first alternating (neither always gets a warm cache).
                order = sides if run % 2 == 0 else sides[::-1]
                for side in order:
                    data = make(size, run * 2 + (side.label == "off"))
                    if not side.measure(kind, data, run):
                        print("MISMATCH: downloaded bytes differ from the upload",
                              file=sys.stderr)
                        return 1
                    del data
        on, off = sides
        med = statistics.median
        print()
        print(f"{opts.size_mib} MiB per upload, 3 nodes, replication 2, zstd level "
              f"{opts.level}, {MESSAGE // MiB} MiB messages, median of {opts.runs} runs")
        print(f"{'kind':8}{'compression':>12}{'upload MB/s':>13}{'download MB/s':>15}"
              f"{'disk/plain':>12}{'node CPU s/GiB up':>19}{'down':>6}")
        for kind in kinds:
            for side in sides:
                print(f"{kind:8}{side.label:>12}{med(side.up[kind]):13.1f}"
                      f"{med(side.down[kind]):15.1f}{med(side.disk[kind]):12.3f}"
                      f"{med(side.node_cpu_up[kind]):19.1f}{med(side.node_cpu_down[kind]):6.1f}")
        print()
        verdict = True
        for kind in kinds:
            ratio = med(on.disk[kind]) and 1 / med(on.disk[kind])
            up = med(on.up[kind]) / med(off.up[kind])
            down = med(on.down[kind]) / med(off.down[kind])
            cpu_on, cpu_off = med(on.all_cpu_up[kind]), med(off.all_cpu_up[kind])
            print(f"{kind}: compression ratio {ratio:.2f}x (the disks hold "
                  f"{med(on.disk[kind]):.3f} of the plaintext)")
            # each run's on and off ran back to back: their ratio cancels slow swings of
            # the machine's other load, which the ratio of medians does not
            paired = med(a / b for a, b in zip(on.up[kind], off.up[kind], strict=True))
            print(f"  compression on: upload {up:.2f} x off (cost {100 * (1 - up):+.1f} %; "
                  f"run by run {paired:.2f} x), download {down:.2f} x off")
            print(f"  CPU of gateway and nodes per GiB uploaded: {cpu_on:.1f} s on, "
                  f"{cpu_off:.1f} s off (where CPU is the limit, upload at "
                  f"{cpu_off / cpu_on:.2f} x off)")
            if kind == "random":
                ok = up >= 0.95
                verdict = verdict and ok
                print(f"  target: upload with compression on >= 0.95 x off: "
                      f"{'met' if ok else 'MISSED'} ({up:.2f} x; run by run {paired:.2f} x)")
        return 0 if verdict else 2
    finally:
        for side in sides:
            side.cluster.stop()
        if not opts.keep:
            subprocess.run(["rm", "-rf", str(root)], check=False)


if __name__ == "__main__":
    sys.exit(main())
