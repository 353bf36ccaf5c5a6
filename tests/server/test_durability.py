"""No under-replicated commit: a file is committed only when each of its chunks has
REPLICATION_FACTOR copies on online nodes (issue 15).

The scenario of the issue, through the real ``cloudgrpc`` CLI: an upload that could place
its chunks on one node only fails, and re-running it after that node died must not turn
the stranded copies into a "successful" upload of a file nobody can read.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudgrpc_proto import cloud_storage_pb2 as pb
from tests.client.clitools import Cli
from tests.cluster import Cluster, MiB

pytest.importorskip("aiosmtpd")

CHUNK = MiB  # CHUNK_SIZE of these clusters: two-chunk files stay small


@pytest.fixture
def small_chunk_cluster(tmp_path: Path, database_url: str) -> Iterator[Cluster]:
    """Three nodes, replication 2, 1 MiB chunks, on the parametrized database."""
    c = Cluster(tmp_path, database_url=database_url, env={"CHUNK_SIZE": str(CHUNK)})
    try:
        c.start()
        yield c
    finally:
        c.stop()


def _signed_in_cli(c: Cluster, home: Path) -> tuple[Cli, str]:
    cli = Cli(c.address, home)
    email = f"user-{uuid.uuid4().hex[:8]}@example.com"
    before = c.mail.count_for(email)
    cli.ok("enroll", email, "Durable User", "--send-code")
    cli.ok("enroll", email, "Durable User", "--otp", c.mail.code_for(email, after=before))
    return cli, email


def _nodes_holding(c: Cluster, digest: str) -> set[str]:
    return {name for name in c.nodes if any(c.node_dir(name).glob(f"**/{digest}"))}


def _token(c: Cluster, email: str) -> str:
    return c.sign_in(email).token


def test_rerun_after_node_loss_never_commits_an_unreadable_file(
        small_chunk_cluster: Cluster, tmp_path: Path) -> None:
    c = small_chunk_cluster
    cli, email = _signed_in_cli(c, tmp_path)
    data = os.urandom(2 * CHUNK - 1000)
    src = tmp_path / "doc.bin"
    src.write_bytes(data)
    hashes = [hashlib.sha256(data[i:i + CHUNK]).hexdigest() for i in range(0, len(data), CHUNK)]

    # Two of three nodes die: each chunk lands on one node only and the upload fails.
    c.stop_node("node2", signal.SIGKILL)
    c.stop_node("node3", signal.SIGKILL)
    c.wait_nodes_online(1, timeout=20)
    failed = cli("upload", str(src), "/")
    assert failed.code == 15, str(failed)  # the gateway answered: the cluster cannot
    assert "could store the chunk on 1 of 2 nodes" in failed.err, str(failed)
    assert "cannot reach" not in failed.err
    assert json.loads(cli.ok("ls", "/", "--json").out) == []
    assert all(_nodes_holding(c, h) == {"node1"} for h in hashes)

    # Those two come back, the one holding the stranded copies dies.
    c.start_node("node2")
    c.start_node("node3")
    c.stop_node("node1", signal.SIGKILL)
    c.wait_nodes_online(2, timeout=20)
    # The stranded chunks are not the user's to reference: FindChunks answers none.
    token = _token(c, email)
    found = c.files.FindChunks(pb.FindChunksRequest(session_token=token, sha256=hashes),
                               timeout=10)
    assert list(found.present) == []
    # The same command again sends every byte and stores two live copies of each chunk.
    result = json.loads(cli.ok("upload", "--json", str(src), "/").out)[0]
    assert result["chunks_referenced"] == 0
    assert result["bytes_sent"] == len(data)
    for h in hashes:
        assert {"node2", "node3"} <= _nodes_holding(c, h)
    back = tmp_path / "back.bin"
    cli.ok("download", "/doc.bin", str(back))
    assert back.read_bytes() == data

    # Another file goes to node2 and node3; node1 returns, node3 dies: each of its chunks
    # has one live copy (node2). FindChunks answers none of them, and a reference sent
    # anyway is copied up by the gateway (from node2 to node1) before the file commits.
    data = os.urandom(2 * CHUNK - 1000)
    src2 = tmp_path / "doc2.bin"
    src2.write_bytes(data)
    hashes = [hashlib.sha256(data[i:i + CHUNK]).hexdigest() for i in range(0, len(data), CHUNK)]
    cli.ok("upload", str(src2), "/")
    c.start_node("node1")
    c.wait_nodes_online(3, timeout=20)
    c.stop_node("node3", signal.SIGKILL)
    c.wait_nodes_online(2, timeout=20)
    found = c.files.FindChunks(pb.FindChunksRequest(session_token=token, sha256=hashes),
                               timeout=10)
    assert list(found.present) == []

    def by_reference() -> Iterator[pb.UploadFileRequest]:
        yield pb.UploadFileRequest(metadata=pb.FileMetadata(
            session_token=token, filename="copy.bin", file_size=len(data)))
        for i, h in enumerate(hashes):
            size = min(CHUNK, len(data) - i * CHUNK)
            yield pb.UploadFileRequest(chunk_ref=pb.ChunkRef(sha256=h, size=size))

    reply = c.files.UploadFile(by_reference(), timeout=60)
    for h in hashes:
        assert {"node1", "node2"} <= _nodes_holding(c, h)
    c.stop_node("node2", signal.SIGKILL)  # the copy the gateway made is a real one
    c.wait_nodes_online(1, timeout=20)
    back = tmp_path / "copy.bin"
    cli.ok("download", "/copy.bin", str(back))
    assert back.read_bytes() == data
    assert reply.file_id
