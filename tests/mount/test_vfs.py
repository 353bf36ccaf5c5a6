"""The VFS driven directly, without FUSE: the mount's decisions against a real gateway.

Each test serves a ``VFS`` (change feed, upload workers, delete queue) in a trio nursery
against the shared mount cluster, calls its operations as the kernel would (inode numbers,
``str`` names, a ``Caller``) and checks what a user would notice: what the gateway stores
(another client's view), what reads return, link counts, and the errno an operation fails
with. Kernel invalidations are recorded instead of sent.
"""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from cloudgrpc_fusefs.inodes import ROOT_INODE
from cloudgrpc_fusefs.vfs import VFS, AttrChanges, Caller, Options
from cloudgrpc_fusefs.vfs.values import MAX_FILE_SIZE
from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import errors
from cloudgrpc_proto.client import CloudClient
from tests.cluster import Account, Cluster

ME = Caller(uid=os.getuid(), gid=os.getgid(), pid=os.getpid())
FILE = stat.S_IFREG | 0o644


class RecordingKernel:
    """The VFS's ``Kernel`` for tests: keeps what it was told."""

    def __init__(self) -> None:
        self.entries: list[tuple[int, str]] = []
        self.inodes: list[tuple[int, bool]] = []

    def invalidate_entry(self, parent_ino: int, name: str) -> None:
        self.entries.append((parent_ino, name))

    def invalidate_inode(self, ino: int, attr_only: bool = False) -> None:
        self.inodes.append((ino, attr_only))


@asynccontextmanager
async def served(cluster: Cluster, account: Account, tmp: Path,
                 options: Options | None = None) -> AsyncIterator[tuple[VFS, RecordingKernel]]:
    """A VFS of ``account`` serving (feed connected) until the block ends."""
    client = CloudClient(cluster.address, session_token=account.token)
    kernel = RecordingKernel()
    work = tmp / uuid.uuid4().hex[:8]
    vfs = VFS(client, client.list_files(), work / "chunks", work / "staging",
              options or Options(), kernel=kernel)
    try:
        async with trio.open_nursery() as nursery:
            await vfs.serve(nursery)
            with trio.fail_after(10):
                while not vfs.watch_ok:
                    await trio.sleep(0.01)
            yield vfs, kernel
            nursery.cancel_scope.cancel()
    finally:
        vfs.stop_watch()
        vfs.writer.close()
        vfs.deleter.close()
        client.close()


Scenario = Callable[[VFS, RecordingKernel], Awaitable[None]]


@pytest.fixture
def drive(mount_cluster: Cluster, account: Account,
          tmp_path: Path) -> Callable[..., None]:
    """Runs ``scenario(vfs, kernel)`` under trio with the test account's VFS serving."""

    def run_scenario(scenario: Scenario, options: Options | None = None) -> None:
        async def main() -> None:
            async with served(mount_cluster, account, tmp_path, options) as (vfs, kernel):
                await scenario(vfs, kernel)

        trio.run(main)

    return run_scenario


async def write_file(vfs: VFS, parent: int, name: str, data: bytes) -> int:
    """create + write + release, as ``echo data > name`` does; the inode."""
    opened, attrs = await vfs.create(parent, name, FILE, os.O_WRONLY | os.O_CREAT, ME)
    assert await vfs.write(opened.fh, 0, data) == len(data)
    await vfs.release(opened.fh)
    return attrs.st_ino


async def read_all(vfs: VFS, ino: int) -> bytes:
    opened = await vfs.open(ino, os.O_RDONLY)
    try:
        return bytes(await vfs.read(opened.fh, 0, 1 << 20))
    finally:
        await vfs.release(opened.fh)


def stored(account: Account, folder_id: str = "") -> dict[str, pb.FileEntry]:
    """The files the gateway lists in a folder, by name (another client's view)."""
    return {f.filename: f for f in account.ls(folder_id).files}


async def fails_with(code: int, call: Awaitable[object]) -> None:
    """The operation fails with errno ``code``: the VFS's own error or the gateway's
    typed one, each carrying the errno the adapter hands the kernel."""
    with pytest.raises(errors.CloudError) as caught:
        await call
    assert caught.value.errno == code, os.strerror(caught.value.errno)


