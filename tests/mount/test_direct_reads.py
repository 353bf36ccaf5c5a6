"""Big-file reads straight from the storage nodes, and the fall back to the gateway.

The mount asks the gateway for a read plan (GetFileChunks with sources: node addresses and
a read token per chunk) and fetches chunks from the nodes itself; when a node cannot be
reached (nodes on a network the client does not see) or refuses the token, the chunk comes
through the gateway's DownloadFile as before.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import trio

from cloudgrpc_fusefs.aio import Blocking
from cloudgrpc_fusefs.reader import ChunkCache, Manifest, Reader
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
