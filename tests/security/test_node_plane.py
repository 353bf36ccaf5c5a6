"""Node plane attacks of issue 13, from an independent client against a real cluster.

The attacker reaches every node and the gateway's NodeService over loopback. Without the
cluster secret it must get nothing: no chunk listed, read, written or deleted, no port
probed through FetchChunkFrom. Even with the cluster secret (a leaked one) it cannot take a
node's name over without that node's key, and even with a node's own key a report of
corruption cannot make the system drop a good copy. Each test ends where a user would look:
the file still downloads intact (after garbage collection passes too), no attacker byte is
served, no upload lands on the attacker.

Every test runs on SQLite and PostgreSQL, and with the secret given through the environment
(``CLUSTER_SECRET``) as well as the default path: the gateway generates
``DATA_DIR/cluster_secret`` on first start and the nodes find it there.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from tests.cluster import ADMIN_KEY, Account, Cluster, MiB, free_port

# Garbage collection and repair as fast as an operator may set them: a wrongly forgotten
# replica would be deleted from its node within a second or two.
FAST_GC = {
    "GC_GRACE_S": "1",
    "GC_INTERVAL_S": "0.3",
    "GC_IDLE_S": "0",
    "REPAIR_INTERVAL_S": "0.3",
    "REPAIR_GRACE_S": "60",  # no repair copies while we watch: only the kept rows count
    "NODE_CALL_TIMEOUT_S": "3",
}
TIMEOUT = 10


@pytest.fixture(params=["env-secret", "generated-secret"])
def plane(request: pytest.FixtureRequest, tmp_path: Path, database_url: str
          ) -> Iterator[Cluster]:
    """Gateway + three nodes; the secret from the environment or from the generated file."""
    c = Cluster(tmp_path, database_url=database_url, env=FAST_GC)
    if request.param == "generated-secret":
        c.env.pop("CLUSTER_SECRET")  # nodes find DATA_DIR/cluster_secret, as in the README
    try:
        c.start()
        yield c
    finally:
        c.stop()


def cluster_secret(c: Cluster) -> str:
    """The secret the cluster runs with, as the operator would find it."""
    if "CLUSTER_SECRET" in c.env:
        return c.env["CLUSTER_SECRET"]
    path = c.root / "gateway" / "cluster_secret"
    assert path.stat().st_mode & 0o777 == 0o600
    return path.read_text().strip()


def chunk_files(c: Cluster) -> dict[str, dict[str, bytes]]:
    """Every chunk file on every node: node name -> sha -> bytes."""
    out: dict[str, dict[str, bytes]] = {}
    for name in c.nodes:
        root = c.node_dir(name) / "chunks"
        out[name] = {p.name: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return out


def node_stub(c: Cluster, name: str) -> tuple[grpc.Channel, pb_grpc.ChunkServiceStub]:
    channel = grpc.insecure_channel(f"127.0.0.1:{c.node_ports[name]}", options=[
        ("grpc.max_receive_message_length", 64 * MiB),
        ("grpc.max_send_message_length", 64 * MiB)])
    return channel, pb_grpc.ChunkServiceStub(channel)


def refused(call: Callable[..., object], request: object) -> grpc.StatusCode:
    """The status of a call that must fail; fails the test if it succeeds."""
    with pytest.raises(grpc.RpcError) as info:
        result = call(request, timeout=TIMEOUT)
        if hasattr(result, "__next__"):
            list(result)  # a server stream: its error surfaces while reading
    return info.value.code()


DENIED = {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED}


def nodes_by_name(c: Cluster) -> dict[str, pb.NodeInfo]:
    reply = c.admin.ListNodes(pb.ListNodesRequest(admin_key=ADMIN_KEY), timeout=TIMEOUT)
    return {n.name: n for n in reply.nodes}


class AttackerNode(pb_grpc.ChunkServiceServicer):
    """A chunk server the attacker runs: it records what the gateway sends it."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_ChunkServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _record(self, name: str) -> None:
        with self.lock:
            self.calls.append(name)

    def PutChunk(self, request, context):  # noqa: N802
        self._record("PutChunk")
        return pb.PutChunkResponse(success=True, used_bytes=len(request.data))

    def PutChunks(self, request, context):  # noqa: N802
        self._record("PutChunks")
        return pb.PutChunksResponse(results=[pb.PutChunkResult(sha256=c.sha256, success=True)
                                             for c in request.chunks])

    def GetChunk(self, request, context):  # noqa: N802
        self._record("GetChunk")
        return pb.GetChunkResponse(data=b"attacker bytes", chunk_size=14)

    def GetChunks(self, request, context):  # noqa: N802
        self._record("GetChunks")
        return pb.GetChunksResponse(results=[pb.GetChunkResult(sha256=s, data=b"attacker")
                                             for s in request.sha256])

    def stop(self) -> None:
        self.server.stop(grace=None)


