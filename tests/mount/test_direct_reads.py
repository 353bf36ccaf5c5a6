"""Big-file reads straight from the storage nodes, and the fall back to the gateway.

The mount asks the gateway for a read plan (GetFileChunks with sources: node addresses and
a read token per chunk) and fetches chunks from the nodes itself; when a node cannot be
reached (nodes on a network the client does not see) or refuses the token, the chunk comes
through the gateway's DownloadFile as before.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
import trio

from cloudgrpc_fusefs.aio import Blocking
from cloudgrpc_fusefs.reader import PREFETCH_PARALLEL, ChunkCache, Manifest, Reader, ReadState
from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto.client import CloudClient
from cloudgrpc_proto.direct_reads import NodeReads
from tests.cluster import Account, Cluster, free_port
from tests.mount.conftest import Mount

MiB = 1024 * 1024



def _digest(m: Mount, name: str) -> str:
    return m.sh(f"sha256sum {name}").stdout.split()[0]


def test_cold_read_comes_from_the_nodes(make_mount, account: Account) -> None:
    data = os.urandom(18 * MiB + 123)
    account.upload(data, "big.bin")
    want = hashlib.sha256(data).hexdigest()
    direct = make_mount(account)
    assert _digest(direct, "big.bin") == want
    assert direct.status()["direct_chunks"] >= 5  # every chunk, none through the gateway
    assert direct.status()["direct_failures"] == 0
    gateway_only = make_mount(account, "direct_reads=0")
    assert _digest(gateway_only, "big.bin") == want
    assert "direct_chunks" not in gateway_only.status()


class _Rewritten:
    """The real client, with the read plan's sources changed on the way in."""

    def __init__(self, client: CloudClient, rewrite: Any) -> None:
        self._client = client
        self._rewrite = rewrite
        self.plans = 0

    def get_file_chunks(self, file_id: str, with_sources: bool = False
                        ) -> pb.GetFileChunksResponse:
        reply = self._client.get_file_chunks(file_id, with_sources)
        self.plans += 1
        for source in reply.sources:
            self._rewrite(source)
        return reply

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _read_all(cluster: Cluster, account: Account, tmp_path: Path, rewrite: Any,
              data: bytes) -> tuple[NodeReads, float]:
    file_id = account.upload(data, "f.bin").file_id
    client = CloudClient(cluster.address, session_token=account.token)
    direct = NodeReads(connect_timeout=1.0)
    reader = Reader(_Rewritten(client, rewrite), Blocking(4),  # type: ignore[arg-type]
                    ChunkCache(tmp_path / "cache"), direct=direct)
    got = bytearray()

    async def main() -> None:
        while len(got) < len(data):
            part = await reader.read(file_id, 0, len(got), MiB)
            assert part
            got.extend(part)

    start = time.monotonic()
    try:
        trio.run(main)
    finally:
        direct.close()
        client.close()
    assert bytes(got) == data
    return direct, time.monotonic() - start


def test_unreachable_nodes_fall_back_to_the_gateway(mount_cluster: Cluster, account: Account,
                                                    tmp_path: Path) -> None:
    """Nodes the client cannot reach (a refused port, an unroutable address) cost one try
    each; every chunk then comes through the gateway."""
    refused = f"127.0.0.1:{free_port()}"
    unroutable = "192.0.2.1:9"  # TEST-NET-1: never routed

    def private_network(source: pb.ChunkSource) -> None:
        del source.addresses[:]
        source.addresses.extend([refused, unroutable])

    direct, took = _read_all(mount_cluster, account, tmp_path, private_network,
                             os.urandom(17 * MiB))
    assert direct.fetched == 0
    assert direct.failed == 2  # each address tried once, then left alone
    assert took < 20


def test_refused_tokens_fall_back_to_the_gateway(mount_cluster: Cluster, account: Account,
                                                 tmp_path: Path) -> None:
    """A node refuses a forged token (and stays in use); the gateway serves the bytes."""

    def forged(source: pb.ChunkSource) -> None:
        source.read_token = source.read_token[:-6] + "000000"

    direct, _ = _read_all(mount_cluster, account, tmp_path, forged, os.urandom(9 * MiB))
    assert direct.fetched == 0
    assert direct.failed == 3 * 2  # 3 chunks x 2 replicas, none marked down
    assert direct.usable(["a:1"]) == ["a:1"]


