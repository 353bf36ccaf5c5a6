"""Issue 13, "Quota is real" and "No leaks between users", attacked from independent clients.

- Parallel uploads of one user (streams and a small-files batch) totalling far more than
  the quota: the nodes never hold more than the quota of that user's bytes (times the
  replication factor: every chunk is reserved before it is stored, so the bound is exact,
  no slack), and the files that committed fit the quota and download intact.
- A cancelled upload ends its reservation; the chunks it stored stay counted (parked) until
  the same upload resumes with them or garbage collection takes them; then the whole quota
  is there again.
- A refused chunk reference changes nothing: the other user's deleted chunk keeps its
  collection time and leaves the nodes on schedule.
- Upload and FindChunks replies are the same whether or not another user stores the bytes.
- A file under a folder its owner trashed is neither readable nor writable by those it was
  shared with (until the owner restores the folder); a recipient removes a share from their
  own view.
- Names holding control characters (C0, DEL, C1) are refused in every call that names.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from cloudgrpc_proto import cloud_storage_pb2 as pb
from tests.cluster import ADMIN_KEY, Account, Cluster, MiB, running_cluster

CHUNK = 4 * MiB
REPLICAS = 2  # three nodes, replication factor 2

# Short collection times, so "collected on schedule" is seconds: grace 5 s, a run every
# second, nodes keep freshly written files NODE_CALL_TIMEOUT_S + 5 = 7 s.
GC_ENV = {"GC_GRACE_S": "5", "GC_INTERVAL_S": "1", "GC_IDLE_S": "1",
          "NODE_CALL_TIMEOUT_S": "2", "REPAIR_INTERVAL_S": "1"}


@pytest.fixture
def gc_cluster(tmp_path: Path, database_url: str) -> Iterator[Cluster]:
    """Gateway + three nodes with short garbage-collection times, on either database."""
    with running_cluster(tmp_path, database_url=database_url, env=GC_ENV) as c:
        yield c


def _node_bytes(c: Cluster) -> int:
    """Bytes of chunk files on every node's disk (each replica counts)."""
    total = 0
    for name in c.nodes:
        for path in c.node_dir(name).rglob("*"):
            if path.is_file() and len(path.name) == 64:
                total += path.stat().st_size
    return total


def _holds(c: Cluster, sha: str) -> bool:
    return any(any(c.node_dir(n).rglob(sha)) for n in c.nodes)


def _set_quota(c: Cluster, acct: Account, nbytes: int) -> None:
    c.admin.SetUserQuota(pb.SetUserQuotaRequest(admin_key=ADMIN_KEY, email=acct.email,
                                                storage_bytes=nbytes), timeout=10)


def _stream(acct: Account, data: bytes, name: str, piece: int = MiB, announced: int = 0
            ) -> Iterator[pb.UploadFileRequest]:
    yield pb.UploadFileRequest(metadata=pb.FileMetadata(
        session_token=acct.token, filename=name, file_size=announced or len(data)))
    for i in range(0, len(data), piece):
        yield pb.UploadFileRequest(chunk_data=data[i:i + piece])


def _upload_or_error(c: Cluster, acct: Account, data: bytes, name: str
                     ) -> pb.UploadFileResponse | grpc.StatusCode:
    try:
        return c.files.UploadFile(_stream(acct, data, name), timeout=120)
    except grpc.RpcError as exc:
        return exc.code()


# --- quota ---------------------------------------------------------------------------------

