"""What users keep when nodes die or lie: killed nodes, corrupt replicas, graceful stops."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cloudgrpc_proto import cloud_storage_pb2 as pb
from tests.cluster import Cluster, MiB


def test_files_survive_a_node_killed_with_sigkill(cluster: Cluster) -> None:
    acct = cluster.sign_up()
    files = {}
    for i in range(4):
        data = os.urandom(6 * MiB + i)
        files[acct.upload(data, f"f{i}.bin").file_id] = data
    cluster.stop_node("node2", signal.SIGKILL)
    # Straight away, before the gateway has even noticed the node is gone.
    for fid, data in files.items():
        assert acct.download(fid) == data
    # And after it has marked the node offline, new uploads still get two replicas.
    cluster.wait_nodes_online(2, timeout=20)
    data = os.urandom(5 * MiB)
    fid = acct.upload(data, "after.bin").file_id
    assert acct.download(fid) == data
    assert cluster.status().under_replicated_chunks > 0  # the dead node's share
    # The node comes back with its chunks: everything is fully replicated again.
    cluster.start_node("node2")
    cluster.wait_nodes_online(3)
    assert cluster.status().under_replicated_chunks == 0


def _slow_upload(token: str, name: str, data: bytes, pause: float,
                 piece: int = MiB) -> Iterator[pb.UploadFileRequest]:
    yield pb.UploadFileRequest(metadata=pb.FileMetadata(
        session_token=token, filename=name, file_size=len(data)))
    for i in range(0, len(data), piece):
        time.sleep(pause)
        yield pb.UploadFileRequest(chunk_data=data[i:i + piece])


def test_node_killed_during_upload_completes_or_fails_cleanly(sqlite_cluster: Cluster) -> None:
    c = sqlite_cluster
    acct = c.sign_up()
    data = os.urandom(24 * MiB)
    killer = threading.Timer(0.6, c.stop_node, args=("node1", signal.SIGKILL))
    killer.start()
    try:
        reply = c.files.UploadFile(_slow_upload(acct.token, "big.bin", data, 0.05), timeout=120)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc.details()
        assert acct.ls().files == []
    else:
        assert acct.download(reply.file_id) == data
    finally:
        killer.join()
    listed = acct.ls().files
    for entry in listed:
        assert entry.file_size == len(data)


def test_upload_fails_cleanly_when_too_few_nodes_are_left(sqlite_cluster: Cluster) -> None:
    c = sqlite_cluster
    acct = c.sign_up()
    data = os.urandom(20 * MiB)

    def kill_two() -> None:
        c.stop_node("node1", signal.SIGKILL)
        c.stop_node("node2", signal.SIGKILL)

    killer = threading.Timer(0.5, kill_two)
    killer.start()
    with pytest.raises(grpc.RpcError) as err:
        c.files.UploadFile(_slow_upload(acct.token, "doomed.bin", data, 0.1), timeout=120)
    killer.join()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "nodes" in err.value.details()
    assert acct.ls().files == [] and acct.ls(include_deleted=True).files == []
    assert acct.storage().used_bytes == 0


def _chunk_files(c: Cluster, sha: str) -> list[Path]:
    return [p for n in c.nodes for p in c.node_dir(n).rglob(sha)]


def test_corrupt_replica_is_skipped_and_repaired(cluster: Cluster) -> None:
    acct = cluster.sign_up()
    data = os.urandom(4 * MiB)
    fid = acct.upload(data, "precious.bin").file_id
    sha = hashlib.sha256(data).hexdigest()
    replicas = _chunk_files(cluster, sha)
    assert len(replicas) == 2
    for victim in replicas[:1]:
        raw = bytearray(victim.read_bytes())
        raw[1000] ^= 0xFF
        victim.write_bytes(bytes(raw))
    for _ in range(6):  # reads pick replicas at random: hit the bad one for sure
        assert acct.download(fid) == data
        assert acct.download(fid, 999, 3) == data[999:1002]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all(hashlib.sha256(p.read_bytes()).hexdigest() == sha for p in replicas):
            break
        time.sleep(0.1)
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() == sha for p in replicas)


def test_every_replica_corrupt_is_an_error_not_bad_bytes(sqlite_cluster: Cluster) -> None:
    c = sqlite_cluster
    acct = c.sign_up()
    data = os.urandom(MiB)
    fid = acct.upload(data, "lost.bin").file_id
    for p in _chunk_files(c, hashlib.sha256(data).hexdigest()):
        p.write_bytes(b"garbage" + data[7:])
    with pytest.raises(grpc.RpcError) as err:
        acct.download(fid)
    assert err.value.code() == grpc.StatusCode.DATA_LOSS
    assert "unreadable on every replica" in err.value.details()


def test_sigterm_lets_in_flight_uploads_finish(sqlite_cluster: Cluster) -> None:
    c = sqlite_cluster
    acct = c.sign_up()
    data = os.urandom(8 * MiB)
    assert c.gateway is not None
    stopper = threading.Timer(0.5, c.gateway.popen.send_signal, args=(signal.SIGTERM,))
    stopper.start()
    reply = c.files.UploadFile(_slow_upload(acct.token, "last.bin", data, 0.15), timeout=60)
    stopper.join()
    assert reply.success
    assert c.gateway.popen.wait(30) == 0
    c.start_gateway()
    assert acct.download(reply.file_id) == data


def test_health_and_reflection(sqlite_cluster: Cluster) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    c = sqlite_cluster
    health = health_pb2_grpc.HealthStub(c.channel)
    for service in ("", "cloudstorage.FileService", "cloudstorage.AuthService"):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(c.channel)
    replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")]), timeout=5)
    names = {s.name for r in replies for s in r.list_services_response.service}
    assert {"cloudstorage.FileService", "cloudstorage.AdminService",
            "cloudstorage.NodeService", "grpc.health.v1.Health"} <= names
    # Nodes serve health too.
    port = c.node_ports["node1"]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                      timeout=5).status
    assert status == health_pb2.HealthCheckResponse.SERVING


def test_node_with_wrong_cluster_secret_cannot_join(sqlite_cluster: Cluster) -> None:
    c = sqlite_cluster
    node = pb.RegisterNodeRequest(name="intruder", host="127.0.0.1", port=1,
                                  capacity_bytes=10**9, cluster_secret="guess")
    from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc

    with pytest.raises(grpc.RpcError) as err:
        pb_grpc.NodeServiceStub(c.channel).RegisterNode(node, timeout=5)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert c.status().total_nodes == 3


def test_full_nodes_say_so(tmp_path: Path) -> None:
    c = Cluster(tmp_path, node_capacity_gb=0.01)  # three nodes of about 10 MB
    try:
        c.start()
        acct = c.sign_up()
        with pytest.raises(grpc.RpcError) as err:
            acct.upload(os.urandom(24 * MiB), "too-big-for-the-cluster.bin")
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "out of space" in err.value.details()
        assert acct.ls().files == []
        small = os.urandom(MiB)
        assert acct.download(acct.upload(small, "fits.bin").file_id) == small
    finally:
        c.stop()
