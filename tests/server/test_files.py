"""The files API through the real gateway and nodes: data, tree, trash, shares, isolation."""

from __future__ import annotations

import hashlib
import os

import grpc
import pytest

from cloudgrpc_proto import cloud_storage_pb2 as pb
from tests.cluster import Account, Cluster, MiB


def _code(err: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    return err.value.code()


@pytest.mark.parametrize("size", [0, 1, 4 * MiB, 9 * MiB + 17])
def test_round_trip(shared_cluster: Cluster, size: int) -> None:
    acct = shared_cluster.sign_up()
    data = os.urandom(size)
    r = acct.upload(data, "blob.bin")
    assert r.success and r.file_id
    assert r.chunks_stored == -(-size // (4 * MiB))
    back = acct.download(r.file_id)
    assert hashlib.sha256(back).digest() == hashlib.sha256(data).digest()
    assert acct.storage().used_bytes == size


def test_ranged_downloads(shared_cluster: Cluster) -> None:
    acct = shared_cluster.sign_up()
    data = os.urandom(10 * MiB + 333)
    fid = acct.upload(data).file_id
    for offset, length in [(0, 10), (4 * MiB - 5, 10), (5 * MiB, 3 * MiB), (10 * MiB, 0),
                           (len(data) - 1, 100), (len(data) + 10, 5)]:
        want = data[offset:offset + length] if length else data[offset:]
        assert acct.download(fid, offset, length) == want


def test_identical_chunks_are_stored_once(shared_cluster: Cluster) -> None:
    acct = shared_cluster.sign_up()
    data = os.urandom(8 * MiB)
    first = acct.upload(data, "a.bin")
    second = acct.upload(data, "b.bin")
    assert first.chunks_stored == 2 and first.chunks_deduplicated == 0
    assert second.chunks_stored == 0 and second.chunks_deduplicated == 2
    assert acct.download(second.file_id) == data
    # Quota counts the logical bytes of each file.
    assert acct.storage().used_bytes == 16 * MiB


def test_chunk_refs_only_for_chunks_the_user_sent(shared_cluster: Cluster) -> None:
    c = shared_cluster
    a, b = c.sign_up(), c.sign_up()
    data = os.urandom(4 * MiB)
    a.upload(data, "secret.bin")
    sha = hashlib.sha256(data).hexdigest()
    assert list(c.files.FindChunks(pb.FindChunksRequest(session_token=a.token,
                                                        sha256=[sha])).present) == [sha]
    assert not c.files.FindChunks(pb.FindChunksRequest(session_token=b.token,
                                                       sha256=[sha])).present

    def by_ref(token: str) -> pb.UploadFileResponse:
        def reqs():
            yield pb.UploadFileRequest(metadata=pb.FileMetadata(
                session_token=token, filename="ref.bin", file_size=len(data)))
            yield pb.UploadFileRequest(chunk_ref=pb.ChunkRef(sha256=sha, size=len(data)))
        return c.files.UploadFile(reqs(), timeout=30)

    with pytest.raises(grpc.RpcError) as err:
        by_ref(b.token)
    assert _code(err) == grpc.StatusCode.PERMISSION_DENIED
    r = by_ref(a.token)
    assert r.chunks_stored == 0 and a.download(r.file_id) == data


def test_folders_move_rename_and_listing(shared_cluster: Cluster) -> None:
    c = shared_cluster
    acct = c.sign_up()
    t = acct.token
    docs = c.files.CreateFolder(pb.CreateFolderRequest(session_token=t, name="docs")).folder
    sub = c.files.CreateFolder(pb.CreateFolderRequest(
        session_token=t, name="2024", parent_folder_id=docs.folder_id)).folder
    with pytest.raises(grpc.RpcError) as err:
        c.files.CreateFolder(pb.CreateFolderRequest(session_token=t, name="docs"))
    assert _code(err) == grpc.StatusCode.ALREADY_EXISTS
    f = acct.upload(b"hello", "note.txt", folder_id=sub.folder_id)
    listing = acct.ls(sub.folder_id)
    assert [x.filename for x in listing.files] == ["note.txt"]
    assert listing.files[0].mime_type == "text/plain"
    assert listing.files[0].path == "/docs/2024/note.txt"
    # Stat by path and by id.
    st = c.files.StatEntry(pb.StatEntryRequest(session_token=t, path="/docs/2024/note.txt"))
    assert st.file.file_id == f.file_id
    st = c.files.StatEntry(pb.StatEntryRequest(session_token=t, entry_id=sub.folder_id))
    assert st.folder.path == "/docs/2024"
    # Rename a file, move it to the root, rename a folder: one call each.
    c.files.MoveEntry(pb.MoveEntryRequest(session_token=t, entry_id=f.file_id,
                                          new_name="renamed.txt"))
    c.files.MoveEntry(pb.MoveEntryRequest(session_token=t, entry_id=f.file_id,
                                          new_parent_folder_id="root"))
    c.files.MoveEntry(pb.MoveEntryRequest(session_token=t, entry_id=docs.folder_id,
                                          new_name="papers"))
    root = acct.ls()
    assert sorted(x.filename for x in root.files) == ["renamed.txt"]
    assert sorted(x.name for x in root.folders) == ["papers"]
    st = c.files.StatEntry(pb.StatEntryRequest(session_token=t, path="/papers/2024"))
    assert st.folder.folder_id == sub.folder_id
    # A folder cannot move into itself.
    with pytest.raises(grpc.RpcError) as err:
        c.files.MoveEntry(pb.MoveEntryRequest(session_token=t, entry_id=docs.folder_id,
                                              new_parent_folder_id=sub.folder_id))
    assert _code(err) == grpc.StatusCode.INVALID_ARGUMENT
    # Non-empty folders need recursive delete.
    acct.upload(b"x", "x.txt", folder_id=sub.folder_id)
    with pytest.raises(grpc.RpcError) as err:
        c.files.DeleteFolder(pb.DeleteFolderRequest(session_token=t,
                                                    folder_id=docs.folder_id))
    assert _code(err) == grpc.StatusCode.FAILED_PRECONDITION
    c.files.DeleteFolder(pb.DeleteFolderRequest(session_token=t, folder_id=docs.folder_id,
                                                recursive=True))
    assert [x.name for x in acct.ls().folders] == []


def test_overwrite_is_atomic_and_accounted(shared_cluster: Cluster) -> None:
    acct = shared_cluster.sign_up()
    old = os.urandom(5 * MiB)
    new = os.urandom(2 * MiB)
    fid = acct.upload(old, "doc.bin").file_id
    with pytest.raises(grpc.RpcError) as err:
        acct.upload(new, "doc.bin")
    assert _code(err) == grpc.StatusCode.ALREADY_EXISTS
    r = acct.upload(new, "doc.bin", replace_existing=True)
    assert r.file_id == fid and r.entry.version == 2
    assert acct.download(fid) == new
    assert acct.storage().used_bytes == 2 * MiB
    r = acct.upload(old, "ignored-name", overwrite_file_id=fid)
    assert acct.download(fid) == old and r.entry.version == 3
    with pytest.raises(grpc.RpcError) as err:
        acct.upload(new, "x", overwrite_file_id=fid, expected_version=2)
    assert _code(err) == grpc.StatusCode.ABORTED
    assert acct.download(fid) == old


def test_trash_restore_and_empty(shared_cluster: Cluster) -> None:
    c = shared_cluster
    acct = c.sign_up()
    t = acct.token
    fid = acct.upload(b"a" * 1000, "keep.txt").file_id
    gone = acct.upload(b"b" * 3000, "gone.txt").file_id
    c.files.DeleteFile(pb.DeleteFileRequest(session_token=t, file_id=fid))
    c.files.DeleteFile(pb.DeleteFileRequest(session_token=t, file_id=gone))
    assert acct.ls().files == []
    assert {f.filename for f in acct.ls(include_deleted=True).files} == {"keep.txt",
                                                                        "gone.txt"}
    trash = c.files.ListTrash(pb.ListTrashRequest(session_token=t))
    assert {f.original_path for f in trash.files} == {"/keep.txt", "/gone.txt"}
    # Soft-deleted files still count until the trash is emptied.
    assert acct.storage().used_bytes == 4000
    c.files.RestoreFile(pb.RestoreFileRequest(session_token=t, file_id=fid))
    assert [f.filename for f in acct.ls().files] == ["keep.txt"]
    assert acct.download(fid) == b"a" * 1000
    emptied = c.files.EmptyTrash(pb.EmptyTrashRequest(session_token=t))
    assert emptied.files_removed == 1 and emptied.bytes_freed == 3000
    assert acct.storage().used_bytes == 1000
    c.files.DeleteFile(pb.DeleteFileRequest(session_token=t, file_id=fid, permanent=True))
    assert acct.storage().used_bytes == 0
    with pytest.raises(grpc.RpcError) as err:
        acct.download(fid)
    assert _code(err) == grpc.StatusCode.NOT_FOUND


def test_shares_read_and_write(shared_cluster: Cluster) -> None:
    c = shared_cluster
    owner, reader, writer = c.sign_up(), c.sign_up(), c.sign_up()
    fid = owner.upload(b"v1", "shared.txt").file_id
    c.files.ShareFile(pb.ShareFileRequest(session_token=owner.token, file_id=fid,
                                          share_with_email=reader.email, permission="read"))
    r = c.files.ShareFile(pb.ShareFileRequest(session_token=owner.token, file_id=fid,
                                              share_with_email=writer.email,
                                              permission="write"))
    assert r.share_token
    mine = c.files.ListSharedWithMe(pb.ListSharedWithMeRequest(session_token=reader.token))
    assert [(f.filename, f.permission, f.owner_email) for f in mine.files] == [
        ("shared.txt", "read", owner.email)]
    assert reader.download(fid) == b"v1"
    with pytest.raises(grpc.RpcError) as err:
        reader.upload(b"evil", "x", overwrite_file_id=fid)
    assert _code(err) == grpc.StatusCode.PERMISSION_DENIED
    writer.upload(b"v2 by writer", "x", overwrite_file_id=fid)
    assert owner.download(fid) == b"v2 by writer"
    # The owner pays for the bytes.
    assert owner.storage().used_bytes == len(b"v2 by writer")
    assert writer.storage().used_bytes == 0
    shares = c.files.ListShares(pb.ListSharesRequest(session_token=owner.token))
    assert {s.shared_with_email for s in shares.shares} == {reader.email, writer.email}
    c.files.RevokeShare(pb.RevokeShareRequest(session_token=owner.token, file_id=fid,
                                              shared_with_email=reader.email))
    with pytest.raises(grpc.RpcError) as err:
        reader.download(fid)
    assert _code(err) == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        c.files.ShareFile(pb.ShareFileRequest(session_token=owner.token, file_id=fid,
                                              share_with_email="nobody@example.com",
                                              permission="read"))
    assert _code(err) == grpc.StatusCode.NOT_FOUND


def test_users_cannot_touch_each_others_files(shared_cluster: Cluster) -> None:
    c = shared_cluster
    a, b = c.sign_up(), c.sign_up()
    fid = a.upload(b"private", "private.txt").file_id
    folder = c.files.CreateFolder(pb.CreateFolderRequest(session_token=a.token,
                                                         name="mine")).folder.folder_id
    calls = [
        lambda: b.download(fid),
        lambda: b.ls(folder),
        lambda: c.files.StatEntry(pb.StatEntryRequest(session_token=b.token, entry_id=fid)),
        lambda: c.files.DeleteFile(pb.DeleteFileRequest(session_token=b.token, file_id=fid)),
        lambda: c.files.DeleteFile(pb.DeleteFileRequest(session_token=b.token, file_id=fid,
                                                        permanent=True)),
        lambda: c.files.ShareFile(pb.ShareFileRequest(session_token=b.token, file_id=fid,
                                                      share_with_email=b.email,
                                                      permission="write")),
        lambda: c.files.MoveEntry(pb.MoveEntryRequest(session_token=b.token, entry_id=fid,
                                                      new_name="stolen")),
        lambda: c.files.GetFileChunks(pb.GetFileChunksRequest(session_token=b.token,
                                                              file_id=fid)),
        lambda: c.files.GetFileChunks(pb.GetFileChunksRequest(session_token=b.token,
                                                              file_id=fid, with_sources=True)),
        lambda: b.upload(b"overwrite", "x", overwrite_file_id=fid),
        lambda: b.upload(b"into", "x.txt", folder_id=folder),
        lambda: c.files.CreateFolder(pb.CreateFolderRequest(
            session_token=b.token, name="x", parent_folder_id=folder)),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert _code(err) == grpc.StatusCode.NOT_FOUND
    assert a.download(fid) == b"private"
    assert [f.filename for f in a.ls().files] == ["private.txt"]


def test_quota_is_checked_before_any_byte_is_stored(shared_cluster: Cluster) -> None:
    c = shared_cluster
    acct: Account = c.sign_up()
    before = c.status().node_used_bytes

    def announced(size: int):
        yield pb.UploadFileRequest(metadata=pb.FileMetadata(
            session_token=acct.token, filename="huge.bin", file_size=size))
        for _ in range(64):  # would be 64 MiB if the gateway kept reading
            yield pb.UploadFileRequest(chunk_data=b"\0" * MiB)

    with pytest.raises(grpc.RpcError) as err:
        c.files.UploadFile(announced(2 * 1024**3), timeout=30)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "not enough space" in err.value.details()
    assert acct.ls().files == []
    assert acct.storage().used_bytes == 0
    # Lying about the size does not help: the real bytes are counted too.
    admin_key = "test-admin-key"
    c.admin.SetUserQuota(pb.SetUserQuotaRequest(admin_key=admin_key, email=acct.email,
                                                storage_bytes=3 * MiB))
    with pytest.raises(grpc.RpcError) as err:
        c.files.UploadFile(announced(0), timeout=30)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert acct.ls().files == []
    assert c.status().node_used_bytes - before < 8 * MiB


def test_announced_size_must_match(shared_cluster: Cluster) -> None:
    acct = shared_cluster.sign_up()

    def reqs():
        yield pb.UploadFileRequest(metadata=pb.FileMetadata(
            session_token=acct.token, filename="short.bin", file_size=100))
        yield pb.UploadFileRequest(chunk_data=b"x" * 50)

    with pytest.raises(grpc.RpcError) as err:
        shared_cluster.files.UploadFile(reqs(), timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert acct.ls().files == []


def test_symlinks_and_attributes(shared_cluster: Cluster) -> None:
    c = shared_cluster
    acct = c.sign_up()
    t = acct.token
    fid = acct.upload(b"12345", "a.txt", mode=0o600).file_id
    link = c.files.CreateSymlink(pb.CreateSymlinkRequest(session_token=t, name="l",
                                                         target="a.txt")).file
    assert link.symlink_target == "a.txt"
    e = c.files.SetAttributes(pb.SetAttributesRequest(session_token=t, entry_id=fid,
                                                      mode=0o640, mtime_ns=123)).file
    assert e.mode == 0o640 and e.mtime_ns == 123
    e = c.files.SetAttributes(pb.SetAttributesRequest(session_token=t, entry_id=fid,
                                                      size=0)).file
    assert e.file_size == 0 and acct.download(fid) == b""
    assert acct.storage().used_bytes == len("a.txt")  # the link's target counts


def test_system_status_counts(shared_cluster: Cluster) -> None:
    c = shared_cluster
    before = c.status()
    acct = c.sign_up()
    acct.upload(os.urandom(MiB), "one.bin")
    after = c.status()
    assert after.total_users == before.total_users + 1
    assert after.total_files == before.total_files + 1
    assert after.global_used_bytes == before.global_used_bytes + MiB
    assert after.online_nodes == 3 and after.total_nodes == 3
    assert after.global_capacity_bytes == 3 * 2 * 1024**3
    with pytest.raises(grpc.RpcError) as err:
        c.admin.GetSystemStatus(pb.SystemStatusRequest(admin_key="wrong"))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_read_plan_lets_a_reader_fetch_chunks_from_the_nodes(shared_cluster: Cluster) -> None:
    """GetFileChunks(with_sources): each chunk's nodes and a token those nodes accept for
    exactly that chunk; without with_sources, no tokens are handed out."""
    from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
    from cloudgrpc_proto import read_tokens
    from tests.cluster import CLUSTER_SECRET

    c = shared_cluster
    a = c.sign_up()
    data = os.urandom(9 * MiB)
    fid = a.upload(data, "big.bin").file_id
    plain = c.files.GetFileChunks(pb.GetFileChunksRequest(session_token=a.token, file_id=fid))
    assert not plain.sources and not plain.sources_expire_at
    plan = c.files.GetFileChunks(pb.GetFileChunksRequest(session_token=a.token, file_id=fid,
                                                         with_sources=True))
    assert [ch.sha256 for ch in plan.chunks] == [ch.sha256 for ch in plain.chunks]
    assert {s.sha256 for s in plan.sources} == {ch.sha256 for ch in plan.chunks}
    assert len(plan.sources) == 3
    pos = 0
    for ref in plan.chunks:
        source = next(s for s in plan.sources if s.sha256 == ref.sha256)
        assert len(source.addresses) == 2  # replication factor 2
        assert read_tokens.valid(CLUSTER_SECRET, source.read_token, ref.sha256)
        assert not read_tokens.valid(CLUSTER_SECRET, source.read_token, plan.sources[0].sha256
                                     if source is not plan.sources[0]
                                     else plan.sources[1].sha256)
        for address in source.addresses:
            with grpc.insecure_channel(address, options=[
                    ("grpc.max_receive_message_length", 64 * MiB)]) as channel:
                got = pb_grpc.ChunkServiceStub(channel).GetChunk(
                    pb.GetChunkRequest(sha256=ref.sha256, read_token=source.read_token),
                    timeout=10)
            assert got.data == data[pos:pos + ref.size]
        pos += ref.size
    assert pos == len(data)
