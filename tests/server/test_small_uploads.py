"""UploadSmallFiles: many small files stored and committed in one call, judged one by one."""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

import grpc
import pytest

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import errors
from cloudgrpc_proto.client import CloudClient, SmallUpload
from tests.cluster import ADMIN_KEY, Account, Cluster, MiB


def _client(c: Cluster, acct: Account) -> CloudClient:
    return CloudClient(c.address, session_token=acct.token)


def _chunk_files(c: Cluster, sha: str) -> list[Path]:
    return [p for n in c.nodes for p in c.node_dir(n).rglob(sha)]


def test_a_batch_commits_every_file_with_two_replicas(shared_cluster: Cluster) -> None:
    c = shared_cluster
    acct = c.sign_up()
    folder = c.files.CreateFolder(pb.CreateFolderRequest(
        session_token=acct.token, name="batch")).folder.folder_id
    blobs = [os.urandom(n) for n in (4096,) * 40 + (0, 1, 200_000)]
    blobs.append(blobs[0])  # same content twice: stored once
    with _client(c, acct) as client:
        replies = client.upload_small_files(
            SmallUpload(data=b, filename=f"f{i}.bin", parent_folder_id=folder, mode=0o600,
                        mtime_ns=1_700_000_000_000_000_000)
            for i, b in enumerate(blobs))
    assert all(isinstance(r, pb.UploadFileResponse) and r.success for r in replies)
    listing = acct.ls(folder)
    assert sorted(f.filename for f in listing.files) == sorted(
        f"f{i}.bin" for i in range(len(blobs)))
    by_name = {f.filename: f for f in listing.files}
    for i, blob in enumerate(blobs):
        entry = by_name[f"f{i}.bin"]
        assert entry.file_size == len(blob) and entry.mode == 0o600
        assert entry.mtime_ns == 1_700_000_000_000_000_000
        assert acct.download(entry.file_id) == blob
    assert acct.storage().used_bytes == sum(len(b) for b in blobs)
    assert replies[-1].chunks_deduplicated == 1 or replies[0].chunks_deduplicated == 1
    for blob in blobs[:5] + blobs[41:43]:
        assert len(_chunk_files(c, hashlib.sha256(blob).hexdigest())) == 2


def test_each_file_fails_on_its_own(shared_cluster: Cluster) -> None:
    c = shared_cluster
    acct = c.sign_up()
    taken = acct.upload(b"old", "taken.txt").file_id
    replaced = acct.upload(b"old content", "replace-me.txt").file_id
    with _client(c, acct) as client:
        replies = client.upload_small_files([
            SmallUpload(data=b"fine", filename="fine.txt"),
            SmallUpload(data=b"clash", filename="taken.txt"),
            SmallUpload(data=b"bad", filename="a/b"),
            SmallUpload(data=b"new", filename="replace-me.txt", replace_existing=True),
            SmallUpload(data=b"v2", overwrite_file_id=taken, expected_version=1),
            SmallUpload(data=b"stale", overwrite_file_id=replaced, expected_version=7),
            SmallUpload(data=b"twice", filename="twice.txt"),
            SmallUpload(data=b"twice again", filename="twice.txt"),
            SmallUpload(data=b"nowhere", filename="x.txt", parent_folder_id="no-such-folder"),
        ])
    kinds = [type(r).__name__ if isinstance(r, errors.CloudError) else "ok" for r in replies]
    assert kinds == ["ok", "AlreadyExists", "InvalidArgument", "ok", "ok", "Conflict", "ok",
                     "AlreadyExists", "NotFound"]
    names = {f.filename: f for f in acct.ls().files}
    assert set(names) == {"taken.txt", "replace-me.txt", "fine.txt", "twice.txt"}
    assert acct.download(names["taken.txt"].file_id) == b"v2"
    assert names["taken.txt"].version == 2
    assert acct.download(names["replace-me.txt"].file_id) == b"new"
    assert names["replace-me.txt"].file_id == replaced
    assert acct.download(names["twice.txt"].file_id) == b"twice"
    assert acct.storage().used_bytes == len(b"fine") + len(b"v2") + len(b"new") + len(b"twice")


