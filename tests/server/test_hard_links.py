"""Hard links: several names for one file, on both databases.

A file row is the inode (content, chunks, attributes) and each of its names is a row of the
name table (file_names); LinkFile gives it further names.
These checks are what a user of the names would notice: both names list with one id and
nlink 2, a write through one reads back through the other, removing one name keeps the
other and puts nothing in the trash, the quota counts the bytes once, and a name is unique
in its folder whatever holds it.
"""

from __future__ import annotations

import grpc
import pytest

from cloudgrpc_proto import cloud_storage_pb2 as pb
from tests.cluster import Account, Cluster


def _link(acct: Account, file_id: str, parent: str, name: str) -> pb.EntryResponse:
    return acct.cluster.files.LinkFile(pb.LinkFileRequest(
        session_token=acct.token, file_id=file_id, parent_folder_id=parent, name=name),
        timeout=10)


def _mkdir(acct: Account, name: str, parent: str = "") -> str:
    return acct.cluster.files.CreateFolder(pb.CreateFolderRequest(
        session_token=acct.token, parent_folder_id=parent, name=name), timeout=10
    ).folder.folder_id


def _unlink(acct: Account, file_id: str, parent: str, name: str) -> pb.DeleteFileResponse:
    return acct.cluster.files.DeleteFile(pb.DeleteFileRequest(
        session_token=acct.token, file_id=file_id, parent_folder_id=parent, name=name),
        timeout=10)


def _move(acct: Account, file_id: str, parent: str, name: str, *, old_parent: str = "",
          old_name: str = "") -> pb.EntryResponse:
    return acct.cluster.files.MoveEntry(pb.MoveEntryRequest(
        session_token=acct.token, entry_id=file_id, new_parent_folder_id=parent,
        new_name=name, replace_existing=True, old_parent_folder_id=old_parent,
        old_name=old_name), timeout=10)


def _names(acct: Account, folder: str = "") -> dict[str, pb.FileEntry]:
    return {f.filename: f for f in acct.ls(folder).files}


def _trash(acct: Account) -> list[str]:
    reply = acct.cluster.files.ListTrash(pb.ListTrashRequest(session_token=acct.token),
                                         timeout=10)
    return sorted(f.filename for f in reply.files)


def _code(call) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code()


def test_two_names_share_content_attributes_and_quota(shared_cluster: Cluster) -> None:
    acct = shared_cluster.sign_up()
    sub = _mkdir(acct, "sub")
    a = acct.upload(b"first content", "a.txt").file_id
    used = acct.storage().used_bytes
    before = _names(acct)["a.txt"]
    reply = _link(acct, a, sub, "b.txt")
    assert reply.file.file_id == a and reply.file.filename == "b.txt"
    assert reply.file.nlink == 2 and reply.file.path == "/sub/b.txt"
    b = _names(acct, sub)["b.txt"]
    assert b.file_id == a and b.nlink == 2 and b.parent_folder_id == sub
    assert _names(acct)["a.txt"].nlink == 2
    assert b.ctime_ns > before.ctime_ns  # a link changes the file's ctime
    assert acct.storage().used_bytes == used  # the bytes count once
    assert acct.download(a) == b"first content"

    # Write through b (its name, replace_existing), read through a: one file.
    acct.upload(b"second, longer content", "b.txt", folder_id=sub, replace_existing=True)
    assert acct.download(a) == b"second, longer content"
    assert _names(acct)["a.txt"].file_size == len(b"second, longer content")
    assert acct.storage().used_bytes == used + len(b"second, longer content") - len(
        b"first content")
    acct.cluster.files.SetAttributes(pb.SetAttributesRequest(
        session_token=acct.token, entry_id=a, mode=0o600), timeout=10)
    assert _names(acct, sub)["b.txt"].mode & 0o777 == 0o600
    by_name = acct.cluster.files.StatEntry(pb.StatEntryRequest(
        session_token=acct.token, parent_folder_id=sub, name="b.txt"), timeout=10)
    assert by_name.file.filename == "b.txt" and by_name.file.nlink == 2
    by_path = acct.cluster.files.StatEntry(pb.StatEntryRequest(
        session_token=acct.token, path="/sub/b.txt"), timeout=10)
    assert by_path.file.file_id == a

    # Removing the first name keeps the second, the content and the quota; no trash.
    ctime = _names(acct, sub)["b.txt"].ctime_ns
    assert "other names" in _unlink(acct, a, "", "a.txt").message
    assert "a.txt" not in _names(acct)
    left = _names(acct, sub)["b.txt"]
    assert left.nlink == 1 and left.ctime_ns > ctime
    assert acct.download(a) == b"second, longer content"
    assert _trash(acct) == []
    assert acct.storage().used_bytes == used + 9
    # The last name goes to the trash as any file does.
    _unlink(acct, a, sub, "b.txt")
    assert _trash(acct) == ["b.txt"] and _names(acct, sub) == {}


