"""DeleteFiles: many files to the trash (or gone for good) in one call, a result per id."""

from __future__ import annotations

import grpc
import pytest

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import errors
from cloudgrpc_proto.client import CloudClient
from tests.cluster import Cluster


def test_batch_delete_mixed_ids_trash_and_quota(cluster: Cluster) -> None:
    c = cluster
    me, other = c.sign_up(), c.sign_up()
    folder = c.files.CreateFolder(pb.CreateFolderRequest(session_token=me.token, name="d"))
    fid = folder.folder.folder_id
    mine = [me.upload(b"x" * (100 + i), f"f{i}.txt", folder_id=fid).file_id for i in range(5)]
    theirs = other.upload(b"secret", "theirs.txt").file_id
    trashed = me.upload(b"t" * 7, "old.txt").file_id
    c.files.DeleteFile(pb.DeleteFileRequest(session_token=me.token, file_id=trashed))
    before_mtime = me.ls(fid).folder.mtime_ns
    used = me.storage().used_bytes

    client = CloudClient(c.address, session_token=me.token)
    try:
        results = client.delete_files(mine[:3] + [theirs, "no-such-id", trashed, mine[0]])
    finally:
        client.close()
    assert list(results) == mine[:3] + [theirs, "no-such-id", trashed]
    assert all(results[i] is None for i in mine[:3])
    for bad in (theirs, "no-such-id", trashed):
        assert isinstance(results[bad], errors.NotFound), results[bad]
    # the other user's file is untouched; ours are in the trash, the folder's mtime moved
    assert [f.filename for f in other.ls().files] == ["theirs.txt"]
    assert sorted(f.filename for f in me.ls(fid).files) == ["f3.txt", "f4.txt"]
    assert me.ls(fid).folder.mtime_ns > before_mtime
    trash = c.files.ListTrash(pb.ListTrashRequest(session_token=me.token))
    assert sorted(f.original_path for f in trash.files) == [
        "/d/f0.txt", "/d/f1.txt", "/d/f2.txt", "/old.txt"]
    assert me.storage().used_bytes == used  # the trash still counts

    # permanent: trashed and live files alike, the quota is released at once
    reply = c.files.DeleteFiles(pb.DeleteFilesRequest(
        session_token=me.token, file_ids=[mine[0], mine[3], trashed], permanent=True))
    assert reply.deleted == 3 and all(r.success for r in reply.results)
    assert me.storage().used_bytes == used - 100 - 103 - 7
    trash = c.files.ListTrash(pb.ListTrashRequest(session_token=me.token))
    assert sorted(f.original_path for f in trash.files) == ["/d/f1.txt", "/d/f2.txt"]
    assert [f.filename for f in me.ls(fid).files] == ["f4.txt"]

    # a batch beyond the cap is refused as a whole
    with pytest.raises(grpc.RpcError) as err:
        c.files.DeleteFiles(pb.DeleteFilesRequest(
            session_token=me.token, file_ids=[f"id-{i}" for i in range(1001)]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        c.files.DeleteFiles(pb.DeleteFilesRequest(session_token="bogus", file_ids=[mine[4]]))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert [f.filename for f in me.ls(fid).files] == ["f4.txt"]
