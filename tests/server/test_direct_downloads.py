"""Whole-file downloads through the client library read the chunks from the nodes with
the gateway's read tokens; a chunk no node gives comes through the gateway; the bytes
are checked either way."""

from __future__ import annotations

import io
import os

from cloudgrpc_proto.client import DIRECT_DOWNLOAD_MIN, CloudClient
from tests.cluster import Account, Cluster, MiB

CHUNK = 4 * MiB


def _upload(c: Cluster, acct: Account, data: bytes, name: str) -> str:
    with CloudClient(c.address, session_token=acct.token, timeout=30) as client:
        reply = client.upload(io.BytesIO(data), filename=name, file_size=len(data))
    assert reply.success
    return reply.file_id


def test_a_large_download_comes_from_the_nodes(shared_cluster: Cluster) -> None:
    c = shared_cluster
    acct = c.sign_up()
    data = os.urandom(3 * CHUNK + 5)
    file_id = _upload(c, acct, data, "big.bin")
    out = io.BytesIO()
    with CloudClient(c.address, session_token=acct.token, timeout=30) as client:
        info = client.download_to(file_id, out, progress=None)
        assert client.node_reads is not None and client.node_reads.fetched == 4
    assert out.getvalue() == data
    assert info.filename == "big.bin" and info.file_size == len(data) and info.version >= 1


def test_chunks_no_node_gives_come_through_the_gateway(shared_cluster: Cluster) -> None:
    """A client that cannot reach the nodes (they sit on a private network) still gets
    the whole file, every chunk through the gateway."""
    c = shared_cluster
    acct = c.sign_up()
    data = os.urandom(2 * CHUNK + 3)
    file_id = _upload(c, acct, data, "far.bin")
    out = io.BytesIO()
    with CloudClient(c.address, session_token=acct.token, timeout=30) as client:
        plan = client.get_file_chunks(file_id, with_sources=True)
        reads = client._shared_node_reads()
        for source in plan.sources:
            for address in source.addresses:
                reads.mark_down(address, "outside the nodes' network")
        client.download_to(file_id, out)
        assert reads.fetched == 0
    assert out.getvalue() == data


def test_small_files_and_ranges_stream_through_the_gateway(shared_cluster: Cluster) -> None:
    c = shared_cluster
    acct = c.sign_up()
    small = os.urandom(DIRECT_DOWNLOAD_MIN - 1)
    big = os.urandom(DIRECT_DOWNLOAD_MIN + 1)
    small_id, big_id = _upload(c, acct, small, "small.bin"), _upload(c, acct, big, "b.bin")
    with CloudClient(c.address, session_token=acct.token, timeout=30) as client:
        out = io.BytesIO()
        client.download_to(small_id, out)
        assert out.getvalue() == small
        part = io.BytesIO()
        client.download_to(big_id, part, offset=10, length=100)
        assert part.getvalue() == big[10:110]
        assert client.node_reads is None or client.node_reads.fetched == 0
        client.direct_reads = False  # (CLOUDGRPC_DIRECT_READS=0)
        whole = io.BytesIO()
        client.download_to(big_id, whole)
        assert whole.getvalue() == big
        assert client.node_reads is None or client.node_reads.fetched == 0