def test_renames_onto_and_of_links(shared_cluster: Cluster) -> None:
    acct = shared_cluster.sign_up()
    a = acct.upload(b"AAAA", "a").file_id
    x = acct.upload(b"XX", "x").file_id
    _link(acct, a, "", "b")
    _link(acct, a, "", "c")
    used = acct.storage().used_bytes
    # rename(2) onto another name of the same file does nothing
    _move(acct, a, "", "c", old_parent="", old_name="b")
    assert sorted(_names(acct)) == ["a", "b", "c", "x"]
    # rename of a further name moves that name only
    d = _mkdir(acct, "d")
    moved = _move(acct, a, d, "b2", old_parent="", old_name="b")
    assert moved.file.filename == "b2" and moved.file.parent_folder_id == d
    assert sorted(_names(acct)) == ["a", "c", "x"] and list(_names(acct, d)) == ["b2"]
    # rename onto a link: only that name is replaced, the file keeps its others
    _move(acct, x, d, "b2")
    names = _names(acct)
    assert sorted(names) == ["a", "c"] and names["a"].nlink == 2
    assert _names(acct, d)["b2"].file_id == x
    assert acct.download(a) == b"AAAA" and acct.download(x) == b"XX"
    assert acct.storage().used_bytes == used
    assert _trash(acct) == []


def test_names_are_unique_and_links_stay_in_one_account(shared_cluster: Cluster) -> None:
    acct = shared_cluster.sign_up()
    other = shared_cluster.sign_up()
    a = acct.upload(b"a", "a").file_id
    acct.upload(b"f", "f")
    folder = _mkdir(acct, "folder")
    _link(acct, a, "", "l")
    for name in ("a", "f", "folder", "l"):
        assert _code(lambda n=name: _link(acct, a, "", n)) == grpc.StatusCode.ALREADY_EXISTS
    assert _code(lambda: _mkdir(acct, "l")) == grpc.StatusCode.ALREADY_EXISTS
    assert _code(lambda: acct.upload(b"new", "l")) == grpc.StatusCode.ALREADY_EXISTS
    assert _code(lambda: acct.cluster.files.CreateSymlink(pb.CreateSymlinkRequest(
        session_token=acct.token, name="l", target="a"), timeout=10)
    ) == grpc.StatusCode.ALREADY_EXISTS
    assert _code(lambda: _link(acct, folder, "", "dirlink")) == grpc.StatusCode.PERMISSION_DENIED
    assert _code(lambda: _link(acct, a, "", "x" * 256)) == grpc.StatusCode.INVALID_ARGUMENT
    # another account's file: not theirs to see, or (shared) not theirs to link
    assert _code(lambda: _link(other, a, "", "mine")) == grpc.StatusCode.NOT_FOUND
    acct.cluster.files.ShareFile(pb.ShareFileRequest(
        session_token=acct.token, file_id=a, share_with_email=other.email,
        permission="write"), timeout=10)
    assert _code(lambda: _link(other, a, "", "mine")) == grpc.StatusCode.PERMISSION_DENIED
    theirs = _mkdir(other, "theirs")
    assert _code(lambda: _link(acct, a, theirs, "mine")) == grpc.StatusCode.NOT_FOUND
    assert _names(other, theirs) == {} and sorted(_names(acct)) == ["a", "f", "l"]
    shared = acct.cluster.files.ListSharedWithMe(pb.ListSharedWithMeRequest(
        session_token=other.token), timeout=10)
    assert [f.file_id for f in shared.files] == [a]  # shared once, however many names


