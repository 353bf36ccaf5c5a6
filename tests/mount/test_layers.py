"""The layers under the FUSE adapter, tested without a mount: cache, manifest, inodes, queue."""

from __future__ import annotations

import hashlib
import stat
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from cloudgrpc_fusefs.aio import Blocking
from cloudgrpc_fusefs.inodes import ROOT_INODE, TRASH_INODE, Area, InodeTable, Kind
from cloudgrpc_fusefs.reader import ChunkCache, Manifest
from cloudgrpc_fusefs.writer import UploadTarget, Writer
from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import errors


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_chunk_cache_verifies_and_evicts(tmp_path: Path) -> None:
    cache = ChunkCache(tmp_path / "c", capacity=250)
    blobs = [bytes([i]) * 100 for i in range(3)]
    for blob in blobs:
        cache.put(sha(blob), blob)
    assert cache.size <= 250
    assert cache.get(sha(blobs[0])) is None  # least recently used went first
    assert cache.get(sha(blobs[2])) is not None
    with pytest.raises(ValueError):
        cache.put(sha(b"x"), b"y")
    # a damaged chunk on disk is noticed by a new process (first read verifies)
    path = cache.path(sha(blobs[2]))
    path.write_bytes(b"rot" * 10)
    reopened = ChunkCache(tmp_path / "c", capacity=250)
    assert reopened.get(sha(blobs[2])) is None
    assert not path.exists()


def test_manifest_offsets() -> None:
    m = Manifest(3, [("a", 10), ("b", 10), ("c", 5)])
    assert m.size == 25 and m.starts == [0, 10, 20]
    assert [m.index(o) for o in (0, 9, 10, 19, 20, 24)] == [0, 0, 1, 1, 2, 2]


def test_inode_table_maps_ids_and_attributes() -> None:
    table = InodeTable("root-id", uid=1000, gid=1000)
    folder = table.put_folder(pb.FolderEntry(folder_id="f1", name="docs", mode=0o750,
                                             mtime_ns=5), ROOT_INODE)
    f = table.put_file(pb.FileEntry(file_id="x1", filename="a.txt", file_size=12, mode=0o640,
                                    uid=7, gid=8, version=2), folder.ino)
    link = table.put_file(pb.FileEntry(file_id="l1", filename="l", symlink_target="a.txt"),
                          folder.ino)
    assert table.by_entry("x1") is f and f.kind is Kind.FILE and link.kind is Kind.LINK
    attr = table.attributes(f)
    assert stat.S_ISREG(attr.st_mode) and stat.S_IMODE(attr.st_mode) == 0o640
    assert (attr.st_uid, attr.st_gid, attr.st_size) == (7, 8, 12)
    assert attr.attr_timeout == 1.0
    assert table.attributes(folder).st_uid == 1000  # unset owner -> the mounting user
    assert stat.S_ISLNK(table.attributes(link).st_mode)
    trashed = table.put_file(pb.FileEntry(file_id="t1", filename="old", mode=0o644),
                             TRASH_INODE, Area.TRASH)
    assert stat.S_IMODE(table.attributes(trashed).st_mode) == 0o444  # read-only
    table.remember(f)
    table.mark_deleted(f)
    assert table.get(f.ino) is f  # the kernel still knows it
    table.forget(f.ino, 1)
    assert table.get(f.ino) is None and table.by_entry("x1") is None


def test_folder_link_count_follows_its_children() -> None:
    """A listed folder's nlink (2 + subfolders) follows every change of its children
    without a recount: mkdir, rmdir, rename over a name, a file in a folder's place."""
    table = InodeTable("root-id")
    top = table.put_folder(pb.FolderEntry(folder_id="top", name="top"), ROOT_INODE)
    subs = [table.put_folder(pb.FolderEntry(folder_id=f"d{i}", name=f"d{i}"), top.ino)
            for i in range(3)]
    f = table.put_file(pb.FileEntry(file_id="x", filename="x"), top.ino)
    table.set_children(top, {"d0": subs[0].ino, "d1": subs[1].ino, "x": f.ino})
    assert table.attributes(top).st_nlink == 4
    table.add_child(top, "d2", subs[2].ino)  # mkdir
    assert table.attributes(top).st_nlink == 5
    table.add_child(top, "d1", f.ino)  # a file replaces a folder's name
    assert table.attributes(top).st_nlink == 4
    table.drop_child(top, "d2")  # rmdir
    table.drop_child(top, "missing")
    assert table.attributes(top).st_nlink == 3
    table.mark_deleted(subs[0])
    assert table.attributes(top).st_nlink == 2 and top.children == {"d1": f.ino, "x": f.ino}
    with pytest.raises(TypeError):
        top.children.update({"y": subs[1].ino})  # type: ignore[union-attr]