def test_created_file_reaches_the_gateway_and_reads_back_elsewhere(
        drive: Callable[..., None], account: Account) -> None:
    async def scenario(vfs: VFS, _: RecordingKernel) -> None:
        ino = await write_file(vfs, ROOT_INODE, "notes.txt", b"hello vfs\n")
        attrs = await vfs.lookup(ROOT_INODE, "notes.txt")
        assert attrs is not None and attrs.st_ino == ino and attrs.st_size == 10
        assert stat.S_IMODE(attrs.st_mode) == 0o644 and attrs.st_uid == ME.uid
        assert await vfs.sync() == []

    async def elsewhere(other: VFS, _: RecordingKernel) -> None:  # a cold cache
        found = await other.lookup(ROOT_INODE, "notes.txt")
        assert found is not None and found.st_size == 10
        assert await read_all(other, found.st_ino) == b"hello vfs\n"

    drive(scenario)
    assert account.download(stored(account)["notes.txt"].file_id) == b"hello vfs\n"
    drive(elsewhere)


def test_unlinked_file_stays_readable_and_writable_while_open(
        drive: Callable[..., None], account: Account) -> None:
    trashed: list[str] = []

    async def scenario(vfs: VFS, _: RecordingKernel) -> None:
        ino = await write_file(vfs, ROOT_INODE, "open.log", b"first ")
        assert await vfs.sync() == []
        opened = await vfs.open(ino, os.O_RDWR)
        await vfs.unlink(ROOT_INODE, "open.log")
        assert await vfs.lookup(ROOT_INODE, "open.log") is None
        assert (await vfs.getattr(ino)).st_nlink == 0  # fstat after unlink, as on ext4
        assert bytes(await vfs.read(opened.fh, 0, 100)) == b"first "
        await vfs.write(opened.fh, 6, b"second")
        assert bytes(await vfs.read(opened.fh, 0, 100)) == b"first second"
        await vfs.release(opened.fh)
        assert await vfs.sync() == []
        assert await vfs.lookup(ROOT_INODE, "open.log") is None
        assert vfs.writer.get(ino) is None  # its local copy went with the last close
        await vfs.forget([(ino, 1)])  # the kernel lets go of it too
        await fails_with(errno.ENOENT, vfs.getattr(ino))
        trashed.extend(f.filename for f in (await vfs.call(vfs.client.list_trash)).files)

    drive(scenario)
    assert "open.log" not in stored(account)
    assert "open.log" in trashed  # as any rm'd file


def test_rename_over_an_entry_replaces_it(
        drive: Callable[..., None], account: Account) -> None:
    async def scenario(vfs: VFS, _: RecordingKernel) -> None:
        a = await write_file(vfs, ROOT_INODE, "a", b"content of a")
        await write_file(vfs, ROOT_INODE, "b", b"old b")
        assert await vfs.sync() == []
        await vfs.rename(ROOT_INODE, "a", ROOT_INODE, "b")
        assert await vfs.lookup(ROOT_INODE, "a") is None
        b = await vfs.lookup(ROOT_INODE, "b")
        assert b is not None and b.st_ino == a
        assert await read_all(vfs, a) == b"content of a"
        # RENAME_NOREPLACE onto a name that exists: EEXIST, and both names stay
        await write_file(vfs, ROOT_INODE, "b2", b"keep")
        await fails_with(errno.EEXIST, vfs.rename(ROOT_INODE, "b", ROOT_INODE, "b2",
                                                  noreplace=True))
        assert await vfs.lookup(ROOT_INODE, "b") is not None
        b2 = await vfs.lookup(ROOT_INODE, "b2")
        assert b2 is not None and await read_all(vfs, b2.st_ino) == b"keep"
        assert await vfs.sync() == []

    drive(scenario)
    files = stored(account)
    assert "a" not in files and account.download(files["b"].file_id) == b"content of a"


def test_folder_nlink_follows_mkdir_and_rmdir(
        drive: Callable[..., None], account: Account) -> None:
    async def scenario(vfs: VFS, _: RecordingKernel) -> None:
        # the root is not listed yet (the feed's hello dropped its children): its count
        # is the gateway's, kept up with this mount's own mkdir and rmdir
        base = (await vfs.getattr(ROOT_INODE)).st_nlink
        assert base == 2 + 2  # ".", the name, and ".." of .trash and Shared
        d = await vfs.mkdir(ROOT_INODE, "d", 0o755, ME)
        assert (await vfs.getattr(ROOT_INODE)).st_nlink == base + 1
        fh = await vfs.opendir(ROOT_INODE)  # listed: counted from its entries, the same
        listed = {e.name: e.attributes for e in await vfs.readdir(fh, 0)}
        await vfs.releasedir(fh)
        assert listed["."].st_nlink == base + 1 and listed["d"].st_nlink == 2
        assert stat.S_ISDIR(d.st_mode)
        await vfs.mkdir(d.st_ino, "e", 0o700, ME)
        assert (await vfs.getattr(d.st_ino)).st_nlink == 3
        await fails_with(errno.ENOTEMPTY, vfs.rmdir(ROOT_INODE, "d"))
        await vfs.rmdir(d.st_ino, "e")
        assert (await vfs.getattr(d.st_ino)).st_nlink == 2
        await vfs.rmdir(ROOT_INODE, "d")
        assert (await vfs.getattr(ROOT_INODE)).st_nlink == base
        assert await vfs.lookup(ROOT_INODE, "d") is None
        assert await vfs.sync() == []

    drive(scenario)
    assert "d" not in {f.name for f in account.ls().folders}