def test_whole_file_deletes_and_folder_purges(shared_cluster: Cluster) -> None:
    acct = shared_cluster.sign_up()
    a = acct.upload(b"content", "a").file_id
    _link(acct, a, "", "b")
    # DeleteFile by id alone: the file goes to the trash with every name, once
    acct.cluster.files.DeleteFile(pb.DeleteFileRequest(session_token=acct.token, file_id=a),
                                  timeout=10)
    assert _names(acct) == {} and _trash(acct) == ["a"]
    restored = acct.cluster.files.RestoreFile(pb.RestoreFileRequest(
        session_token=acct.token, file_id=a), timeout=10)
    assert restored.file.nlink == 1 and list(_names(acct)) == ["a"]

    # A folder purged for good: its names go, a file named outside it stays.
    inside = _mkdir(acct, "inside")
    kept = acct.upload(b"kept bytes", "kept", folder_id=inside).file_id
    _link(acct, kept, "", "kept-outside")
    _link(acct, a, inside, "a-inside")
    used = acct.storage().used_bytes
    acct.cluster.files.DeleteFolder(pb.DeleteFolderRequest(
        session_token=acct.token, folder_id=inside, recursive=True, permanent=True), timeout=10)
    names = _names(acct)
    assert sorted(names) == ["a", "kept-outside"]
    assert names["a"].nlink == 1 and names["kept-outside"].nlink == 1
    assert names["kept-outside"].file_id == kept
    assert acct.download(kept) == b"kept bytes"
    assert acct.storage().used_bytes == used
    # A folder holding only a further name is not empty.
    only_link = _mkdir(acct, "only-link")
    _link(acct, a, only_link, "a-again")
    assert _code(lambda: acct.cluster.files.DeleteFolder(pb.DeleteFolderRequest(
        session_token=acct.token, folder_id=only_link), timeout=10)
    ) == grpc.StatusCode.FAILED_PRECONDITION
    spare = _mkdir(acct, "spare")
    assert _code(lambda: _move(acct, spare, "", "only-link")
                 ) == grpc.StatusCode.FAILED_PRECONDITION
    assert list(_names(acct, only_link)) == ["a-again"]
    _unlink(acct, a, only_link, "a-again")
    # Batch deletes take every name too.
    _link(acct, kept, "", "again")
    result = acct.cluster.files.DeleteFiles(pb.DeleteFilesRequest(
        session_token=acct.token, file_ids=[kept]), timeout=10)
    assert result.deleted == 1 and sorted(_names(acct)) == ["a"]