class FakeClient:
    """Records uploads; fails the first ``fail`` of them with ``error``."""

    def __init__(self, fail: int = 0, error: errors.CloudError | None = None) -> None:
        self.uploads: list[bytes] = []
        self.fail = fail
        self.error = error or errors.Unavailable("down")
        self.direct_writes = False  # no nodes here: nothing is written ahead

    def chunk_size(self) -> int:
        return 4 * 1024 * 1024

    def upload(self, path: str, **kwargs: Any) -> pb.UploadFileResponse:
        data = Path(path).read_bytes()
        if self.fail:
            self.fail -= 1
            raise self.error
        kwargs["progress"](len(data))
        self.uploads.append(data)
        return pb.UploadFileResponse(success=True, entry=pb.FileEntry(
            file_id=kwargs["overwrite_file_id"], file_size=len(data), version=len(self.uploads)))

    def upload_small_files(self, files: list[Any]) -> list[pb.UploadFileResponse]:
        """The batch path of small files: a failure fails the whole call, as a gateway
        that is down does."""
        replies = []
        for f in files:
            if self.fail:
                self.fail -= 1
                raise self.error
            self.uploads.append(f.data)
            replies.append(pb.UploadFileResponse(success=True, entry=pb.FileEntry(
                file_id=f.overwrite_file_id, file_size=len(f.data),
                version=len(self.uploads))))
        return replies


def _writer(tmp_path: Path, client: FakeClient) -> Writer:
    w = Writer(client, Blocking(4), tmp_path / "staging")  # type: ignore[arg-type]
    w.target_of = lambda ino: UploadTarget(f"id{ino}", f"n{ino}", 0o644, 0, 0, 0, f"/n{ino}")
    return w


def test_writer_uploads_snapshot_and_copies_on_write(tmp_path: Path) -> None:
    client = FakeClient()

    async def main() -> None:
        w = _writer(tmp_path, client)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(w.run)
            w.create_empty(5).opens = 1  # one open handle
            await w.write(5, 0, b"hello")
            w.schedule(5)
            w.staging[5].frozen = True  # as if the upload were reading it now
            await w.write(5, 5, b" world")  # must not touch the frozen copy
            await w.wait(5)
            assert client.uploads[-1] == b"hello world"
            assert not w.staging[5].dirty
            w.release(5)
            assert 5 not in w.staging  # clean and closed: dropped
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert [p.name for p in (tmp_path / "staging").iterdir()] == [".lock"]


def test_writer_retries_transient_and_reports_permanent(tmp_path: Path) -> None:
    async def main() -> None:
        client = FakeClient(fail=1)
        w = _writer(tmp_path, client)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(w.run)
            w.create_empty(1).opens = 1
            await w.write(1, 0, b"abc")
            with pytest.raises(errors.CloudError) as info:
                await w.wait(1)  # the first try fails: fsync reports EIO
            assert info.value.errno == 5
            left = await w.sync(time.monotonic() + 10)  # the retry succeeds
            assert left == [] and client.uploads == [b"abc"]
            client.fail, client.error = 1, errors.QuotaExceeded("full")
            await w.write(1, 3, b"def")
            w.schedule(1)
            left = await w.sync(time.monotonic() + 10)
            assert [j.state for j in left] == ["failed"]
            assert w.status()["failed"] == 1 and w.staging[1].dirty  # kept, not lost
            client.fail = 1  # fsync tries again, and reports the quota errno
            with pytest.raises(errors.CloudError) as info:
                await w.wait(1)
            assert info.value.errno == errors.QuotaExceeded.errno
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_writer_falls_back_to_single_uploads_on_an_older_gateway(tmp_path: Path) -> None:
    class OldGateway(FakeClient):
        def upload_small_files(self, files: list[Any]) -> list[pb.UploadFileResponse]:
            raise errors.NotImplementedYet("unknown method UploadSmallFiles")

    client = OldGateway()

    async def main() -> None:
        w = _writer(tmp_path, client)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(w.run)
            for ino in (1, 2, 3):
                w.create_empty(ino)
                await w.write(ino, 0, b"file %d" % ino)
                w.schedule(ino)
            left = await w.sync(trio.current_time() + 10)
            assert left == []
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert sorted(client.uploads) == [b"file 1", b"file 2", b"file 3"]