def test_hard_link_counts_names_and_outlives_the_first(
        drive: Callable[..., None], account: Account) -> None:
    async def scenario(vfs: VFS, _: RecordingKernel) -> None:
        ino = await write_file(vfs, ROOT_INODE, "f", b"linked")
        linked = await vfs.link(ino, ROOT_INODE, "g")
        assert linked.st_ino == ino and linked.st_nlink == 2
        g = await vfs.lookup(ROOT_INODE, "g")
        assert g is not None and g.st_ino == ino and g.st_nlink == 2
        await fails_with(errno.EEXIST, vfs.link(ino, ROOT_INODE, "f"))
        await vfs.unlink(ROOT_INODE, "f")
        assert await vfs.lookup(ROOT_INODE, "f") is None
        assert (await vfs.getattr(ino)).st_nlink == 1
        assert await read_all(vfs, ino) == b"linked"

    drive(scenario)
    files = stored(account)
    assert "f" not in files and account.download(files["g"].file_id) == b"linked"


def test_queued_delete_hides_the_entry_before_the_gateway_has_it(
        drive: Callable[..., None], account: Account) -> None:
    async def scenario(vfs: VFS, _: RecordingKernel) -> None:
        await write_file(vfs, ROOT_INODE, "gone", b"x")
        assert await vfs.sync() == []  # (drains the delete queue too: nothing queued)
        await vfs.unlink(ROOT_INODE, "gone")
        assert "gone" in stored(account)  # the gateway has not been told yet
        assert await vfs.lookup(ROOT_INODE, "gone") is None
        fh = await vfs.opendir(ROOT_INODE)
        assert "gone" not in {e.name for e in await vfs.readdir(fh, 0)}
        await vfs.releasedir(fh)
        await vfs.deleter.flush()
        assert "gone" not in stored(account)
        assert await vfs.lookup(ROOT_INODE, "gone") is None

    # queued deletes wait for a flush, never go out on their own
    drive(scenario, Options(delete_delay=3600))


def test_errno_of_refused_operations(drive: Callable[..., None], account: Account) -> None:
    async def scenario(vfs: VFS, _: RecordingKernel) -> None:
        await fails_with(errno.ENOENT, vfs.unlink(ROOT_INODE, "missing"))
        await fails_with(errno.ENOENT, vfs.rename(ROOT_INODE, "missing", ROOT_INODE, "x"))
        await fails_with(errno.ENAMETOOLONG, vfs.lookup(ROOT_INODE, "n" * 256))
        await fails_with(errno.ENAMETOOLONG, vfs.mkdir(ROOT_INODE, "é" * 128, 0o755, ME))
        ino = await write_file(vfs, ROOT_INODE, "small", b"12345")
        await fails_with(errno.EEXIST, vfs.create(ROOT_INODE, "small", FILE,
                                                  os.O_WRONLY | os.O_CREAT, ME))
        await fails_with(errno.EEXIST, vfs.mkdir(ROOT_INODE, "small", 0o755, ME))
        await fails_with(errno.EFBIG, vfs.setattr(ino, AttrChanges(size=MAX_FILE_SIZE + 1)))
        opened = await vfs.open(ino, os.O_WRONLY)
        await fails_with(errno.EFBIG, vfs.write(opened.fh, MAX_FILE_SIZE, b"!"))
        await vfs.release(opened.fh)
        assert (await vfs.getattr(ino)).st_size == 5  # neither changed anything
        await fails_with(errno.ENOTDIR, vfs.mkdir(ino, "below", 0o755, ME))
        assert await vfs.sync() == []
        assert await read_all(vfs, ino) == b"12345"

    drive(scenario)
    assert account.download(stored(account)["small"].file_id) == b"12345"