def test_migration_keeps_every_file_with_one_name(database_url: str) -> None:
    """A database at 0008 (files in folders, one in the trash, chunks, a share) upgrades
    to 0009: every file keeps its id, place, content list and share, with nlink 1."""
    import datetime as dt

    from sqlalchemy import text

    from cloudgrpc_server.accounts import Caller
    from cloudgrpc_server.change_feed import ChangeFeed
    from cloudgrpc_server.db import Database
    from cloudgrpc_server.events import EventBus
    from cloudgrpc_server.namespace import Namespace

    db = Database(database_url)
    try:
        db.migrate("0008_special_files")
        now = dt.datetime(2026, 12, 1)
        with db.engine.begin() as conn:
            for uid, email in (("u1", "a@example.com"), ("u2", "b@example.com")):
                conn.execute(text(
                    "INSERT INTO users (id, email, full_name, storage_allocated, storage_used,"
                    " root_folder_id, is_active, created_at) VALUES (:id, :email, 'A', 100,"
                    " 10, :root, true, :now)"), {"id": uid, "email": email,
                                                 "root": f"root-{uid}", "now": now})
            folder_sql = ("INSERT INTO folders (id, owner_id, parent_id, name, mode, uid, gid,"
                          " atime_ns, mtime_ns, ctime_ns, created_at) VALUES (:id, 'u1',"
                          " :parent, :name, 493, 0, 0, 0, 0, 0, :now)")
            conn.execute(text(folder_sql), {"id": "root-u1", "parent": None, "name": "",
                                            "now": now})
            conn.execute(text(folder_sql), {"id": "docs", "parent": "root-u1", "name": "docs",
                                            "now": now})
            conn.execute(text("INSERT INTO chunks (sha256, size, created_at, last_used_at)"
                              " VALUES (:sha, 5, :now, :now)"), {"sha": "ab" * 32, "now": now})
            file_sql = ("INSERT INTO files (id, owner_id, folder_id, name, size, mime_type,"
                        " mode, rdev, version, uid, gid, atime_ns, mtime_ns, ctime_ns,"
                        " created_at, modified_at, deleted_at) VALUES (:id, 'u1', :folder,"
                        " :name, 5, 'text/plain', 420, 0, 1, 0, 0, 0, 0, 0, :now, :now, :gone)")
            for fid, folder, name, gone in (("f1", "root-u1", "top.txt", None),
                                            ("f2", "docs", "deep.txt", None),
                                            ("f3", "docs", "old.txt", now)):
                conn.execute(text(file_sql), {"id": fid, "folder": folder, "name": name,
                                              "now": now, "gone": gone})
                conn.execute(text("INSERT INTO file_chunks (file_id, seq, chunk_sha256,"
                                  " \"offset\", size) VALUES (:f, 0, :sha, 0, 5)"),
                             {"f": fid, "sha": "ab" * 32})
            conn.execute(text("INSERT INTO shares (id, file_id, owner_id, shared_with_id,"
                              " permission, share_token, created_at) VALUES ('s1', 'f2', 'u1',"
                              " 'u2', 'read', 'tok', :now)"), {"now": now})
        db.migrate()
        ns = Namespace(db, EventBus(db), ChangeFeed())
        caller = Caller("u1", "a@example.com", "A", "root-u1", now)
        top = ns.list_folder(caller)
        docs = ns.list_folder(caller, "docs")
        assert [(f.id, f.name, f.nlink) for f in top.files] == [("f1", "top.txt", 1)]
        assert [(f.id, f.name, f.nlink) for f in docs.files] == [("f2", "deep.txt", 1)]
        for fid in ("f1", "f2"):
            access, spans = ns.readable_file(caller, fid)
            assert access.file.nlink == 1 and [(c.sha256, c.size) for c in spans] == [
                ("ab" * 32, 5)]
        assert [f.id for f in ns.list_trash(caller)[1]] == ["f3"]
        reader = Caller("u2", "b@example.com", "B", "root-u2", now)
        assert [f.id for f, _, _ in ns.shared_with_me(reader)] == ["f2"]
        # and the new name works on the migrated file
        linked, path = ns.link_file(caller, "f1", "docs", "again.txt")
        assert linked.nlink == 2 and path == "/docs/again.txt"
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM files")).scalar() == 3
    finally:
        db.dispose()


def test_both_names_removed_at_once(shared_cluster: Cluster) -> None:
    """Two clients each remove one of a file's two names at the same moment: both succeed,
    no name is left, and the file is in the trash once (the second removal finds the first
    one's result: the last name)."""
    from concurrent.futures import ThreadPoolExecutor

    acct = shared_cluster.sign_up()
    ids = []
    for i in range(4):
        fid = acct.upload(b"x" * (i + 1), f"a{i}").file_id
        _link(acct, fid, "", f"b{i}")
        ids.append(fid)
    with ThreadPoolExecutor(8) as pool:
        calls = [pool.submit(_unlink, acct, fid, "", f"{side}{i}")
                 for i, fid in enumerate(ids) for side in "ab"]
        for call in calls:
            assert call.result().success
    assert _names(acct) == {}
    trashed = acct.cluster.files.ListTrash(pb.ListTrashRequest(session_token=acct.token),
                                           timeout=10).files
    assert sorted(f.file_id for f in trashed) == sorted(ids)


