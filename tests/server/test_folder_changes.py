"""ApplyFolderChanges: a mount's queued mkdirs and folder moves in one call, in order."""

from __future__ import annotations

import uuid

import grpc
import pytest

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import errors
from cloudgrpc_proto.client import CloudClient
from tests.cluster import Cluster


def _create(name: str, parent: str = "", folder_id: str = "") -> pb.FolderChange:
    return pb.FolderChange(create=pb.CreateFolderRequest(
        name=name, parent_folder_id=parent, mode=0o750, folder_id=folder_id))


def _move(entry_id: str, parent: str, name: str) -> pb.FolderChange:
    return pb.FolderChange(move=pb.MoveEntryRequest(entry_id=entry_id,
                                                    new_parent_folder_id=parent,
                                                    new_name=name))


def test_changes_apply_in_order_each_on_its_own(cluster: Cluster) -> None:
    c = cluster
    me, other = c.sign_up(), c.sign_up()
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    theirs = c.files.CreateFolder(pb.CreateFolderRequest(
        session_token=other.token, name="private")).folder.folder_id
    client = CloudClient(c.address, session_token=me.token)
    try:
        results = client.apply_folder_changes([
            _create("a", folder_id=a),
            _create("b", parent=a, folder_id=b),  # inside the one just made
            _create("a"),                          # taken: fails alone
            _move(b, "root", "b-moved"),           # out of a, renamed
            _move(theirs, "root", "stolen"),       # another account's: as if absent
            _create("inside-theirs", parent=theirs),
            _create("a", folder_id=a),             # a replay: the folder made above
        ])
        again = client.apply_folder_changes([_create("a", folder_id=a)])
    finally:
        client.close()
    assert len(results) == 7
    assert isinstance(results[2], errors.AlreadyExists)
    assert isinstance(results[4], errors.NotFound), results[4]
    assert isinstance(results[5], errors.NotFound), results[5]
    ok = [r for i, r in enumerate(results) if i not in (2, 4, 5)]
    assert all(isinstance(r, pb.EntryResponse) for r in ok)
    assert results[0].folder.folder_id == a and results[0].folder.mode & 0o777 == 0o750
    assert results[3].folder.name == "b-moved"
    assert results[6].folder.folder_id == a and again[0].folder.folder_id == a
    root = me.ls()
    assert sorted(f.name for f in root.folders) == ["a", "b-moved"]
    assert me.ls(a).folders == []
    # the other account saw nothing happen to its folder
    assert [f.name for f in other.ls().folders] == ["private"] and other.ls(theirs).folders == []


def test_a_batch_is_bounded_and_authenticated(cluster: Cluster) -> None:
    c = cluster
    me = c.sign_up()
    too_many = [_create(f"d{i}") for i in range(257)]
    with pytest.raises(grpc.RpcError) as err:
        c.files.ApplyFolderChanges(pb.ApplyFolderChangesRequest(session_token=me.token,
                                                                changes=too_many))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert me.ls().folders == []  # refused whole: nothing applied
    with pytest.raises(grpc.RpcError) as err:
        c.files.ApplyFolderChanges(pb.ApplyFolderChangesRequest(
            session_token="bogus", changes=[_create("x")]))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # an empty change, and a name no folder may have, fail alone
    reply = c.files.ApplyFolderChanges(pb.ApplyFolderChangesRequest(
        session_token=me.token, changes=[pb.FolderChange(), _create("a/b"), _create("ok")]))
    codes = [r.error_code for r in reply.results]
    assert codes == ["INVALID_ARGUMENT", "INVALID_ARGUMENT", ""]
    assert [f.name for f in me.ls().folders] == ["ok"]