class FakeDeleteClient:
    """Answers DeleteFiles slowly (so unlinks pile up), failing the next ``fail`` calls."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.fail = 0
        self.error: errors.CloudError = errors.Unavailable("down")
        self.gone: set[str] = set()

    def delete_files(self, ids: list[str]) -> dict[str, errors.CloudError | None]:
        time.sleep(0.05)
        if self.fail:
            self.fail -= 1
            raise self.error
        self.calls.append(list(ids))
        out: dict[str, errors.CloudError | None] = {}
        for i in ids:
            out[i] = errors.NotFound("already in the trash") if i in self.gone else None
            self.gone.add(i)
        return out


def test_deleter_batches_retries_and_reports(tmp_path: Path) -> None:
    from cloudgrpc_fusefs.deleter import Deleter

    root = tmp_path / "staging" / "a"
    root.mkdir(parents=True)
    client = FakeDeleteClient()

    async def main() -> None:
        d = Deleter(client, Blocking(4), root, "acct")  # type: ignore[arg-type]
        failed: list[str] = []
        d.on_failed = lambda items: failed.extend(i.entry_id for i in items)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(d.run)
            for i in range(200):
                d.queue(f"id{i}", f"/f{i}", 1)
                assert d.hidden(f"id{i}")
                if i % 20 == 0:
                    await trio.sleep(0.01)  # unlinks arriving while a call is in flight
            journal = "".join(p.read_text() for p in root.glob("*.delete"))
            sent = {i for call in client.calls for i in call}
            assert all(f'"id": "id{i}"' in journal for i in range(200) if f"id{i}" not in sent)
            await d.flush()
            assert sum(len(c) for c in client.calls) == 200
            assert len(client.calls) < 20  # batched, not one call per unlink
            assert not d.hidden("id0") and not list(root.glob("*.delete"))
            # the gateway away: the op awaiting flush gets EIO, the id stays queued
            client.fail = 1
            d.queue("x", "/x", 1)
            with pytest.raises(errors.Unavailable) as info:
                await d.flush()
            assert info.value.errno == 5 and d.hidden("x")
            assert d.status()["deletes_retrying"] == 1
            assert await d.sync(time.monotonic() + 10) == []  # the backoff retry works
            # already gone on the server: done, not a failure
            d.queue("id3", "/f3", 1)
            await d.flush()
            # refused for good: the op gets the errno, status keeps it, the file reappears
            client.fail, client.error = 1, errors.PermissionDenied("no")
            d.queue("y", "/y", 1)
            with pytest.raises(errors.PermissionDenied):
                await d.flush()
            assert failed == ["y"] and not d.hidden("y")
            status = d.status()
            assert status["deletes_failed"] == 1 and status["deletes_pending"] == 0
            assert status["deletes"] == [{"path": "/y", "state": "failed", "error": "no",
                                          "attempts": 1, "kind": "delete"}]
            assert status["deletes_done"] == 202
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_deleter_adopts_what_a_killed_daemon_journaled(tmp_path: Path) -> None:
    from cloudgrpc_fusefs.deleter import Deleter

    dead = tmp_path / "staging" / "dead"
    dead.mkdir(parents=True)
    client = FakeDeleteClient()

    async def crash() -> None:
        d = Deleter(client, Blocking(4), dead, "acct", delay=60)  # type: ignore[arg-type]
        d.queue("k1", "/k1", 1)
        d.queue("k2", "/k2", 1)

    trio.run(crash)  # never sent: the journals stay
    (dead / "other.delete").write_text('{"account": "someone else"}\n{"id": "z"}\n')
    mine = tmp_path / "staging" / "mine"
    mine.mkdir()

    async def main() -> None:
        d = Deleter(client, Blocking(4), mine, "acct")  # type: ignore[arg-type]
        assert d.hidden("k1") and d.hidden("k2") and not d.hidden("z")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(d.run)
            await d.flush()
            nursery.cancel_scope.cancel()
        assert d.status()["deletes_recovered"] == 2

    trio.run(main)
    assert client.calls == [["k1", "k2"]]
    assert sorted(p.name for p in dead.glob("*.delete")) == ["other.delete"]


class AheadClient:
    """Write-behind's side of the client: records each write_ahead call's chunks and
    reads every chunk's bytes as a node write would, checking them against the hash."""

    direct_writes = True

    def __init__(self, chunk: int, stop_after: int = 0) -> None:
        self.chunk = chunk
        self.calls: list[int] = []
        self.stop_after = stop_after  # ask the sender to stop once this many were read
        self.read = 0
        self.ahead: Any = None

    def chunk_size(self) -> int:
        return self.chunk

    def write_ahead(self, upload_id: str, entries: list[Any], read: Any) -> dict[str, Any]:
        from cloudgrpc_proto.direct_writes import StopAhead

        self.calls.append(len(entries))
        done: dict[str, Any] = {}
        try:
            for entry in entries:
                data = read(entry)
                self.read += 1
                assert hashlib.sha256(data).hexdigest() == entry.sha256
                done[entry.sha256] = [pb.ChunkReceipt(node_id="n1", receipt="r")]
                if self.read == self.stop_after:
                    self.ahead.stopping = True  # as an upload starting now does
        except StopAhead:
            pass
        return done