def test_parallel_uploads_never_put_more_than_the_quota_on_the_nodes(cluster: Cluster) -> None:
    c = cluster
    acct = c.sign_up()
    quota = 3 * CHUNK
    _set_quota(c, acct, quota)
    before = _node_bytes(c)
    streams = {f"s{i}.bin": os.urandom(2 * CHUNK) for i in range(4)}  # 4 x 8 MiB
    small = [os.urandom(900_000) for _ in range(6)]  # and 5.4 MB in one batch
    outcomes: dict[str, object] = {}
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _node_bytes(c) - before)
            time.sleep(0.01)

    def stream(name: str) -> None:
        outcomes[name] = _upload_or_error(c, acct, streams[name], name)

    def batch() -> None:
        outcomes["batch"] = c.files.UploadSmallFiles(pb.UploadSmallFilesRequest(
            session_token=acct.token, files=[pb.SmallFileUpload(
                metadata=pb.FileMetadata(filename=f"p{i}", file_size=len(d)), data=d)
                for i, d in enumerate(small)]), timeout=120)

    sampler = threading.Thread(target=sample)
    sampler.start()
    workers = [threading.Thread(target=stream, args=(n,)) for n in streams]
    workers.append(threading.Thread(target=batch))
    for w in workers:
        w.start()
    for w in workers:
        w.join(180)
    done.set()
    sampler.join()
    after = _node_bytes(c) - before
    # What was asked for is far beyond the quota; what the nodes got never is.
    assert sum(map(len, streams.values())) + sum(map(len, small)) > 2 * quota
    assert peak[0] <= REPLICAS * quota and after <= REPLICAS * quota, (peak[0], after)
    # Some uploads were refused for lack of space, and what committed fits and reads back.
    codes = [o for o in outcomes.values() if isinstance(o, grpc.StatusCode)]
    batch_reply = outcomes["batch"]
    assert isinstance(batch_reply, pb.UploadSmallFilesResponse)
    refused_small = [r for r in batch_reply.results if r.error_code]
    assert codes or refused_small
    assert set(codes) <= {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert {r.error_code for r in refused_small} <= {"RESOURCE_EXHAUSTED"}
    files = {f.filename: f for f in acct.ls().files}
    assert sum(f.file_size for f in files.values()) == acct.storage().used_bytes <= quota
    for name, data in streams.items():
        if name in files:
            assert acct.download(files[name].file_id) == data
    for i, data in enumerate(small):
        if f"p{i}" in files:
            assert acct.download(files[f"p{i}"].file_id) == data
    # Nothing more fits now: the space the refused uploads stored is still counted.
    info = acct.storage()
    assert info.available_bytes <= quota - info.used_bytes


def _upload_rpcs_ended(c: Cluster) -> int:
    """UploadFile calls the gateway has finished (its log line per call, good or bad)."""
    assert c.gateway is not None
    return sum("cloudgrpc_server.rpc: UploadFile" in line for line in list(c.gateway.lines))


def _cancel_midway(c: Cluster, acct: Account, data: bytes, name: str, stored: int,
                   announce: bool = True) -> None:
    """Send ``data`` until ``stored`` bytes of it are chunks on the nodes, then cancel
    (``announce``: say the full size up front, else send it as of unknown size)."""
    gate = threading.Event()
    hashes = [hashlib.sha256(data[i:i + CHUNK]).hexdigest() for i in range(0, stored, CHUNK)]

    def requests() -> Iterator[pb.UploadFileRequest]:
        if announce:
            yield from _stream(acct, data[:stored], name, announced=len(data))
        else:
            yield pb.UploadFileRequest(metadata=pb.FileMetadata(
                session_token=acct.token, filename=name))
            for i in range(0, stored, MiB):
                yield pb.UploadFileRequest(chunk_data=data[i:i + MiB])
        gate.wait(60)  # hold the stream open: the client is mid-upload

    ended = _upload_rpcs_ended(c)
    call = c.files.UploadFile.future(requests(), timeout=120)
    deadline = time.monotonic() + 60
    while not all(_holds(c, h) for h in hashes):
        assert time.monotonic() < deadline, "the first chunks never reached the nodes"
        time.sleep(0.05)
    call.cancel()
    gate.set()
    with pytest.raises(grpc.FutureCancelledError):
        call.result()
    # the gateway has seen the stream end and ended the upload (a resume comes after that);
    # its own deadline: on a loaded machine the first wait may have used most of the other
    deadline = time.monotonic() + 90
    while _upload_rpcs_ended(c) == ended:
        assert time.monotonic() < deadline, "the gateway never saw the cancel"
        time.sleep(0.05)


def test_cancelled_upload_releases_its_reservation(gc_cluster: Cluster) -> None:
    c = gc_cluster
    acct = c.sign_up()
    quota = 3 * CHUNK
    _set_quota(c, acct, quota)
    first = os.urandom(quota)
    _cancel_midway(c, acct, first, "first.bin", 2 * CHUNK, announce=False)
    # a cancel is not the end of the file: nothing committed, even of unknown size
    assert acct.ls().files == [] and acct.storage().used_bytes == 0
    # The stored chunks stay counted until collected, so parking them is no way around the
    # quota: another upload gets only what is left ...
    other = os.urandom(quota)
    assert _upload_or_error(c, acct, other, "other.bin") == grpc.StatusCode.RESOURCE_EXHAUSTED
    # ... while garbage collection takes them (grace 5 s), and then the whole quota is free.
    deadline = time.monotonic() + 60
    while acct.storage().available_bytes != quota:
        assert time.monotonic() < deadline, acct.storage()
        time.sleep(0.2)
    reply = _upload_or_error(c, acct, other, "other.bin")
    assert isinstance(reply, pb.UploadFileResponse), reply
    assert acct.storage().used_bytes == quota
    assert acct.download(reply.file_id) == other
    # A cancelled upload resumed at once: its parked chunks are taken over, not counted twice.
    c.files.DeleteFile(pb.DeleteFileRequest(session_token=acct.token, file_id=reply.file_id,
                                            permanent=True), timeout=10)
    third = os.urandom(quota)  # new bytes: the first ones may still be on the nodes' disks
    _cancel_midway(c, acct, third, "third.bin", 2 * CHUNK)
    resumed = _upload_or_error(c, acct, third, "third.bin")
    assert isinstance(resumed, pb.UploadFileResponse), resumed
    assert resumed.chunks_deduplicated == 2  # the caller's own chunks, sent before
    assert acct.download(resumed.file_id) == third
    info = acct.storage()
    assert info.used_bytes == quota and info.available_bytes == 0


def _chunk_last_used(c: Cluster, sha: str) -> object:
    engine = sa.create_engine(c.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT last_used_at FROM chunks WHERE sha256 = :s"),
                                {"s": sha}).scalar()
    finally:
        engine.dispose()


def test_refused_chunk_reference_changes_nothing(gc_cluster: Cluster) -> None:
    c = gc_cluster
    alice, mallory = c.sign_up(), c.sign_up()
    data = os.urandom(MiB)
    sha = hashlib.sha256(data).hexdigest()
    fid = alice.upload(data, "secret.bin").file_id
    c.files.DeleteFile(pb.DeleteFileRequest(session_token=alice.token, file_id=fid,
                                            permanent=True), timeout=10)
    stamp = _chunk_last_used(c, sha)
    assert stamp is not None

    def reference() -> Iterator[pb.UploadFileRequest]:
        yield pb.UploadFileRequest(metadata=pb.FileMetadata(
            session_token=mallory.token, filename="mine.bin", file_size=len(data)))
        yield pb.UploadFileRequest(chunk_ref=pb.ChunkRef(sha256=sha, size=len(data)))

    # Mallory keeps referencing the chunk she never sent, to keep it alive: refused, and
    # its collection time does not move; it leaves the nodes on schedule all the same.
    deadline = time.monotonic() + 60
    refusals = 0
    while _holds(c, sha):
        assert time.monotonic() < deadline, "the deleted chunk was kept alive"
        with pytest.raises(grpc.RpcError) as err:
            c.files.UploadFile(reference(), timeout=10)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        refusals += 1
        current = _chunk_last_used(c, sha)
        assert current is None or current == stamp
        time.sleep(0.3)
    assert refusals > 3
    assert _chunk_last_used(c, sha) is None
    assert mallory.ls().files == [] and mallory.storage().used_bytes == 0


# --- no leaks between users ------------------------------------------------------------------

def _find(c: Cluster, acct: Account, data: bytes) -> list[str]:
    hashes = [hashlib.sha256(data[i:i + CHUNK]).hexdigest() for i in range(0, len(data), CHUNK)]
    return list(c.files.FindChunks(pb.FindChunksRequest(session_token=acct.token,
                                                        sha256=hashes), timeout=10).present)


def _reply_shape(r: pb.UploadFileResponse) -> tuple[bool, int, int, int]:
    return r.success, r.chunks_stored, r.chunks_deduplicated, r.entry.file_size


def _small_shape(c: Cluster, acct: Account, data: bytes) -> tuple[str, int, int]:
    r = c.files.UploadSmallFiles(pb.UploadSmallFilesRequest(
        session_token=acct.token, files=[pb.SmallFileUpload(
            metadata=pb.FileMetadata(filename="small.txt"), data=data)]), timeout=30)
    up = r.results[0]
    return up.error_code, up.upload.chunks_stored, up.upload.chunks_deduplicated


def test_replies_do_not_tell_what_other_users_store(cluster: Cluster) -> None:
    c = cluster
    alice, bob, carol = c.sign_up(), c.sign_up(), c.sign_up()
    known = os.urandom(2 * CHUNK + 5)  # Alice's file: three chunks
    unique = os.urandom(len(known))
    first = alice.upload(known, "known.bin")
    assert first.chunks_stored == 3
    small_known = os.urandom(1000)
    assert _small_shape(c, alice, small_known) == ("", 1, 0)
    # Bob asks whether anyone stores these bytes: the same answer as Carol asking about
    # bytes nobody has.
    assert _find(c, bob, known) == [] == _find(c, carol, unique)
    bob_reply = bob.upload(known, "probe.bin")
    carol_reply = carol.upload(unique, "probe.bin")
    assert _reply_shape(bob_reply) == _reply_shape(carol_reply) == (True, 3, 0, len(known))
    assert _small_shape(c, bob, small_known) == _small_shape(c, carol, os.urandom(1000)) \
        == ("", 1, 0)
    # What a user sent before is theirs to be told about.
    again = bob.upload(known, "again.bin")
    assert (again.chunks_stored, again.chunks_deduplicated) == (0, 3)
    assert len(_find(c, bob, known)) == 3
    assert bob.download(bob_reply.file_id) == known


# --- shares and the trash ----------------------------------------------------------------------

def _code(call) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code()


def test_trashed_folder_hides_shared_files_and_recipient_removes_a_share(
        cluster: Cluster) -> None:
    c = cluster
    owner, reader, other = c.sign_up(), c.sign_up(), c.sign_up()
    top = c.files.CreateFolder(pb.CreateFolderRequest(session_token=owner.token,
                                                      name="projects"), timeout=10).folder.folder_id
    inner = c.files.CreateFolder(pb.CreateFolderRequest(
        session_token=owner.token, parent_folder_id=top, name="q3"), timeout=10).folder.folder_id
    data = b"quarterly numbers" * 1000
    fid = owner.upload(data, "report.txt", folder_id=inner).file_id
    for who in (reader, other):
        c.files.ShareFile(pb.ShareFileRequest(session_token=owner.token, file_id=fid,
                                              share_with_email=who.email,
                                              permission="write"), timeout=10)
    assert reader.download(fid) == data

    def overwrite(acct: Account) -> pb.UploadFileResponse:
        return acct.upload(b"defaced", overwrite_file_id=fid)

    def shared(acct: Account) -> list[str]:
        return [f.file_id for f in c.files.ListSharedWithMe(pb.ListSharedWithMeRequest(
            session_token=acct.token), timeout=10).files]

    # The owner trashes the folder two levels up: the share goes dark for every recipient.
    c.files.DeleteFolder(pb.DeleteFolderRequest(session_token=owner.token, folder_id=top,
                                                recursive=True), timeout=10)
    assert _code(lambda: reader.download(fid)) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: overwrite(reader)) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: c.files.GetFileChunks(pb.GetFileChunksRequest(
        session_token=reader.token, file_id=fid, with_sources=True), timeout=10)) \
        == grpc.StatusCode.NOT_FOUND
    small = list(c.files.DownloadSmallFiles(pb.DownloadSmallFilesRequest(
        session_token=reader.token, file_ids=[fid]), timeout=10))
    assert small[0].data == b"" and small[0].error
    assert _code(lambda: c.files.SetAttributes(pb.SetAttributesRequest(
        session_token=reader.token, entry_id=fid, size=0), timeout=10)) \
        == grpc.StatusCode.NOT_FOUND
    assert shared(reader) == []
    # Restoring the folder brings the share back (the owner decides: the share was never
    # revoked, only its folder was away), unchanged.
    c.files.RestoreFile(pb.RestoreFileRequest(session_token=owner.token, file_id=top),
                        timeout=10)
    assert reader.download(fid) == data
    assert shared(reader) == [fid]
    # The recipient removes the share from their own view (by file and their own email);
    # they cannot remove somebody else's share, and the owner's other share stays.
    assert _code(lambda: c.files.RevokeShare(pb.RevokeShareRequest(
        session_token=reader.token, file_id=fid, shared_with_email=other.email),
        timeout=10)) == grpc.StatusCode.NOT_FOUND
    c.files.RevokeShare(pb.RevokeShareRequest(session_token=reader.token, file_id=fid,
                                              shared_with_email=reader.email), timeout=10)
    assert shared(reader) == []
    assert _code(lambda: reader.download(fid)) == grpc.StatusCode.NOT_FOUND
    assert shared(other) == [fid] and other.download(fid) == data
    listed = c.files.ListShares(pb.ListSharesRequest(session_token=owner.token, file_id=fid),
                                timeout=10).shares
    assert [s.shared_with_email for s in listed] == [other.email]
    # ... and by share id, for the other recipient.
    c.files.RevokeShare(pb.RevokeShareRequest(session_token=other.token,
                                              share_id=listed[0].share_id), timeout=10)
    assert shared(other) == []
    assert owner.download(fid) == data