def test_a_link_made_while_the_file_goes_to_the_trash_goes_with_it(shared_cluster: Cluster
                                                                  ) -> None:
    """LinkFile racing DeleteFiles: the link is refused (the file is in the trash) or made
    and then taken with the file; either way no name is left naming a trashed file."""
    from concurrent.futures import ThreadPoolExecutor

    acct = shared_cluster.sign_up()
    ids = [acct.upload(b"r", f"r{i}").file_id for i in range(4)]

    def link(i: int) -> None:
        try:
            _link(acct, ids[i], "", f"l{i}")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.NOT_FOUND

    with ThreadPoolExecutor(8) as pool:
        calls = [pool.submit(link, i) for i in range(4)]
        calls += [pool.submit(lambda i=i: acct.cluster.files.DeleteFiles(pb.DeleteFilesRequest(
            session_token=acct.token, file_ids=[ids[i]]), timeout=10)) for i in range(4)]
        for call in calls:
            call.result()
    assert _names(acct) == {}
    for i in range(4):
        _mkdir(acct, f"l{i}")  # the name is free


def test_a_name_in_a_trashed_folder_still_counts(shared_cluster: Cluster) -> None:
    acct = shared_cluster.sign_up()
    a = acct.upload(b"kept in the folder", "a").file_id
    d = _mkdir(acct, "d")
    _link(acct, a, d, "b")
    acct.cluster.files.DeleteFolder(pb.DeleteFolderRequest(
        session_token=acct.token, folder_id=d, recursive=True), timeout=10)
    assert _names(acct)["a"].nlink == 2
    assert "other names" in _unlink(acct, a, "", "a").message
    assert _names(acct) == {}
    reply = acct.cluster.files.ListTrash(pb.ListTrashRequest(session_token=acct.token),
                                         timeout=10)
    assert [x.name for x in reply.folders] == ["d"] and list(reply.files) == []
    acct.cluster.files.RestoreFile(pb.RestoreFileRequest(session_token=acct.token, file_id=d),
                                   timeout=10)
    b = _names(acct, d)["b"]
    assert b.file_id == a and b.nlink == 1 and acct.download(a) == b"kept in the folder"


def test_a_shared_file_stays_shared_while_one_of_its_names_is_live(shared_cluster: Cluster
                                                                   ) -> None:
    """A recipient keeps a shared file while any of its names is outside the trash; once
    every name is in a trashed folder, the file is the owner's thrown-away file."""
    owner, friend = shared_cluster.sign_up(), shared_cluster.sign_up()
    f = owner.upload(b"shared through two names", "top").file_id
    d = _mkdir(owner, "d")
    _link(owner, f, d, "inside")
    shared_cluster.files.ShareFile(pb.ShareFileRequest(
        session_token=owner.token, file_id=f, share_with_email=friend.email,
        permission="read"), timeout=10)
    shared_cluster.files.DeleteFolder(pb.DeleteFolderRequest(
        session_token=owner.token, folder_id=d, recursive=True), timeout=10)
    assert friend.download(f) == b"shared through two names"  # "top" is still live
    assert "other names" in _unlink(owner, f, "", "top").message  # "inside" remains (trashed)
    assert _code(lambda: friend.download(f)) == grpc.StatusCode.NOT_FOUND
    owner.cluster.files.RestoreFile(pb.RestoreFileRequest(session_token=owner.token,
                                                          file_id=d), timeout=10)
    assert friend.download(f) == b"shared through two names"