def test_chunk_rpcs_without_the_secret_get_nothing(plane: Cluster) -> None:
    c = plane
    acct = c.sign_up()
    data = os.urandom(5 * MiB)  # two chunks
    fid = acct.upload(data, "private.bin").file_id
    before = chunk_files(c)
    stored = {sha for files in before.values() for sha in files}
    assert len(stored) == 2
    holder = next(name for name, files in before.items() if files)
    sha = next(iter(before[holder]))
    evil = b"attacker bytes" * 1000
    evil_sha = hashlib.sha256(evil).hexdigest()
    channel, stub = node_stub(c, holder)
    with channel, socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()  # an open port the attacker would like to find
        for secret in ("", "guess", cluster_secret(c) + "x"):
            attempts: list[tuple[Callable[..., object], object]] = [
                (stub.ListChunks, pb.ListChunksRequest(cluster_secret=secret)),
                (stub.HasChunks, pb.HasChunksRequest(sha256=[sha], cluster_secret=secret)),
                (stub.VerifyChunk, pb.VerifyChunkRequest(sha256=sha, cluster_secret=secret)),
                (stub.GetChunk, pb.GetChunkRequest(sha256=sha, cluster_secret=secret)),
                (stub.GetChunk, pb.GetChunkRequest(sha256=sha, cluster_secret=secret,
                                                   read_token="")),
                (stub.GetChunk, pb.GetChunkRequest(sha256=sha, read_token="v1.9999999999.00")),
                (stub.GetChunks, pb.GetChunksRequest(sha256=[sha], cluster_secret=secret)),
                (stub.PutChunk, pb.PutChunkRequest(sha256=evil_sha, data=evil,
                                                   cluster_secret=secret)),
                (stub.PutChunks, pb.PutChunksRequest(cluster_secret=secret, chunks=[
                    pb.PutChunkRequest(sha256=evil_sha, data=evil)])),
                (stub.DeleteChunks, pb.DeleteChunksRequest(sha256=sorted(stored),
                                                           cluster_secret=secret)),
            ]
            for port in (listener.getsockname()[1], c.port, free_port()):
                attempts.append((stub.FetchChunkFrom, pb.FetchChunkFromRequest(
                    sha256=evil_sha, source_address=f"127.0.0.1:{port}",
                    cluster_secret=secret)))
            for call, request in attempts:
                assert refused(call, request) in DENIED, (call, request)
    # Nothing changed on any node, and the owner still gets exactly their bytes.
    assert chunk_files(c) == before
    assert acct.download(fid) == data


def test_node_identity_cannot_be_taken_over(plane: Cluster) -> None:
    c = plane
    secret = cluster_secret(c)
    real = nodes_by_name(c)["node1"]
    attacker = AttackerNode()
    gateway = pb_grpc.NodeServiceStub(c.channel)
    try:
        for presented_secret, presented_key in (("", ""), ("guess", ""), (secret, ""),
                                                (secret, "forged-key")):
            takeover = pb.RegisterNodeRequest(
                name="node1", host="127.0.0.1", port=attacker.port, capacity_bytes=100 * 2**30,
                cpu_cores=64, cluster_secret=presented_secret, node_key=presented_key)
            assert refused(gateway.RegisterNode, takeover) in DENIED
        for presented_secret in ("", secret):
            assert refused(gateway.Heartbeat, pb.HeartbeatRequest(
                node_id=real.node_id, cluster_secret=presented_secret, used_bytes=0,
                capacity_bytes=100 * 2**30)) in DENIED
            assert refused(gateway.DeregisterNode, pb.DeregisterNodeRequest(
                node_id=real.node_id, cluster_secret=presented_secret)) in DENIED
        # A newcomer without the cluster secret cannot join under a new name either.
        assert refused(gateway.RegisterNode, pb.RegisterNodeRequest(
            name="evil", host="127.0.0.1", port=attacker.port, capacity_bytes=100 * 2**30,
            cluster_secret="")) in DENIED

        # The real node1 is where it was, online, and keeps receiving uploads.
        assert list(c.status().security_warnings) == []  # the secure default: nothing to say
        after = nodes_by_name(c)
        assert (after["node1"].host, after["node1"].port) == (real.host, real.port)
        assert after["node1"].online and set(after) == {"node1", "node2", "node3"}
        acct = c.sign_up()
        files = {acct.upload(blob, f"f{i}.bin").file_id: blob
                 for i, blob in enumerate(os.urandom(MiB) for _ in range(6))}
        assert attacker.calls == []
        assert chunk_files(c)["node1"], "node1 got no upload"
        for fid, blob in files.items():
            assert acct.download(fid) == blob
        assert attacker.calls == []
    finally:
        attacker.stop()