# --- names ---------------------------------------------------------------------------------------

HOSTILE = ["clear\x1b[2Jscreen", "\x1b]0;pwned\x07title", "del\x7fete", "c1\x9bcsi",
           "tab\there", "nul\x00byte", "bell\x07"]


def test_names_with_control_characters_are_refused(cluster: Cluster) -> None:
    for name in HOSTILE:
        _refuse_everywhere(cluster, name)


def _refuse_everywhere(c: Cluster, name: str) -> None:
    acct = c.sign_up()
    peer = c.sign_up()
    kept = acct.upload(b"fine", "fine.txt")
    folder = c.files.CreateFolder(pb.CreateFolderRequest(session_token=acct.token,
                                                         name="ok"), timeout=10).folder.folder_id

    def refused(call, field: str) -> None:  # type: ignore[no-untyped-def]
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in err.value.details()

    refused(lambda: c.files.CreateFolder(pb.CreateFolderRequest(
        session_token=acct.token, name=name), timeout=10), "name")
    refused(lambda: acct.upload(b"x", name), "filename")
    refused(lambda: c.files.CreateSymlink(pb.CreateSymlinkRequest(
        session_token=acct.token, name=name, target="fine.txt"), timeout=10), "name")
    refused(lambda: c.files.MoveEntry(pb.MoveEntryRequest(
        session_token=acct.token, entry_id=kept.file_id, new_name=name), timeout=10),
        "new_name")
    # looking a name up is refused the same way (no database ever sees such a name)
    refused(lambda: c.files.StatEntry(pb.StatEntryRequest(
        session_token=acct.token, parent_folder_id=folder, name=name), timeout=10), "name")
    refused(lambda: c.files.StatEntry(pb.StatEntryRequest(
        session_token=acct.token, path="/ok/" + name), timeout=10), "path")
    batch = c.files.UploadSmallFiles(pb.UploadSmallFilesRequest(
        session_token=acct.token, files=[pb.SmallFileUpload(
            metadata=pb.FileMetadata(filename=name), data=b"y")]), timeout=10)
    assert batch.results[0].error_code == "INVALID_ARGUMENT"
    assert "filename" in batch.results[0].upload.message
    c.files.DeleteFile(pb.DeleteFileRequest(session_token=acct.token, file_id=kept.file_id),
                       timeout=10)
    refused(lambda: c.files.RestoreFile(pb.RestoreFileRequest(
        session_token=acct.token, file_id=kept.file_id, new_name=name), timeout=10),
        "new_name")
    # Nothing was created or renamed: the recipient of a share would only ever see
    # printable names.
    assert [f.filename for f in acct.ls(include_deleted=True).files] == ["fine.txt"]
    assert [d.name for d in acct.ls().folders] == ["ok"]
    assert acct.ls(folder).files == []
    assert peer.ls().files == []