def test_a_file_takes_at_most_65000_names(shared_cluster: Cluster) -> None:
    """ext4's limit: one more link is refused (the mount answers EMLINK) and changes
    nothing. (The count is set in the database: making 65,000 names would take minutes.)"""
    import sqlalchemy as sa

    acct = shared_cluster.sign_up()
    f = acct.upload(b"many names", "f").file_id
    engine = sa.create_engine(shared_cluster.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE files SET nlink = 65000 WHERE id = :id"), {"id": f})
        assert _code(lambda: _link(acct, f, "", "one-more")) == \
            grpc.StatusCode.FAILED_PRECONDITION
        assert sorted(_names(acct)) == ["f"]
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE files SET nlink = 64999 WHERE id = :id"), {"id": f})
        _link(acct, f, "", "the-last")
        assert _names(acct)["the-last"].nlink == 65000
    finally:
        engine.dispose()


def test_name_table_migration_keeps_every_file_and_name(database_url: str) -> None:
    """A database at 0009 (files in folders, hard links, the trash, a trashed folder,
    chunks, a share) upgrades to 0010 with every file and every name kept, downgrades to
    0009's shape (first name in the file row, the others in file_links) and upgrades again
    to the same state; the migrated names then work as names."""
    import datetime as dt

    from alembic import command
    from sqlalchemy import text

    from cloudgrpc_server.accounts import Caller
    from cloudgrpc_server.change_feed import ChangeFeed
    from cloudgrpc_server.db import Database
    from cloudgrpc_server.events import EventBus
    from cloudgrpc_server.namespace import Namespace

    db = Database(database_url)
    try:
        db.migrate("0009_hard_links")
        now = dt.datetime(2026, 12, 1)
        later = dt.datetime(2026, 12, 2)
        with db.engine.begin() as conn:
            for uid, email in (("u1", "a@example.com"), ("u2", "b@example.com")):
                conn.execute(text(
                    "INSERT INTO users (id, email, full_name, storage_allocated, storage_used,"
                    " root_folder_id, is_active, created_at) VALUES (:id, :email, 'A', 100,"
                    " 20, :root, true, :now)"), {"id": uid, "email": email,
                                                 "root": f"root-{uid}", "now": now})
            folder_sql = ("INSERT INTO folders (id, owner_id, parent_id, name, mode, uid, gid,"
                          " atime_ns, mtime_ns, ctime_ns, created_at, deleted_at) VALUES (:id,"
                          " 'u1', :parent, :name, 493, 0, 0, 0, 0, 0, :now, :gone)")
            for fid, parent, name, gone in (("root-u1", None, "", None),
                                            ("docs", "root-u1", "docs", None),
                                            ("bin", "root-u1", "bin", later)):
                conn.execute(text(folder_sql), {"id": fid, "parent": parent, "name": name,
                                                "now": now, "gone": gone})
            conn.execute(text("INSERT INTO chunks (sha256, size, created_at, last_used_at)"
                              " VALUES (:sha, 5, :now, :now)"), {"sha": "ab" * 32, "now": now})
            file_sql = ("INSERT INTO files (id, owner_id, folder_id, name, size, mime_type,"
                        " mode, rdev, version, uid, gid, atime_ns, mtime_ns, ctime_ns,"
                        " created_at, modified_at, deleted_at, original_folder_id, nlink)"
                        " VALUES (:id, 'u1', :folder, :name, 5, 'text/plain', 420, 0, 1, 0, 0,"
                        " 0, 0, 0, :now, :now, :gone, :origin, :nlink)")
            for fid, folder, name, gone, nlink in (("f1", "root-u1", "top.txt", None, 3),
                                                   ("f2", "docs", "deep.txt", None, 1),
                                                   ("f3", "docs", "old.txt", later, 1),
                                                   ("f4", "bin", "inside.txt", None, 2)):
                conn.execute(text(file_sql), {"id": fid, "folder": folder, "name": name,
                                              "now": now, "gone": gone, "nlink": nlink,
                                              "origin": folder if gone else None})
                conn.execute(text("INSERT INTO file_chunks (file_id, seq, chunk_sha256,"
                                  " \"offset\", size) VALUES (:f, 0, :sha, 0, 5)"),
                             {"f": fid, "sha": "ab" * 32})
            for lid, fid, folder, name in (("l1", "f1", "docs", "top-link.txt"),
                                           ("l2", "f1", "root-u1", "alias.txt"),
                                           ("l3", "f4", "root-u1", "outside.txt")):
                conn.execute(text("INSERT INTO file_links (id, file_id, owner_id, folder_id,"
                                  " name, created_at) VALUES (:id, :f, 'u1', :folder, :name,"
                                  " :at)"), {"id": lid, "f": fid, "folder": folder,
                                             "name": name, "at": later})
            conn.execute(text("INSERT INTO shares (id, file_id, owner_id, shared_with_id,"
                              " permission, share_token, created_at) VALUES ('s1', 'f2', 'u1',"
                              " 'u2', 'read', 'tok', :now)"), {"now": now})

        ns = Namespace(db, EventBus(db), ChangeFeed())
        caller = Caller("u1", "a@example.com", "A", "root-u1", now)
        reader = Caller("u2", "b@example.com", "B", "root-u2", now)

        def names(folder: str = "", trash: bool = False) -> list[tuple[str, str, int]]:
            listing = ns.list_folder(caller, folder, include_deleted=trash)
            return [(f.name, f.id, f.nlink) for f in listing.files]

        def check_upgraded() -> None:
            assert names() == [("alias.txt", "f1", 3), ("outside.txt", "f4", 2),
                               ("top.txt", "f1", 3)]
            assert names("docs") == [("deep.txt", "f2", 1), ("top-link.txt", "f1", 3)]
            assert names("docs", trash=True) == [("deep.txt", "f2", 1), ("old.txt", "f3", 1),
                                                 ("top-link.txt", "f1", 3)]
            folders, files, paths = ns.list_trash(caller)
            assert [d.id for d in folders] == ["bin"]
            assert [(f.id, paths[f.id]) for f in files] == [("f3", "/docs/old.txt")]
            for fid in ("f1", "f2", "f3", "f4"):
                _, spans = ns.readable_file(caller, fid)
                assert [(c.sha256, c.size) for c in spans] == [("ab" * 32, 5)]
            assert [f.id for f, _, _ in ns.shared_with_me(reader)] == ["f2"]
            with db.engine.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM files")).scalar() == 4
                assert conn.execute(text("SELECT count(*) FROM file_names")).scalar() == 7

        db.migrate()
        check_upgraded()
        with db.engine.begin() as conn:
            cfg = db.alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0009_hard_links")
        with db.engine.connect() as conn:
            rows = conn.execute(text("SELECT id, folder_id, name, nlink, original_folder_id"
                                     " FROM files ORDER BY id")).all()
            assert [tuple(r) for r in rows] == [
                ("f1", "root-u1", "top.txt", 3, None), ("f2", "docs", "deep.txt", 1, None),
                ("f3", "docs", "old.txt", 1, "docs"), ("f4", "bin", "inside.txt", 2, None)]
            links = conn.execute(text("SELECT id, file_id, folder_id, name FROM file_links"
                                      " ORDER BY id")).all()
            assert [tuple(r) for r in links] == [
                ("l1", "f1", "docs", "top-link.txt"), ("l2", "f1", "root-u1", "alias.txt"),
                ("l3", "f4", "root-u1", "outside.txt")]
            assert conn.execute(text("SELECT count(*) FROM file_chunks")).scalar() == 4
            assert conn.execute(text("SELECT count(*) FROM shares")).scalar() == 1
        db.migrate()
        check_upgraded()

        # the names work as names: one removed, the trashed file restored where it was
        assert ns.delete_file(caller, "f1", False, "", "top.txt").name_only
        assert names() == [("alias.txt", "f1", 2), ("outside.txt", "f4", 2)]
        restored, path = ns.restore(caller, "f3")
        assert path == "/docs/old.txt" and restored.nlink == 1
        assert ("old.txt", "f3", 1) in names("docs")
    finally:
        db.dispose()