def _heartbeat(c: Cluster, node: pb.NodeInfo, corrupt: list[str], secret: str, key: str
               ) -> grpc.StatusCode:
    gateway = pb_grpc.NodeServiceStub(c.channel)
    try:
        gateway.Heartbeat(pb.HeartbeatRequest(
            node_id=node.node_id, cluster_secret=secret, node_key=key, used_bytes=node.used_bytes,
            chunk_count=node.chunk_count, capacity_bytes=node.capacity_bytes,
            corrupt_chunks=corrupt), timeout=TIMEOUT)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _recent_events(c: Cluster, event_type: str, wait_s: float = 0.5) -> list[pb.SystemEvent]:
    """The stored events of one type (the stream's history), read for ``wait_s`` at most."""
    out: list[pb.SystemEvent] = []
    stream = c.admin.StreamSystemEvents(pb.StreamEventsRequest(
        admin_key=ADMIN_KEY, history=1000, event_types=[event_type]), timeout=wait_s)
    try:
        for event in stream:
            out.append(event)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED, exc
    return out


def _wait_events(c: Cluster, event_type: str, count: int, timeout: float = 15.0
                 ) -> list[pb.SystemEvent]:
    deadline = time.monotonic() + timeout
    while True:
        seen = _recent_events(c, event_type)
        if len(seen) >= count or time.monotonic() > deadline:
            assert len(seen) >= count, f"{count} {event_type} events expected, got {seen}"
            return seen


def _download_with_only(c: Cluster, acct: Account, fid: str, keep: str) -> bytes:
    """Kill every node but ``keep`` and download: only the replica rows left on ``keep``
    can serve the file."""
    for name in list(c.nodes):
        if name != keep:
            c.stop_node(name, signal.SIGKILL)
    return acct.download(fid)


def test_corrupt_reports_cannot_drop_good_copies(plane: Cluster) -> None:
    c = plane
    secret = cluster_secret(c)
    acct = c.sign_up()
    data = os.urandom(3 * MiB)  # one chunk, on two of the three nodes
    fid = acct.upload(data, "precious.bin").file_id
    before = chunk_files(c)
    holders = {name for name, files in before.items() if files}
    target = sorted(holders)[0]
    node = nodes_by_name(c)[target]
    held = sorted(before[target])
    every_sha = sorted({sha for files in before.values() for sha in files})

    # Without the node's key (with or without the cluster secret): refused outright.
    for name, info in nodes_by_name(c).items():
        for presented in ("", secret):
            assert _heartbeat(c, info, every_sha, presented, "") in DENIED, name
            assert _heartbeat(c, info, every_sha, presented, "forged") in DENIED, name
    # With the node's real key (a compromised node), for copies that are in fact fine:
    # the gateway asks the node itself, finds them intact, and keeps them.
    key = (c.node_dir(target) / "node_key").read_text().strip()
    assert key and (c.node_dir(target) / "node_key").stat().st_mode & 0o777 == 0o600
    assert _heartbeat(c, node, held, secret, key) == grpc.StatusCode.OK
    refuted = _wait_events(c, "replica_report_refuted", len(held))
    assert all(any(sha in e.details for e in refuted) for sha in held)
    assert _recent_events(c, "replica_corrupt") == []

    # Garbage collection runs every 0.3 s with a 1 s grace: give it several passes.
    time.sleep(4)
    assert chunk_files(c) == before, "a node lost chunk files"
    assert acct.download(fid) == data
    # The replicas on the reporting node still count: alone, it serves the whole file.
    assert _download_with_only(c, acct, fid, target) == data


