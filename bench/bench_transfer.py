"""Upload and download throughput through the gRPC API, next to a local ``cp``.

Starts a gateway and three storage nodes (replication 2) on this machine, uploads a
file of random bytes with the streaming UploadFile, downloads it with DownloadFile,
checks it byte for byte, and prints MB/s for both together with the ratio to a plain
``cp`` of the same file in the same run.

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

from cloudgrpc_proto import cloud_storage_pb2 as pb  # noqa: E402
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


def download(cluster: Cluster, token: str, file_id: str, dest: Path) -> str:
    digest = hashlib.sha256()
    with dest.open("wb") as f:
        for msg in cluster.files.DownloadFile(pb.DownloadFileRequest(
                session_token=token, file_id=file_id), timeout=600):
            if msg.WhichOneof("data") == "chunk_data":
                digest.update(msg.chunk_data)
                f.write(msg.chunk_data)
    return digest.hexdigest()


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
    cluster = Cluster(root, env={"LOG_LEVEL": "WARNING"})
    try:
        cluster.start()
        acct = cluster.sign_up("bench@example.com", "Bench")
        cluster.admin.SetUserQuota(pb.SetUserQuotaRequest(
            admin_key="test-admin-key", email=acct.email, storage_bytes=64 * 1024**3))
        src = root / "source.bin"
        make_file(src, size)
        ups, downs, cps = [], [], []
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
            if got != want:
                print("MISMATCH: downloaded bytes differ from the upload", file=sys.stderr)
                return 1
            print(f"run {run + 1}: upload {ups[-1]:.0f} MB/s, download {downs[-1]:.0f} MB/s, "
                  f"local cp {cps[-1]:.0f} MB/s", flush=True)
        up, down, cp = (statistics.median(x) for x in (ups, downs, cps))
        print()
        print(f"file: {opts.size_mib} MiB, 3 nodes, replication 2, "
              f"{opts.message_kib} KiB messages, median of {opts.runs} runs")
        print(f"{'':12}{'MB/s':>8}{'vs cp':>8}{'target':>10}")
        print(f"{'upload':12}{up:8.0f}{up / cp:8.2f}{'>= 120':>10}")
        print(f"{'download':12}{down:8.0f}{down / cp:8.2f}{'>= 200':>10}")
        print(f"{'local cp':12}{cp:8.0f}{1.0:8.2f}")
        return 0
    finally:
        cluster.stop()
        if not opts.keep:
            subprocess.run(["rm", "-rf", str(root)], check=False)


if __name__ == "__main__":
    sys.exit(main())
