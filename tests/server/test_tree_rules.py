"""Tree rules deep below the root: trash reaches descendants, no cycles, one name per folder.

The gateway answers "is this folder live, what is its path, is it above that one" with one
query over the ancestors; these checks make sure a folder several levels under a trashed
one is refused like the trashed one, that a folder cannot go below its own grandchild, that
a name is taken whether a folder or a file holds it, and that replies carry the right paths
and parent times.
"""

from __future__ import annotations

import uuid

import grpc
import pytest

from cloudgrpc_proto import cloud_storage_pb2 as pb
from tests.cluster import Account, Cluster


def _code(err: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    return err.value.code()


def _mkdir(acct: Account, parent: str, name: str) -> pb.FolderEntry:
    return acct.cluster.files.CreateFolder(pb.CreateFolderRequest(
        session_token=acct.token, parent_folder_id=parent, name=name), timeout=10).folder


def _stat(acct: Account, entry_id: str) -> pb.EntryResponse:
    return acct.cluster.files.StatEntry(pb.StatEntryRequest(
        session_token=acct.token, entry_id=entry_id), timeout=10)


def _move(acct: Account, entry_id: str, parent: str = "", name: str = "",
          replace: bool = False) -> pb.EntryResponse:
    return acct.cluster.files.MoveEntry(pb.MoveEntryRequest(
        session_token=acct.token, entry_id=entry_id, new_parent_folder_id=parent,
        new_name=name, replace_existing=replace), timeout=10)


def test_deep_tree_paths_cycles_names_and_trash(shared_cluster: Cluster) -> None:
    c = shared_cluster
    acct = c.sign_up()
    t = acct.token
    a = _mkdir(acct, "", "a")
    b = _mkdir(acct, a.folder_id, "b")
    cc = _mkdir(acct, b.folder_id, "c")
    d = _mkdir(acct, cc.folder_id, "d")
    other = _mkdir(acct, "", "other")
    assert _stat(acct, d.folder_id).folder.path == "/a/b/c/d"
    # The parent's times move with a mkdir, a rename and a delete in it.
    before = _stat(acct, cc.folder_id).folder.mtime_ns
    x = _mkdir(acct, cc.folder_id, "x")
    after_mkdir = _stat(acct, cc.folder_id).folder.mtime_ns
    assert after_mkdir > before
    moved = _move(acct, x.folder_id, other.folder_id, "y")
    assert moved.folder.path == "/other/y" and moved.folder.parent_folder_id == other.folder_id
    assert _stat(acct, cc.folder_id).folder.mtime_ns > after_mkdir
    assert _stat(acct, other.folder_id).folder.mtime_ns >= _stat(acct, cc.folder_id).folder.mtime_ns
    # Replies and lookups carry paths computed at depth.
    f = acct.upload(b"hi", "f.txt", folder_id=d.folder_id)
    assert _stat(acct, f.file_id).file.path == "/a/b/c/d/f.txt"
    by_name = c.files.StatEntry(pb.StatEntryRequest(session_token=t, parent_folder_id=d.folder_id,
                                                    name="f.txt"), timeout=10)
    assert by_name.file.file_id == f.file_id and by_name.file.path == "/a/b/c/d/f.txt"
    listing = acct.ls(d.folder_id)
    assert listing.folder.path == "/a/b/c/d" and listing.files[0].path == "/a/b/c/d/f.txt"
    renamed = _move(acct, f.file_id, name="g.txt")
    assert renamed.file.path == "/a/b/c/d/g.txt" and renamed.file.filename == "g.txt"

    # A folder cannot go into itself or anywhere below it.
    for target in (a, b, d):
        with pytest.raises(grpc.RpcError) as err:
            _move(acct, a.folder_id, target.folder_id)
        assert _code(err) == grpc.StatusCode.INVALID_ARGUMENT
    # But a folder may go up, and to its own parent under a new name.
    assert _move(acct, d.folder_id, a.folder_id).folder.path == "/a/d"
    assert _move(acct, d.folder_id, cc.folder_id, "d").folder.path == "/a/b/c/d"

    # One name per folder, whether a folder or a file holds it.
    with pytest.raises(grpc.RpcError) as err:
        _mkdir(acct, d.folder_id, "g.txt")
    assert _code(err) == grpc.StatusCode.ALREADY_EXISTS
    e = _mkdir(acct, d.folder_id, "e")
    with pytest.raises(grpc.RpcError) as err:
        _move(acct, e.folder_id, name="g.txt")
    assert _code(err) == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as err:
        _move(acct, f.file_id, name="e", replace=True)
    assert _code(err) == grpc.StatusCode.ALREADY_EXISTS
    same = c.files.CreateFolder(pb.CreateFolderRequest(
        session_token=t, parent_folder_id=d.folder_id, name="e", exist_ok=True), timeout=10)
    assert same.folder.folder_id == e.folder_id

    # Another account's folder is not there for this one.
    stranger = c.sign_up()
    with pytest.raises(grpc.RpcError) as err:
        _mkdir(stranger, d.folder_id, "intruder")
    assert _code(err) == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        _stat(stranger, d.folder_id)
    assert _code(err) == grpc.StatusCode.NOT_FOUND

    # Trash /a/b: everything below it is gone for creates, moves into it and listings,
    # though only b itself carries the trash mark.
    c.files.DeleteFolder(pb.DeleteFolderRequest(session_token=t, folder_id=b.folder_id,
                                                recursive=True), timeout=10)
    for folder in (b, cc, d):
        with pytest.raises(grpc.RpcError) as err:
            _mkdir(acct, folder.folder_id, "new")
        assert _code(err) == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as err:
            _move(acct, other.folder_id, folder.folder_id)
        assert _code(err) == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as err:
            acct.ls(folder.folder_id)
        assert _code(err) == grpc.StatusCode.NOT_FOUND
    assert [x.name for x in acct.ls(a.folder_id).folders] == []
    # Restored, the subtree is live again with its paths.
    c.files.RestoreFile(pb.RestoreFileRequest(session_token=t, file_id=b.folder_id), timeout=10)
    assert _mkdir(acct, d.folder_id, "new").name == "new"
    assert _stat(acct, d.folder_id).folder.path == "/a/b/c/d"

    # Files to the trash and for good: gone from the listing, the folder's time moves.
    g_before = _stat(acct, d.folder_id).folder.mtime_ns
    c.files.DeleteFile(pb.DeleteFileRequest(session_token=t, file_id=f.file_id), timeout=10)
    assert "g.txt" not in [x.filename for x in acct.ls(d.folder_id).files]
    assert _stat(acct, d.folder_id).folder.mtime_ns > g_before
    trash = c.files.ListTrash(pb.ListTrashRequest(session_token=t), timeout=10)
    assert [x.original_path for x in trash.files] == ["/a/b/c/d/g.txt"]
    with pytest.raises(grpc.RpcError) as err:
        c.files.DeleteFile(pb.DeleteFileRequest(session_token=t, file_id=f.file_id), timeout=10)
    assert _code(err) == grpc.StatusCode.NOT_FOUND
    c.files.DeleteFile(pb.DeleteFileRequest(session_token=t, file_id=f.file_id, permanent=True),
                       timeout=10)
    assert acct.storage().used_bytes == 0
    assert c.files.ListTrash(pb.ListTrashRequest(session_token=t), timeout=10).files == []


def test_folder_ids_chosen_by_the_client(shared_cluster: Cluster) -> None:
    """A mount names a folder before the gateway has it: CreateFolder takes the client's
    UUID, a replay of the same call returns that folder (even after it moved), and another
    account cannot claim an id that is taken, nor can anyone send a malformed one."""
    c = shared_cluster
    acct = c.sign_up()
    chosen = str(uuid.uuid4())

    def create(account: Account, name: str, folder_id: str, parent: str = ""
               ) -> pb.FolderEntry:
        return c.files.CreateFolder(pb.CreateFolderRequest(
            session_token=account.token, parent_folder_id=parent, name=name,
            folder_id=folder_id), timeout=10).folder

    made = create(acct, "mine", chosen)
    assert made.folder_id == chosen
    child = _mkdir(acct, chosen, "child")  # usable as a parent at once
    assert _stat(acct, child.folder_id).folder.path == "/mine/child"
    _move(acct, chosen, "", "renamed")
    again = create(acct, "mine", chosen)  # the replay after a lost reply or a crash
    assert again.folder_id == chosen and again.name == "renamed"
    names = [f.name for f in c.files.ListFiles(pb.ListFilesRequest(
        session_token=acct.token), timeout=10).folders]
    assert names.count("renamed") == 1 and "mine" not in names
    with pytest.raises(grpc.RpcError) as err:
        create(acct, "renamed", str(uuid.uuid4()))  # the name is still one per folder
    assert _code(err) == grpc.StatusCode.ALREADY_EXISTS
    other = c.sign_up()
    with pytest.raises(grpc.RpcError) as err:
        create(other, "theirs", chosen)
    assert _code(err) == grpc.StatusCode.ALREADY_EXISTS
    for bad in ("not-a-uuid", chosen.upper(), "../x"):
        with pytest.raises(grpc.RpcError) as err:
            create(acct, "bad", bad)
        assert _code(err) == grpc.StatusCode.INVALID_ARGUMENT