def test_change_feed_event_invalidates_the_kernel_entry(drive: Callable[..., None],
                                                        account: Account) -> None:
    async def scenario(vfs: VFS, kernel: RecordingKernel) -> None:
        assert await vfs.lookup(ROOT_INODE, "from-elsewhere") is None
        await trio.to_thread.run_sync(account.upload, b"other client", "from-elsewhere")
        await told(kernel, "from-elsewhere")
        assert (ROOT_INODE, True) in kernel.inodes  # the folder's attributes, too
        found = await vfs.lookup(ROOT_INODE, "from-elsewhere")
        assert found is not None and await read_all(vfs, found.st_ino) == b"other client"
        # this mount's own change is not echoed back to its kernel: another client's
        # change after it arrives, the feed is in order, and ours did not come first
        kernel.entries.clear()
        await write_file(vfs, ROOT_INODE, "mine", b"m")
        assert await vfs.sync() == []
        await trio.to_thread.run_sync(account.upload, b"later", "later")
        await told(kernel, "later")
        assert (ROOT_INODE, "mine") not in kernel.entries

    drive(scenario)


async def told(kernel: RecordingKernel, name: str) -> None:
    """Until the kernel has been told to drop ``name`` in the root."""
    with trio.fail_after(10):
        while (ROOT_INODE, name) not in kernel.entries:
            await trio.sleep(0.01)


def test_the_vfs_needs_no_pyfuse3() -> None:
    """Only the adapter (and the daemon) speak to the kernel: the VFS and the layers below
    it load where pyfuse3 cannot."""
    code = ("import sys; sys.modules['pyfuse3'] = None; "  # any import of it fails
            "import cloudgrpc_fusefs.vfs, cloudgrpc_fusefs.inodes")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_listing_that_overlaps_a_new_files_upload_still_shows_it(
        drive: Callable[..., None]) -> None:
    """The listing is asked while a new file's first upload is out and answered after it
    landed: the gateway's reply predates the file, and the file is no longer a local name
    to merge in. The VFS must ask again rather than leave it out (``ls`` right after
    ``mkfifo`` or ``echo > f`` missed the entry about 1 time in 8)."""
    import threading

    async def scenario(vfs: VFS, _: RecordingKernel) -> None:
        client = vfs.client
        real_upload, real_list = client.upload_small_files, client.list_files
        upload_may_go, listed, list_may_return = (threading.Event(), threading.Event(),
                                                  threading.Event())
        calls = []

        def held_upload(*args, **kwargs):  # type: ignore[no-untyped-def]
            upload_may_go.wait(30)
            return real_upload(*args, **kwargs)

        def slow_list(*args, **kwargs):  # type: ignore[no-untyped-def]
            reply = real_list(*args, **kwargs)
            calls.append(reply)
            if len(calls) == 1:  # the first answer: asked before the upload landed
                listed.set()
                list_may_return.wait(30)
            return reply

        client.upload_small_files = held_upload  # type: ignore[method-assign]
        client.list_files = slow_list  # type: ignore[method-assign]
        await write_file(vfs, ROOT_INODE, "late.txt", b"x")
        names: list[str] = []

        async def ls() -> None:
            fh = await vfs.opendir(ROOT_INODE)
            names.extend(entry.name for entry in await vfs.readdir(fh, 0))
            await vfs.releasedir(fh)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ls)
            await trio.to_thread.run_sync(listed.wait, 30)
            upload_may_go.set()
            assert await vfs.sync() == []  # the upload landed: late.txt is not local now
            list_may_return.set()
        assert "late.txt" in names, names
        assert len(calls) >= 2  # asked again

    drive(scenario)


def test_a_new_files_flush_before_any_write_uploads_nothing(
        drive: Callable[..., None], account: Account) -> None:
    """dd dups its output and closes the original before writing: that flush of a new,
    still empty file must not upload it (a whole upload for nothing); the writes and the
    last close then store the file once. A file only touched is stored at its release."""
    async def scenario(vfs: VFS, _: RecordingKernel) -> None:
        opened, _attrs = await vfs.create(ROOT_INODE, "dd.out", FILE,
                                          os.O_WRONLY | os.O_CREAT, ME)
        await vfs.flush(opened.fh)  # close(3) after dup2(3, 1)
        assert vfs.writer.status()["pending"] == 0 and vfs.writer.uploads_done == 0
        assert await vfs.write(opened.fh, 0, b"dd data\n") == 8
        await vfs.flush(opened.fh)  # close(1)
        await vfs.release(opened.fh)
        touched, _attrs = await vfs.create(ROOT_INODE, "touched", FILE,
                                           os.O_WRONLY | os.O_CREAT, ME)
        await vfs.flush(touched.fh)
        await vfs.release(touched.fh)
        assert await vfs.sync() == []
        assert vfs.writer.uploads_done == 2

    drive(scenario)
    files = stored(account)
    assert files["dd.out"].file_size == 8 and files["touched"].file_size == 0
    assert account.download(files["dd.out"].file_id) == b"dd data\n"