@pytest.mark.parametrize("stop_after", [0, 3])
def test_write_behind_grants_many_chunks_per_call(tmp_path: Path, stop_after: int) -> None:
    """A fast writer's whole chunks go 16 to a grant call (one gateway transaction each),
    every chunk read again when sent; an upload starting meanwhile stops the sends at once,
    keeping the receipts of what was written."""
    import os

    from cloudgrpc_fusefs.write_behind import Ahead, WriteBehind

    chunk = 64 * 1024
    copy = tmp_path / "copy"
    copy.write_bytes(os.urandom(20 * chunk + 100))
    client = AheadClient(chunk, stop_after)
    ahead = client.ahead = Ahead()

    async def main() -> None:
        behind = WriteBehind(client, Blocking(4), 0)  # type: ignore[arg-type]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(behind.run)
            while not behind.enabled:
                await trio.sleep(0.01)
            fd = os.open(copy, os.O_RDONLY)
            try:
                behind.wrote(ahead, fd, 0, copy.stat().st_size)
                with trio.fail_after(10):
                    while ahead.sending is not None:
                        await trio.sleep(0.01)
            finally:
                os.close(fd)
            nursery.cancel_scope.cancel()

    trio.run(main)
    if stop_after:
        assert client.calls == [16] and len(ahead.receipts) == 3
    else:
        assert client.calls == [16, 4] and len(ahead.receipts) == 20
        assert ahead.next_chunk == 20


