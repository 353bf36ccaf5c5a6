"""Upload and download throughput through the gRPC API, next to a local ``cp``.

Starts a gateway and three storage nodes (replication 2) on this machine, uploads a
file of random bytes with the streaming UploadFile, downloads it with DownloadFile,
checks it byte for byte, and prints MB/s for both together with the ratio to a plain
``cp`` of the same file in the same run. Each run also uploads fresh bytes with the client
library (``CloudClient.upload``, what the CLI and the mount use) with direct writes (chunk
bytes to the nodes under write grants) and without (every byte through the gateway), and
reports the gateway's CPU seconds per GiB for each way (utime + stime from /proc), and
downloads the file with the client library too (``CloudClient.download_to``: chunks from
the nodes with the gateway's read tokens).

    python bench/bench_transfer.py [--size-mib 256] [--message-kib 1024] [--runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import cpu_seconds  # noqa: E402
from cloudgrpc_proto import cloud_storage_pb2 as pb  # noqa: E402
from cloudgrpc_proto.client import CloudClient  # noqa: E402
from cloudgrpc_proto.transfer import UploadStats  # noqa: E402
from tests.cluster import Cluster  # noqa: E402

MB = 1_000_000


def make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 8 << 20))
            digest.update(block)
            f.write(block)
            left -= len(block)
    return digest.hexdigest()


def upload(cluster: Cluster, token: str, path: Path, name: str, message: int) -> str:
    size = path.stat().st_size

    def requests() -> Iterator[pb.UploadFileRequest]:
        yield pb.UploadFileRequest(metadata=pb.FileMetadata(
            session_token=token, filename=name, file_size=size))
        with path.open("rb", buffering=0) as f:
            while True:
                block = f.read(message)
                if not block:
                    return
                yield pb.UploadFileRequest(chunk_data=block)

    return cluster.files.UploadFile(requests(), timeout=600).file_id


def client_upload(cluster: Cluster, token: str, path: Path, name: str, direct: bool
                  ) -> tuple[float, float, int]:
    """(seconds, gateway CPU seconds, chunks written directly) of one CloudClient.upload."""
    assert cluster.gateway is not None
    pid = cluster.gateway.popen.pid
    with CloudClient(cluster.address, session_token=token, timeout=60) as client:
        client.direct_writes = direct
        stats = UploadStats()
        cpu = cpu_seconds(pid) or 0.0
        t = time.perf_counter()
        client.upload(str(path), filename=name, stats=stats)
        took = time.perf_counter() - t
        return took, (cpu_seconds(pid) or 0.0) - cpu, stats.chunks_direct


def download(cluster: Cluster, token: str, file_id: str, dest: Path) -> str:
    digest = hashlib.sha256()
    with dest.open("wb") as f:
        for msg in cluster.files.DownloadFile(pb.DownloadFileRequest(
                session_token=token, file_id=file_id), timeout=600):
            if msg.WhichOneof("data") == "chunk_data":
                digest.update(msg.chunk_data)
                f.write(msg.chunk_data)
    return digest.hexdigest()


def client_download(cluster: Cluster, token: str, file_id: str, dest: Path, direct: bool
                    ) -> tuple[float, str, int]:
    """(seconds, SHA-256, chunks read from the nodes) of one CloudClient.download_to."""
    with CloudClient(cluster.address, session_token=token) as client:
        client.direct_reads = direct
        t = time.perf_counter()
        with dest.open("wb") as f:
            client.download_to(file_id, f)
        took = time.perf_counter() - t
        fetched = client.node_reads.fetched if client.node_reads else 0
    digest = hashlib.sha256()
    with dest.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    dest.unlink()
    return took, digest.hexdigest(), fetched


def drop_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--message-kib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    opts = parser.parse_args()
    size = opts.size_mib * 1024 * 1024
    root = Path(tempfile.mkdtemp(prefix="cloudgrpc-bench-"))
    # production heartbeats (the test harness beats every 0.5 s, which would be most of
    # the gateway CPU an upload is charged with)
    cluster = Cluster(root, env={"LOG_LEVEL": "WARNING", "HEARTBEAT_INTERVAL_S": "5",
                                 "NODE_TIMEOUT_S": "30"})
    try:
        cluster.start()
        acct = cluster.sign_up("bench@example.com", "Bench")
        cluster.admin.SetUserQuota(pb.SetUserQuotaRequest(
            admin_key="test-admin-key", email=acct.email, storage_bytes=64 * 1024**3))
        src = root / "source.bin"
        make_file(src, size)
        ups, downs, cps = [], [], []
        directs, streamed, cpu_direct, cpu_streamed = [], [], [], []
        client_downs: list[float] = []
        gib = size / 1024**3
        for run in range(opts.runs):
            copy = root / f"copy-{run}.bin"
            t = time.perf_counter()
            shutil.copyfile(src, copy)
            os.sync()
            cps.append(size / (time.perf_counter() - t) / MB)
            copy.unlink()
            # Each run uploads fresh random bytes so deduplication does not flatter it.
            want = make_file(src, size)
            drop_page_cache(src)
            t = time.perf_counter()
            fid = upload(cluster, acct.token, src, f"bench-{run}.bin", opts.message_kib * 1024)
            ups.append(size / (time.perf_counter() - t) / MB)
            out = root / f"down-{run}.bin"
            t = time.perf_counter()
            got = download(cluster, acct.token, fid, out)
            downs.append(size / (time.perf_counter() - t) / MB)
            out.unlink()
            took, digest, fetched = client_download(cluster, acct.token, fid, out, True)
            client_downs.append(size / took / MB)
            if digest != want or not fetched:
                print("client download: bytes differ or no chunk came from the nodes",
                      file=sys.stderr)
                return 1
            for direct in (True, False):
                make_file(src, size)
                drop_page_cache(src)
                took, cpu, written = client_upload(cluster, acct.token, src,
                                                   f"client-{run}-{direct}.bin", direct)
                (directs if direct else streamed).append(size / took / MB)
                (cpu_direct if direct else cpu_streamed).append(cpu / gib)
                if direct and not written:
                    print("direct writes were not used", file=sys.stderr)
                    return 1
            if got != want:
                print("MISMATCH: downloaded bytes differ from the upload", file=sys.stderr)
                return 1
            print(f"run {run + 1}: upload {ups[-1]:.0f} MB/s, download {downs[-1]:.0f} MB/s "
                  f"(client, direct: {client_downs[-1]:.0f} MB/s), "
                  f"local cp {cps[-1]:.0f} MB/s; client upload direct {directs[-1]:.0f} MB/s "
                  f"({cpu_direct[-1]:.2f} gateway CPU s/GiB), through the gateway "
                  f"{streamed[-1]:.0f} MB/s ({cpu_streamed[-1]:.2f} s/GiB)", flush=True)
        up, down, cp = (statistics.median(x) for x in (ups, downs, cps))
        direct_up, streamed_up = statistics.median(directs), statistics.median(streamed)
        print()
        print(f"file: {opts.size_mib} MiB, 3 nodes, replication 2, "
              f"{opts.message_kib} KiB messages, median of {opts.runs} runs")
        print(f"{'':12}{'MB/s':>8}{'vs cp':>8}{'target':>10}")
        print(f"{'upload':12}{up:8.0f}{up / cp:8.2f}{'>= 250':>10}   raw UploadFile stream")
        print(f"{'  client':12}{direct_up:8.0f}{direct_up / cp:8.2f}{'>= 250':>10}   "
              f"CloudClient.upload, direct writes: gateway CPU "
              f"{statistics.median(cpu_direct):.2f} s/GiB (target <= 0.3)")
        print(f"{'  client':12}{streamed_up:8.0f}{streamed_up / cp:8.2f}{'':>10}   "
              f"CloudClient.upload through the gateway: gateway CPU "
              f"{statistics.median(cpu_streamed):.2f} s/GiB")
        client_down = statistics.median(client_downs)
        print(f"{'download':12}{down:8.0f}{down / cp:8.2f}{'>= 350':>10}   raw DownloadFile stream")
        print(f"{'  client':12}{client_down:8.0f}{client_down / cp:8.2f}{'>= 350':>10}   "
              f"CloudClient.download_to, chunks from the nodes")
        print(f"{'local cp':12}{cp:8.0f}{1.0:8.2f}")
        return 0
    finally:
        cluster.stop()
        if not opts.keep:
            subprocess.run(["rm", "-rf", str(root)], check=False)


if __name__ == "__main__":
    sys.exit(main())