def test_quota_refuses_the_files_that_do_not_fit(shared_cluster: Cluster) -> None:
    c = shared_cluster
    acct = c.sign_up()
    c.admin.SetUserQuota(pb.SetUserQuotaRequest(admin_key=ADMIN_KEY, email=acct.email,
                                                storage_bytes=MiB))
    with _client(c, acct) as client:
        replies = client.upload_small_files(
            SmallUpload(data=os.urandom(300_000), filename=f"p{i}") for i in range(5))
    assert [isinstance(r, errors.QuotaExceeded) for r in replies] == [
        False, False, False, True, True]
    assert "not enough space" in str(replies[3])
    assert acct.storage().used_bytes == 900_000
    assert len(acct.ls().files) == 3


def test_batch_limits_and_session(shared_cluster: Cluster) -> None:
    c = shared_cluster
    acct = c.sign_up()
    with pytest.raises(grpc.RpcError) as err:
        c.files.UploadSmallFiles(pb.UploadSmallFilesRequest(
            session_token=acct.token,
            files=[pb.SmallFileUpload(metadata=pb.FileMetadata(filename=f"f{i}"))
                   for i in range(1001)]), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        c.files.UploadSmallFiles(pb.UploadSmallFilesRequest(
            session_token="nope", files=[pb.SmallFileUpload(
                metadata=pb.FileMetadata(filename="x"), data=b"x")]), timeout=30)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    reply = c.files.UploadSmallFiles(pb.UploadSmallFilesRequest(
        session_token=acct.token, files=[pb.SmallFileUpload(
            metadata=pb.FileMetadata(filename="big", file_size=5 * MiB), data=b"small")]),
        timeout=30)
    assert reply.results[0].error_code == "INVALID_ARGUMENT"
    assert acct.ls().files == []


def test_a_dead_node_mid_batch_fails_over(sqlite_cluster: Cluster) -> None:
    c = sqlite_cluster
    acct = c.sign_up()
    c.stop_node("node2", signal.SIGKILL)  # still "online" for the gateway for a while
    blobs = [os.urandom(4096) for _ in range(30)]
    with _client(c, acct) as client:
        replies = client.upload_small_files(
            SmallUpload(data=b, filename=f"f{i}") for i, b in enumerate(blobs))
    assert all(isinstance(r, pb.UploadFileResponse) for r in replies), replies
    for blob in blobs:
        copies = _chunk_files(c, hashlib.sha256(blob).hexdigest())
        assert len([p for p in copies if "node2" not in str(p)]) == 2
    files = {f.filename: f.file_id for f in acct.ls().files}
    for i, blob in enumerate(blobs):
        assert acct.download(files[f"f{i}"]) == blob


def test_concurrent_batches_into_one_folder(shared_cluster: Cluster) -> None:
    """Batches racing into one folder (as several mounts of an account do): every file
    lands once, a name two batches both want goes to exactly one of them."""
    import concurrent.futures as cf

    c = shared_cluster
    acct = c.sign_up()
    folder = c.files.CreateFolder(pb.CreateFolderRequest(
        session_token=acct.token, name="busy")).folder.folder_id

    def batch(worker: int) -> list[object]:
        with _client(c, acct) as client:
            return client.upload_small_files(
                [SmallUpload(data=os.urandom(2000), filename=f"w{worker}-{i}",
                             parent_folder_id=folder) for i in range(40)]
                + [SmallUpload(data=b"contested", filename="shared-name",
                               parent_folder_id=folder)])

    with cf.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(batch, range(4)))
    for replies in results:
        assert all(isinstance(r, pb.UploadFileResponse) for r in replies[:40]), replies[:3]
    contested = [replies[40] for replies in results]
    assert sum(isinstance(r, pb.UploadFileResponse) for r in contested) == 1
    assert all(isinstance(r, errors.AlreadyExists) for r in contested
               if not isinstance(r, pb.UploadFileResponse))
    names = [f.filename for f in acct.ls(folder).files]
    assert len(names) == len(set(names)) == 4 * 40 + 1
    assert acct.storage().used_bytes == 4 * 40 * 2000 + len(b"contested")
