"""Compression through the real cluster (issue 17): what a user uploads comes back byte for
byte, whole and in ranges; quotas count a file's real size; the nodes' disks hold less for
text; the operator sees the saving in ``cloudgrpc-admin --status`` and ``--nodes``.

One cluster per database: two nodes and two replicas, so every chunk lands on both, and
node2 runs with ``CHUNK_COMPRESSION=off``: each chunk is kept compressed on node1 and raw
on node2, one chunk (deduplicated by its plaintext hash) in two forms.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator

import grpc
import pytest

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from tests.admin.conftest import run_cli
from tests.cluster import ADMIN_KEY, CLUSTER_SECRET, Cluster, MiB
from tests.conftest import cluster_on
from tests.node.node_testkit import text_like

CHUNK = MiB
SETTINGS = {"REPLICATION_FACTOR": "2", "CHUNK_SIZE": str(CHUNK)}
NODE_SETTINGS = {"node1": {"CHUNK_COMPRESSION": "zstd"},
                 "node2": {"CHUNK_COMPRESSION": "off"}}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def packed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Cluster]:
    with cluster_on(request.param, tmp_path_factory.mktemp(f"zstd-{request.param}"),
                    nodes=2, env=SETTINGS, node_env=NODE_SETTINGS) as c:
        yield c


def _wait(cond: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _hashes(data: bytes) -> list[str]:
    return [hashlib.sha256(data[i:i + CHUNK]).hexdigest() for i in range(0, len(data), CHUNK)]


def _files_of(c: Cluster, node: str, sha: str) -> list[str]:
    """The names of the files holding chunk ``sha`` on ``node``'s disk."""
    folder = c.node_dir(node) / "chunks" / sha[:2] / sha[2:4]
    return sorted(p.name for p in folder.glob(f"{sha}*")) if folder.is_dir() else []


def _nodes(c: Cluster) -> dict[str, pb.NodeInfo]:
    reply = c.admin.ListNodes(pb.ListNodesRequest(admin_key=ADMIN_KEY), timeout=10)
    return {n.name: n for n in reply.nodes}


def _disk(c: Cluster, node: str) -> int:
    return sum(p.stat().st_size for p in (c.node_dir(node) / "chunks").rglob("*")
               if p.is_file())


def _node_read(c: Cluster, node: str, sha: str, offset: int = 0, length: int = 0) -> bytes:
    with grpc.insecure_channel(f"127.0.0.1:{c.node_ports[node]}", options=[
            ("grpc.max_receive_message_length", 64 * MiB)]) as channel:
        return pb_grpc.ChunkServiceStub(channel).GetChunk(pb.GetChunkRequest(
            sha256=sha, offset=offset, length=length, cluster_secret=CLUSTER_SECRET),
            timeout=10).data


def _settled(c: Cluster) -> bool:
    """The gateway's figures match what the nodes' disks hold (heartbeats caught up)."""
    nodes = _nodes(c)
    return all(nodes[name].used_bytes == _disk(c, name) for name in c.nodes)


def test_text_shrinks_on_disk_and_comes_back_whole_and_in_ranges(packed: Cluster) -> None:
    c = packed
    acct = c.sign_up()
    text = text_like(3 * CHUNK + 12_345, seed=100)
    fid = acct.upload(text, "server.log").file_id
    for sha in _hashes(text):
        assert _files_of(c, "node1", sha) == [f"{sha}.zst"]  # compressed
        assert _files_of(c, "node2", sha) == [sha]  # raw: compression off there
    assert acct.download(fid) == text
    for offset, length in ((0, 10), (CHUNK - 5, 10), (2 * CHUNK + 777, 100_000),
                           (len(text) - 3, 0), (CHUNK + 1, 2 * CHUNK)):
        end = len(text) if length == 0 else offset + length
        assert acct.download(fid, offset, length) == text[offset:end], (offset, length)
    # The quota counts the file's real size, not what the disks hold.
    assert acct.storage().used_bytes == len(text)
    # Each node serves the same plaintext from its own form, ranges included.
    sha = _hashes(text)[1]
    assert _node_read(c, "node1", sha, 100, 50) == _node_read(c, "node2", sha, 100, 50) == \
        text[CHUNK + 100:CHUNK + 150]

    _wait(lambda: _settled(c), what="heartbeats with the new usage")
    nodes = _nodes(c)
    assert nodes["node1"].used_bytes < nodes["node1"].logical_bytes // 3
    assert nodes["node2"].used_bytes == nodes["node2"].logical_bytes  # nothing compressed
    assert nodes["node1"].logical_bytes == nodes["node2"].logical_bytes
    st = c.status()
    assert st.stored_bytes == st.node_used_bytes == sum(_disk(c, n) for n in c.nodes)
    assert st.logical_bytes == 2 * nodes["node1"].logical_bytes > st.stored_bytes

    status = run_cli(c, "--status")
    assert status.returncode == 0, status.stderr
    line = next(x for x in status.stdout.splitlines() if "Compression" in x)
    assert "% saved" in line, status.stdout
    listing = run_cli(c, "--nodes")
    assert listing.returncode == 0, listing.stderr
    assert "SAVED" in listing.stdout
    row = next(x for x in listing.stdout.splitlines() if "node1" in x)
    assert "%" in row.split("/")[-1], listing.stdout