def test_overwriting_a_file_near_the_quota_still_fits(cluster: Cluster) -> None:
    """Reservations must not make an edit cost twice: a file rewritten in place (by the
    mount's small-file batches or by a stream) needs room only for what it grows by, as
    before reservations existed."""
    c = cluster
    acct = c.sign_up()
    _set_quota(c, acct, 1_500_000)
    small = acct.upload(os.urandom(900_000), name="notes.bin")
    assert small.success

    def batch(data: bytes, overwrite: str = "", replace: bool = False) -> pb.SmallFileResult:
        reply = c.files.UploadSmallFiles(pb.UploadSmallFilesRequest(
            session_token=acct.token, files=[pb.SmallFileUpload(
                metadata=pb.FileMetadata(filename="notes.bin", file_size=len(data),
                                         overwrite_file_id=overwrite,
                                         replace_existing=replace), data=data)]),
            timeout=30)
        return reply.results[0]

    by_id = batch(os.urandom(900_000), overwrite=small.file_id)
    assert by_id.upload.success, by_id.error
    by_name = batch(os.urandom(950_000), replace=True)
    assert by_name.upload.success, by_name.error
    streamed = acct.upload(os.urandom(1_000_000), name="notes.bin", replace_existing=True)
    assert streamed.success
    assert acct.storage().used_bytes == 1_000_000
    # and growing past the quota is still refused
    too_big = batch(os.urandom(1_600_000), replace=True)
    assert too_big.error_code == "RESOURCE_EXHAUSTED" and "not enough space" in too_big.error
    assert acct.storage().used_bytes == 1_000_000