def test_garbage_collection_keeps_what_files_reference(plane: Cluster) -> None:
    """Whatever the metadata lost (replica rows forgotten, as an accepted false report
    would do), a chunk a file references never leaves the nodes."""
    import sqlalchemy as sa

    c = plane
    acct = c.sign_up()
    data = os.urandom(3 * MiB)
    fid = acct.upload(data, "kept.bin").file_id
    trashed = os.urandom(MiB)
    trashed_id = acct.upload(trashed, "in-the-trash.bin").file_id
    c.files.DeleteFile(pb.DeleteFileRequest(session_token=acct.token, file_id=trashed_id),
                       timeout=TIMEOUT)
    before = chunk_files(c)
    engine = sa.create_engine(c.database_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text("DELETE FROM replicas")).rowcount == 4
    finally:
        engine.dispose()
    time.sleep(4)  # many collection passes and node sweeps
    assert chunk_files(c) == before, "garbage collection deleted chunks files reference"
    assert acct.download(fid) == data
    c.files.RestoreFile(pb.RestoreFileRequest(session_token=acct.token, file_id=trashed_id),
                        timeout=TIMEOUT)
    assert acct.download(trashed_id) == trashed


def _key_hashes(c: Cluster) -> dict[str, str | None]:
    import sqlalchemy as sa

    engine = sa.create_engine(c.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT name, key_hash FROM storage_nodes"))
            return {name: key_hash for name, key_hash in rows}
    finally:
        engine.dispose()


def _forget_node_key(c: Cluster, name: str) -> None:
    """The documented operator action for a node that lost its key (or a node registered
    before node keys existed): its next registration is trusted and issued a new key."""
    import sqlalchemy as sa

    engine = sa.create_engine(c.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE storage_nodes SET key_hash = NULL WHERE name = :n"),
                         {"n": name})
    finally:
        engine.dispose()


def test_a_node_that_lost_its_key_waits_for_the_operator(cluster: Cluster) -> None:
    from tests.cluster import _spawn

    c = cluster
    key_file = c.node_dir("node1") / "node_key"
    old_key = key_file.read_text().strip()
    assert all(_key_hashes(c).values())  # every node got a key at its first registration
    c.stop_node("node1", signal.SIGKILL)
    key_file.unlink()  # the disk that held the key is gone; the chunks are still there
    argv = [sys.executable, "-m", "cloudgrpc_node.app", "node1", "127.0.0.1",
            str(c.node_ports["node1"]), str(c.node_capacity_gb), "--gateway", c.address,
            "--data-dir", str(c.node_dir("node1"))]
    c.nodes["node1"] = proc = _spawn("node1-again", argv, c.env, c.root)
    proc.wait_for(r"refused node node1", timeout=30)
    c.wait_nodes_online(2, timeout=20)  # the impostor-looking node1 is kept out
    assert not key_file.exists()

    _forget_node_key(c, "node1")
    proc.wait_for(r"registered with gateway", timeout=40)
    c.wait_nodes_online(3, timeout=20)
    new_key = key_file.read_text().strip()
    assert new_key and new_key != old_key and key_file.stat().st_mode & 0o777 == 0o600
    assert all(_key_hashes(c).values())
    acct = c.sign_up()
    data = os.urandom(MiB)
    assert acct.download(acct.upload(data, "after.bin").file_id) == data


def test_insecure_opt_in_is_loud(tmp_path: Path) -> None:
    c = Cluster(tmp_path, env={"INSECURE_OPEN_CLUSTER": "1"})
    c.env.pop("CLUSTER_SECRET")
    try:
        c.start()
        assert not (tmp_path / "gateway" / "cluster_secret").exists()
        assert any("*** INSECURE: open cluster" in line for line in c.gateway.lines)
        assert all(any("*** INSECURE: open node" in line for line in proc.lines)
                   for proc in c.nodes.values())
        status = subprocess.run(
            [str(Path(sys.executable).parent / "cloudgrpc-admin"), "--server", c.address,
             "--status"],
            env={**c.env, "ADMIN_KEY": ADMIN_KEY, "COLUMNS": "200"}, capture_output=True,
            text=True, timeout=30)
        assert status.returncode == 0, status.stderr
        assert "INSECURE: open cluster" in status.stdout
        assert list(c.status().security_warnings) and "INSECURE" in c.status().security_warnings[0]
    finally:
        c.stop()