def test_incompressible_data_is_stored_as_sent(packed: Cluster) -> None:
    c = packed
    acct = c.sign_up()
    noise = os.urandom(2 * CHUNK + 99)
    fid = acct.upload(noise, "photo.jpg").file_id
    for sha in _hashes(noise):
        assert _files_of(c, "node1", sha) == [sha]  # no frame: it would not pay
        assert _files_of(c, "node2", sha) == [sha]
    assert acct.download(fid) == noise
    assert acct.download(fid, CHUNK - 1, 2) == noise[CHUNK - 1:CHUNK + 1]
    assert acct.storage().used_bytes == len(noise)


def test_the_same_bytes_are_stored_once_across_forms_and_accounts(packed: Cluster) -> None:
    """Deduplication goes by the plaintext hash: a second upload of the same text (by
    another account) adds no chunk to either node, whichever form each keeps it in, and
    each account is charged the file's real size."""
    c = packed
    text = text_like(2 * CHUNK, seed=200)
    first, second = c.sign_up(), c.sign_up()
    first.upload(text, "a.txt")
    _wait(lambda: _settled(c), what="heartbeats")
    before = {name: (n.chunk_count, n.used_bytes, n.logical_bytes)
              for name, n in _nodes(c).items()}
    fid = second.upload(text, "copy-of-a.txt").file_id
    time.sleep(1.0)  # two heartbeats: had anything been stored, the counts would move
    _wait(lambda: _settled(c), what="heartbeats")
    after = {name: (n.chunk_count, n.used_bytes, n.logical_bytes)
             for name, n in _nodes(c).items()}
    assert after == before
    assert second.download(fid) == text
    assert first.storage().used_bytes == second.storage().used_bytes == len(text)


def test_a_rotten_frame_fails_over_to_the_other_copy(packed: Cluster) -> None:
    c = packed
    acct = c.sign_up()
    text = text_like(CHUNK, seed=300)
    fid = acct.upload(text, "precious.txt").file_id
    sha = _hashes(text)[0]
    frame = c.node_dir("node1") / "chunks" / sha[:2] / sha[2:4] / f"{sha}.zst"
    raw = bytearray(frame.read_bytes())
    raw[len(raw) // 2] ^= 0x5A
    frame.write_bytes(bytes(raw))
    with pytest.raises(grpc.RpcError) as info:
        _node_read(c, "node1", sha)
    assert info.value.code() == grpc.StatusCode.DATA_LOSS
    for _ in range(6):  # reads pick replicas at random: hit the bad one for sure
        assert acct.download(fid) == text
        assert acct.download(fid, 4096, 10) == text[4096:4106]
    # The skipped replica is repaired from the good one: node1 serves the file again.
    _wait(lambda: _readable(c, "node1", sha), timeout=20, what="the rotten copy repaired")
    assert _node_read(c, "node1", sha) == text


def _readable(c: Cluster, node: str, sha: str) -> bool:
    try:
        _node_read(c, node, sha, 0, 1)
    except grpc.RpcError:
        return False
    return True


def test_node_dirs_hold_only_private_files(packed: Cluster) -> None:
    """Compressed chunk files are user data like raw ones: 0600 in 0700 folders."""
    frames = list((packed.node_dir("node1") / "chunks").rglob("*.zst"))
    assert frames  # the earlier tests' text
    for name in packed.nodes:
        for path in (packed.node_dir(name) / "chunks").rglob("*"):
            mode = path.stat().st_mode & 0o777
            assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
