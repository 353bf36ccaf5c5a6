"""Self-healing: repair after node loss, trimming, scrubbing, draining, garbage collection,
and crash safety of the gateway. Timings are shortened through the same settings an
operator would use."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from cloudgrpc_proto import cloud_storage_pb2 as pb
from tests.cluster import ADMIN_KEY, Cluster, MiB

FAST = {
    "NODE_TIMEOUT_S": "2",
    "REPAIR_GRACE_S": "1",
    "REPAIR_INTERVAL_S": "0.5",
    "GC_GRACE_S": "1",
    "GC_INTERVAL_S": "0.5",
    "GC_IDLE_S": "0",
    "NODE_CALL_TIMEOUT_S": "3",
    "SCRUB_INTERVAL_S": "1",
    "SCRUB_RATE_MBPS": "200",
}


def _wait(cond: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _on_disk(c: Cluster, sha: str) -> list[str]:
    return [n for n in c.nodes if (c.node_dir(n) / "chunks" / sha[:2] / sha[2:4] / sha).exists()]


def _replica_rows(c: Cluster) -> list[tuple[str, str]]:
    engine = sa.create_engine(c.database_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(
                "SELECT r.chunk_sha256, n.name FROM replicas r "
                "JOIN storage_nodes n ON n.id = r.node_id"))]
    finally:
        engine.dispose()


def _sql(c: Cluster, statement: str, **params: object) -> list[tuple]:
    engine = sa.create_engine(c.database_url)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(statement), params)
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


@pytest.fixture
def fast_cluster(tmp_path: Path, database_url: str) -> Iterator[Cluster]:
    c = Cluster(tmp_path, database_url=database_url, env=FAST)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def test_repair_after_node_loss_then_trim_when_it_returns(fast_cluster: Cluster) -> None:
    c = fast_cluster
    acct = c.sign_up()
    files = {}
    for i in range(3):
        data = os.urandom(5 * MiB + i)
        files[acct.upload(data, f"f{i}.bin").file_id] = data
    chunk_count = c.status().total_chunks
    c.stop_node("node1", signal.SIGKILL)
    started = time.monotonic()
    _wait(lambda: c.status().online_nodes == 2, what="node1 offline")
    _wait(lambda: c.status().under_replicated_chunks == 0, what="full replication")
    healed_in = time.monotonic() - started
    # Every chunk now lives on node2 and node3: losing node2 as well loses nothing.
    for sha in {r[0] for r in _replica_rows(c)}:
        assert set(_on_disk(c, sha)) >= {"node2", "node3"}
    c.stop_node("node2", signal.SIGKILL)
    for fid, data in files.items():
        assert acct.download(fid) == data
    c.start_node("node2")
    c.start_node("node1")
    c.wait_nodes_online(3, timeout=20)
    # node1 came back with its old replicas: the extra copies are trimmed to two.
    _wait(lambda: len(_replica_rows(c)) == 2 * chunk_count, what="trim to 2 replicas")
    for fid, data in files.items():
        assert acct.download(fid) == data
    assert healed_in < 20


def test_scrub_finds_rot_and_repair_restores_it(tmp_path: Path) -> None:
    c = Cluster(tmp_path, env=FAST)
    try:
        c.start()
        acct = c.sign_up()
        data = os.urandom(2 * MiB)
        fid = acct.upload(data, "rot.bin").file_id
        sha = hashlib.sha256(data).hexdigest()
        holders = _on_disk(c, sha)
        assert len(holders) == 2
        victim = c.node_dir(holders[0]) / "chunks" / sha[:2] / sha[2:4] / sha
        raw = bytearray(victim.read_bytes())
        raw[12345] ^= 0x01
        victim.write_bytes(bytes(raw))
        quarantine = c.node_dir(holders[0]) / "quarantine"
        _wait(lambda: quarantine.exists() and any(quarantine.iterdir()),
              what="scrubber quarantine")

        def healthy() -> bool:
            good = [n for n in _on_disk(c, sha) if hashlib.sha256(
                (c.node_dir(n) / "chunks" / sha[:2] / sha[2:4] / sha).read_bytes()
            ).hexdigest() == sha]
            return len(good) == 2

        _wait(healthy, what="two good replicas again")
        assert acct.download(fid) == data
    finally:
        c.stop()


def test_drained_node_can_be_switched_off(fast_cluster: Cluster) -> None:
    c = fast_cluster
    acct = c.sign_up()
    files = {acct.upload(os.urandom(3 * MiB), f"d{i}.bin").file_id: None for i in range(3)}
    for fid in files:
        files[fid] = acct.download(fid)
    c.admin.DrainNode(pb.DrainNodeRequest(admin_key=ADMIN_KEY, node_name="node3"), timeout=10)
    _wait(lambda: _sql(c, "SELECT status FROM storage_nodes WHERE name = 'node3'")[0][0]
          == "drained", what="node3 drained")
    assert all(name != "node3" for _, name in _replica_rows(c))
    c.stop_node("node3", signal.SIGKILL)
    for fid, data in files.items():
        assert acct.download(fid) == data
    # New data avoids the drained node.
    fid = acct.upload(os.urandom(MiB), "new.bin").file_id
    assert acct.download(fid)


def test_garbage_collection_frees_nodes(fast_cluster: Cluster) -> None:
    c = fast_cluster
    acct = c.sign_up()
    keep = os.urandom(4 * MiB)
    doomed = os.urandom(4 * MiB)
    shared = os.urandom(4 * MiB)
    keep_id = acct.upload(keep, "keep.bin").file_id
    doomed_id = acct.upload(doomed, "doomed.bin").file_id
    acct.upload(shared, "shared-1.bin")
    shared_2 = acct.upload(shared, "shared-2.bin").file_id
    t = acct.token
    c.files.DeleteFile(pb.DeleteFileRequest(session_token=t, file_id=doomed_id,
                                            permanent=True))
    c.files.DeleteFile(pb.DeleteFileRequest(session_token=t, file_id=shared_2,
                                            permanent=True))
    # Overwriting drops the old content too.
    old = os.urandom(4 * MiB)
    ow = acct.upload(old, "ow.bin").file_id
    acct.upload(os.urandom(MiB), "ow.bin", overwrite_file_id=ow)
    sha = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    _wait(lambda: not _on_disk(c, sha(doomed)) and not _on_disk(c, sha(old)),
          what="garbage off the nodes")
    assert len(_on_disk(c, sha(keep))) == 2
    assert len(_on_disk(c, sha(shared))) == 2  # still used by shared-1.bin
    assert acct.download(keep_id) == keep


def test_failed_upload_leaves_no_garbage(fast_cluster: Cluster) -> None:
    c = fast_cluster
    acct = c.sign_up()
    data = os.urandom(12 * MiB)

    def reqs() -> Iterator[pb.UploadFileRequest]:
        yield pb.UploadFileRequest(metadata=pb.FileMetadata(
            session_token=acct.token, filename="half.bin", file_size=len(data) + 1))
        for i in range(0, len(data), MiB):
            yield pb.UploadFileRequest(chunk_data=data[i:i + MiB])

    with pytest.raises(grpc.RpcError):
        c.files.UploadFile(reqs(), timeout=60)  # announced one byte more than it sends
    first = hashlib.sha256(data[:4 * MiB]).hexdigest()
    _wait(lambda: not _on_disk(c, first), what="orphans of the failed upload collected")
    assert acct.ls().files == []
    assert c.status().total_chunks == 0


def _sum_sizes(c: Cluster, user_id: str) -> int:
    return int(_sql(c, "SELECT COALESCE(SUM(size), 0) FROM files WHERE owner_id = :u",
                    u=user_id)[0][0])


def test_gateway_killed_mid_flight_loses_nothing_committed(cluster: Cluster) -> None:
    c = cluster
    acct = c.sign_up()
    committed: dict[str, bytes] = {}
    for i in range(4):
        data = os.urandom(MiB * (i + 1))
        committed[acct.upload(data, f"c{i}.bin").file_id] = data
    victim = next(iter(committed))
    errors: list[BaseException] = []

    def slow_upload() -> None:
        def reqs() -> Iterator[pb.UploadFileRequest]:
            data = os.urandom(16 * MiB)
            yield pb.UploadFileRequest(metadata=pb.FileMetadata(
                session_token=acct.token, filename="inflight.bin", file_size=len(data)))
            for i in range(0, len(data), MiB):
                time.sleep(0.1)
                yield pb.UploadFileRequest(chunk_data=data[i:i + MiB])
        try:
            c.files.UploadFile(reqs(), timeout=60)
        except grpc.RpcError as exc:
            errors.append(exc)

    def deletes() -> None:
        try:
            c.files.DeleteFile(pb.DeleteFileRequest(session_token=acct.token,
                                                    file_id=victim, permanent=True))
        except grpc.RpcError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=slow_upload), threading.Thread(target=deletes)]
    for th in threads:
        th.start()
    time.sleep(0.6)
    assert c.gateway is not None
    c.gateway.stop(signal.SIGKILL)
    for th in threads:
        th.join(30)
    c.start_gateway()
    c.wait_nodes_online(3)
    listed = {f.file_id: f for f in acct.ls().files}
    assert "inflight.bin" not in {f.filename for f in listed.values()}
    for fid, data in committed.items():
        if fid == victim and fid not in listed:
            continue  # the delete committed before the kill
        assert acct.download(fid) == data
    assert acct.storage().used_bytes == _sum_sizes(c, acct.user_id)


def test_drain_survives_the_node_going_away(fast_cluster: Cluster) -> None:
    c = fast_cluster
    acct = c.sign_up()
    data = os.urandom(3 * MiB)
    fid = acct.upload(data, "x.bin").file_id
    c.stop_node("node1", signal.SIGKILL)
    _wait(lambda: c.status().online_nodes == 2, what="node1 offline")
    c.admin.DrainNode(pb.DrainNodeRequest(admin_key=ADMIN_KEY, node_name="node1"), timeout=10)
    status = lambda: _sql(c, "SELECT status FROM storage_nodes WHERE name = 'node1'")[0][0]  # noqa: E731
    assert status() in ("drain-offline", "drained")
    c.start_node("node1")
    # Back, it keeps leaving: it never takes new chunks again, and ends drained.
    _wait(lambda: status() == "drained", what="node1 drained")
    assert acct.download(fid) == data
    assert all(name != "node1" for _, name in _replica_rows(c))


def test_collection_never_takes_chunks_of_an_upload_in_flight(tmp_path: Path) -> None:
    # Collection as aggressive as it gets: every pass, for anything unused for 1 s.
    c = Cluster(tmp_path, env={**FAST, "GC_INTERVAL_S": "0.2"})
    try:
        c.start()
        acct = c.sign_up()
        old = os.urandom(8 * MiB)
        gone = acct.upload(old, "old.bin").file_id
        c.files.DeleteFile(pb.DeleteFileRequest(session_token=acct.token, file_id=gone,
                                                permanent=True))
        # The same bytes again (their chunks are garbage now) plus new ones, sent slowly:
        # the upload outlives the grace period several times over.
        data = old + os.urandom(8 * MiB)

        def reqs() -> Iterator[pb.UploadFileRequest]:
            yield pb.UploadFileRequest(metadata=pb.FileMetadata(
                session_token=acct.token, filename="slow.bin", file_size=len(data)))
            for i in range(0, len(data), MiB):
                time.sleep(0.35)
                yield pb.UploadFileRequest(chunk_data=data[i:i + MiB])

        fid = c.files.UploadFile(reqs(), timeout=120).file_id
        time.sleep(2.0)  # several more collection passes after the commit
        assert acct.download(fid) == data
        for piece in (data[:4 * MiB], data[12 * MiB:]):
            assert len(_on_disk(c, hashlib.sha256(piece).hexdigest())) == 2
    finally:
        c.stop()
