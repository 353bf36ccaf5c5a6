"""Measure the storage node's ceiling: ChunkStore put/get MB/s, directly and over loopback gRPC.

The gateway's end-to-end targets (download >= 200 MB/s, upload >= 120 MB/s with replication 2)
are only reachable if one node does much better than that; this tells us by how much.

    python bench/bench_node_store.py [--count 64] [--size-mib 4] [--threads 1,2,4] [--dir D]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path

import grpc

from cloudgrpc_node.chunk_store import ChunkStore
from cloudgrpc_node.service import CHANNEL_OPTIONS, SERVER_OPTIONS, ChunkService, add_to_server
from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc

MIB = 1024 * 1024


def make_chunks(count: int, size: int) -> list[tuple[str, bytes]]:
    import hashlib

    chunks = []
    for _ in range(count):
        data = os.urandom(size)
        chunks.append((hashlib.sha256(data).hexdigest(), data))
    return chunks


def timed(threads: int, items: list, work: Callable) -> float:
    """Seconds to run ``work`` over ``items`` on ``threads`` threads."""

    def run(item: object) -> None:  # drop the result: holding them all would measure page faults
        work(item)

    start = time.perf_counter()
    if threads == 1:
        for item in items:
            run(item)
    else:
        with futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(run, items))
    return time.perf_counter() - start


def report(label: str, nbytes: int, seconds: float) -> None:
    print(f"  {label:<34} {nbytes / MIB / seconds:9.1f} MiB/s  ({seconds:.2f} s)", flush=True)


def bench_store(root: Path, chunks: list[tuple[str, bytes]], threads: int) -> None:
    total = sum(len(d) for _, d in chunks)
    store = ChunkStore(root, 1 << 40)
    report(
        f"put new      x{threads} threads", total, timed(threads, chunks, lambda c: store.put(*c))
    )
    report(
        f"put dedup    x{threads} threads", total, timed(threads, chunks, lambda c: store.put(*c))
    )
    report(
        f"get whole    x{threads} threads", total, timed(threads, chunks, lambda c: store.get(c[0]))
    )
    half = len(chunks[0][1]) // 2
    report(
        f"get 2nd half x{threads} threads",
        total // 2,
        timed(threads, chunks, lambda c: store.get(c[0], half)),
    )
    store.delete(sha for sha, _ in chunks)


def bench_grpc(root: Path, chunks: list[tuple[str, bytes]], threads: int) -> None:
    total = sum(len(d) for _, d in chunks)
    store = ChunkStore(root, 1 << 40)
    server = grpc.server(futures.ThreadPoolExecutor(16), options=SERVER_OPTIONS)
    add_to_server(ChunkService(store, "secret"), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS) as channel:
            stub = pb_grpc.ChunkServiceStub(channel)

            def put(c: tuple[str, bytes]) -> None:
                stub.PutChunk(
                    pb.PutChunkRequest(sha256=c[0], data=c[1], cluster_secret="secret"), timeout=60
                )

            def get(c: tuple[str, bytes]) -> None:
                stub.GetChunk(pb.GetChunkRequest(sha256=c[0], cluster_secret="secret"), timeout=60)

            report(f"grpc PutChunk x{threads} threads", total, timed(threads, chunks, put))
            report(f"grpc GetChunk x{threads} threads", total, timed(threads, chunks, get))
    finally:
        server.stop(grace=None)
        store.delete(sha for sha, _ in chunks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=64, help="chunks per run")
    parser.add_argument("--size-mib", type=float, default=4.0, help="chunk size in MiB")
    parser.add_argument("--threads", default="1,2,4", help="comma-separated thread counts")
    parser.add_argument("--dir", type=Path, help="directory on the disk to measure (default tmp)")
    parser.add_argument("--no-grpc", action="store_true", help="skip the loopback gRPC runs")
    args = parser.parse_args()

    size = int(args.size_mib * MIB)
    chunks = make_chunks(args.count, size)
    print(
        f"{args.count} chunks of {size / MIB:g} MiB, {os.cpu_count()} CPUs "
        f"(put includes fsync of file and directory; get verifies SHA-256)"
    )
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench_node_store_") as tmp:
        for threads in (int(t) for t in args.threads.split(",")):
            bench_store(Path(tmp) / f"store{threads}", chunks, threads)
            if not args.no_grpc:
                bench_grpc(Path(tmp) / f"grpc{threads}", chunks, threads)


if __name__ == "__main__":
    main()