def test_write_behind_hands_the_upload_only_hashes_no_write_touched(tmp_path: Path) -> None:
    """The upload reads and hashes again every chunk written since it was sent: a write
    into a sent chunk (during its send or after), or a truncate, drops that chunk's hash."""
    import os

    from cloudgrpc_fusefs.write_behind import Ahead, WriteBehind

    chunk = 64 * 1024
    copy = tmp_path / "copy"
    copy.write_bytes(os.urandom(20 * chunk))
    client = AheadClient(chunk)
    ahead = client.ahead = Ahead()
    fd = os.open(copy, os.O_RDWR)
    behind = WriteBehind(client, Blocking(4), 0)  # type: ignore[arg-type]
    real = client.write_ahead

    def write_during_send(upload_id: str, entries: list[Any], read: Any) -> dict[str, Any]:
        if entries[0].offset == 0:  # the first call: chunk 3 changes while it is sent
            trio.from_thread.run_sync(behind.wrote, ahead, fd, 3 * chunk + 5, 10)
        return real(upload_id, entries, read)

    client.write_ahead = write_during_send  # type: ignore[method-assign]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(behind.run)
            while not behind.enabled:
                await trio.sleep(0.01)
            behind.wrote(ahead, fd, 0, copy.stat().st_size)
            with trio.fail_after(10):
                while ahead.sending is not None:
                    await trio.sleep(0.01)
            behind.wrote(ahead, fd, 7 * chunk - 1, 2)  # straddles chunks 6 and 7
            behind.truncated(ahead, 15 * chunk + 9)  # 15 is cut short, 16-19 are gone
            taken = await behind.take(ahead)
            assert sorted(taken.hashes) == [i * chunk for i in range(15) if i not in (3, 6, 7)]
            data = copy.read_bytes()
            for offset, sha in taken.hashes.items():
                assert hashlib.sha256(data[offset:offset + chunk]).hexdigest() == sha
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        os.close(fd)


class FakeFolderClient:
    """Answers ApplyFolderChanges (or lacks it), recording every call's changes; a change
    named in ``refuse`` fails on its own, one named in ``stop_at`` cuts the batch short
    once (the gateway going away mid-batch)."""

    def __init__(self, batches: bool = True) -> None:
        self.batches = batches
        self.calls: list[list[str]] = []
        self.refuse: set[str] = set()
        self.stop_at: set[str] = set()

    def apply_folder_changes(self, changes: list[pb.FolderChange]) -> list[Any]:
        if not self.batches:
            raise errors.NotImplementedYet("no such call")
        time.sleep(0.01)
        names = [c.create.name or c.move.new_name for c in changes]
        self.calls.append(names)
        out: list[Any] = []
        for name in names:
            if name in self.stop_at:
                self.stop_at.discard(name)
                out.append(errors.Unavailable("database away"))
                break
            out.append(errors.AlreadyExists("taken") if name in self.refuse
                       else pb.EntryResponse(success=True))
        return out

    def create_folder(self, name: str, parent: str, **kwargs: Any) -> pb.EntryResponse:
        self.calls.append([name])
        if name in self.refuse:
            raise errors.AlreadyExists("taken")
        return pb.EntryResponse(success=True)

    def move_entry(self, entry_id: str, parent: str, name: str) -> pb.EntryResponse:
        self.calls.append([name])
        return pb.EntryResponse(success=True)


@pytest.mark.parametrize("batches", [True, False])
def test_deleter_sends_queued_folder_changes_in_few_calls(tmp_path: Path,
                                                          batches: bool) -> None:
    """A mkdir loop's queued changes go out a batch per call, in order; a refused change
    fails alone, a batch cut short sends the rest again in order; a gateway without the
    call gets them one by one."""
    from cloudgrpc_fusefs.deleter import Deleter

    root = tmp_path / "staging" / "a"
    root.mkdir(parents=True)
    client = FakeFolderClient(batches)
    failed: list[str] = []

    async def main() -> None:
        d = Deleter(client, Blocking(4), root, "acct")  # type: ignore[arg-type]
        d.on_failed = lambda items: failed.extend(i.params["name"] for i in items)
        client.refuse, client.stop_at = {"d7"}, {"d12"}
        async with trio.open_nursery() as nursery:
            nursery.start_soon(d.run)
            for i in range(40):
                d.queue_mkdir(f"00000000-0000-4000-8000-{i:012d}", "root", f"d{i}", mode=0o755,
                              uid=0, gid=0, path=f"/d{i}", parent_ino=1)
                if i % 4 == 0:
                    await trio.sleep(0.003)  # a shell loop's pace
            assert await d.sync(time.monotonic() + 30) == []
            nursery.cancel_scope.cancel()

    trio.run(main)
    sent = [name for call in client.calls for name in call]
    assert [n for n in dict.fromkeys(sent)] == [f"d{i}" for i in range(40)]  # in order
    assert failed == ["d7"]
    if batches:
        assert len(client.calls) <= 10, client.calls
        assert sent.count("d12") == 2  # cut short once: it and the rest went again
    else:
        assert len(client.calls) == 40