def test_tokens_near_expiry_are_renewed() -> None:
    soon = Manifest(1, [("a" * 64, 10)], sources={"a" * 64: (["n:1"], "t")},
                    expires_at=time.time() + 5)
    assert soon.stale() and soon.direct("a" * 64) is None
    later = Manifest(1, [("a" * 64, 10)], sources={"a" * 64: (["n:1"], "t")},
                     expires_at=time.time() + 600)
    assert not later.stale() and later.direct("a" * 64) == (["n:1"], "t")
    without = Manifest(1, [("a" * 64, 10)])
    assert not without.stale() and without.direct("a" * 64) is None


class _Recording(Reader):
    """A Reader that notes the order in which chunk fetches are handed to worker threads
    (on the trio loop: the threads themselves may start in any order on a busy machine)
    and how many fetches overlap on those threads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = threading.Lock()
        self.started: list[int] = []
        self.running = 0
        self.most = 0
        hand_over = self.blocking

        async def blocking(fn: Any, *args: Any) -> Any:
            if fn == self._fetch:
                self.started.append(args[2])
            return await hand_over(fn, *args)

        self.blocking = blocking  # type: ignore[method-assign,assignment]

    def _fetch(self, file_id: str, manifest: Manifest, index: int) -> bytes:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return super()._fetch(file_id, manifest, index)
        finally:
            with self.lock:
                self.running -= 1


def test_read_ahead_fetches_each_chunk_once_nearest_first(mount_cluster: Cluster,
                                                          account: Account,
                                                          tmp_path: Path) -> None:
    """A sequential read as the kernel sends it (1 MiB requests, several in flight): the
    read-ahead keeps a few chunks in flight, fetches each once, and the nearest first (a
    task per chunk let far chunks take the slots while the next one was fetched aside)."""
    data = os.urandom(48 * MiB)  # 12 chunks
    file_id = account.upload(data, "seq.bin", piece=4 * MiB).file_id
    client = CloudClient(mount_cluster.address, session_token=account.token)
    direct = NodeReads()
    reader = _Recording(client, Blocking(16), ChunkCache(tmp_path / "cache"), direct=direct)
    got = bytearray(len(data))
    state = ReadState()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            reader.nursery = nursery
            window = trio.Semaphore(4)  # the kernel's read-ahead: 4 requests in flight

            async def one(offset: int) -> None:
                part = await reader.read(file_id, 0, offset, MiB, state)
                got[offset:offset + len(part)] = part
                window.release()

            for offset in range(0, len(data), MiB):
                await window.acquire()
                nursery.start_soon(one, offset)
            for _ in range(4):
                await window.acquire()
            reader.nursery = None
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        direct.close()
        client.close()
    assert bytes(got) == data
    assert sorted(reader.started) == list(range(12)), reader.started  # each chunk once
    assert reader.most <= PREFETCH_PARALLEL + 1, reader.most  # read-ahead plus one read
    # nearest first: a chunk's fetch starts before those a read-ahead window after it
    where = {index: n for n, index in enumerate(reader.started)}
    assert all(where[i] < where[i + PREFETCH_PARALLEL]
               for i in range(12 - PREFETCH_PARALLEL)), reader.started


def test_node_channels_connect_once_under_parallel_reads(
        mount_cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight threads asking for the same node at once get one channel: parallel channels
    to one address each waited for grpc's 200 ms connectivity poll."""
    address = f"127.0.0.1:{next(iter(mount_cluster.node_ports.values()))}"
    connects: list[str] = []
    real = grpc.insecure_channel

    def counting(target: str, *args: Any, **kwargs: Any) -> grpc.Channel:
        connects.append(target)
        return real(target, *args, **kwargs)

    monkeypatch.setattr(grpc, "insecure_channel", counting)
    reads = NodeReads()
    barrier = threading.Barrier(8)
    stubs: list[Any] = []

    def ask() -> None:
        barrier.wait()
        stubs.append(reads.stub(address, b""))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reads.close()
    assert connects == [address]
    assert len(stubs) == 8 and all(s is stubs[0] for s in stubs)
