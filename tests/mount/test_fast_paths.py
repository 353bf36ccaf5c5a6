"""Deferred creates, small-file reads and prefetch, and crash recovery of staged copies."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from pathlib import Path

import pytest
import trio

from cloudgrpc_fusefs.aio import Blocking
from cloudgrpc_fusefs.reader import ChunkCache, Reader, SmallFiles
from cloudgrpc_proto import cloud_storage_pb2 as pb
from tests.cluster import Account
from tests.mount.conftest import Mount, _alive, eventually


def _server_files(account: Account) -> dict[str, pb.FileEntry]:
    return {f.filename: f for f in account.ls().files}


def test_small_file_cache_is_keyed_by_version() -> None:
    cache = SmallFiles(capacity=1000)
    cache.put("a", 1, b"x" * 100)
    assert cache.get("a", 1) == b"x" * 100 and cache.get("a", 2) is None
    for i in range(20):
        cache.put(f"f{i}", 1, b"y" * 100)
    assert cache.size <= 1000 and cache.get("a", 1) is None  # evicted, least recent first
    cache.forget("f19")
    assert cache.get("f19", 1) is None


class _FakeSmallClient:
    """DownloadSmallFiles and DownloadFile over a dict; counts the calls."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.batches = 0
        self.downloads = 0

    def download_small_files(self, ids: list[str], max_file_size: int = 0):  # noqa: ANN201
        self.batches += 1

        class Stream(list):
            def cancel(self) -> None:
                pass

        return Stream(pb.SmallFileContent(file_id=i, version=1, data=self.files[i])
                      for i in ids)

    def download(self, file_id: str, offset: int = 0, length: int = 0):  # noqa: ANN201
        self.downloads += 1
        data = self.files[file_id]

        class D:
            info = pb.FileInfo(file_id=file_id, file_size=len(data), version=1)

            def __enter__(self) -> D:
                return self

            def __exit__(self, *exc: object) -> None:
                pass

            def read_all(self) -> bytes:
                return data

        return D()


def test_reader_prefetches_small_files_in_batches(tmp_path: Path) -> None:
    files = {f"id{i}": os.urandom(4096) for i in range(450)}
    client = _FakeSmallClient(files)

    async def main() -> None:
        reader = Reader(client, Blocking(4), ChunkCache(tmp_path / "c"))  # type: ignore[arg-type]
        async with trio.open_nursery() as nursery:
            reader.nursery = nursery
            assert reader.prefetch_small([(k, 1, 4096) for k in files]) == 450
            for k, v in files.items():  # reads wait for their batch, no download of their own
                assert await reader.read(k, 1, 10, 100, size=4096) == v[10:110]
            assert client.batches == 3 and client.downloads == 0
            # a version the cache does not hold is fetched whole, in one call
            reader.forget("id0")
            assert await reader.read("id0", 1, 0, 5, size=4096) == files["id0"][:5]
            assert client.downloads == 1
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_create_is_one_upload_and_local_until_then(make_mount, account: Account) -> None:
    m: Mount = make_mount(account, "upload_delay=3")
    m.sh("echo one > a.txt && ls | grep -qx a.txt && test \"$(cat a.txt)\" = one")
    m.sh("mv a.txt b.txt && chmod 600 b.txt && echo tmp > gone.txt && rm gone.txt")
    m.sh("touch empty && echo x > d1 && mkdir sub && echo y > sub/z && mv d1 sub/d2")
    with pytest.raises(OSError) as info:
        os.open(m.path / "b.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    assert info.value.errno == errno.EEXIST
    assert m.sh("rmdir sub", check=False).returncode != 0  # holds files not uploaded yet
    assert sorted(m.sh("ls").stdout.split()) == ["Shared", "b.txt", "empty", "sub"]
    assert set(_server_files(account)) == set()  # nothing uploaded yet
    assert m.cli("sync", str(m.path)).returncode == 0
    status = m.status()
    assert status["uploads_done"] == 4 and status["local_files"] == 0  # b.txt empty z d2
    files = _server_files(account)
    assert sorted(files) == ["b.txt", "empty"]
    assert files["b.txt"].mode & 0o777 == 0o600 and files["b.txt"].file_size == 4
    other: Mount = make_mount(account)
    assert other.sh("cat b.txt sub/z sub/d2").stdout == "one\ny\nx\n"
    # an editor save over an existing file: the new copy is uploaded, then renamed over
    m.sh("printf 'v2\\n' > .b.swp && mv .b.swp b.txt")
    eventually(lambda: other.sh("cat b.txt", check=False).stdout == "v2\n", 8)


def test_cold_cat_of_a_folder_is_served_by_prefetch(make_mount, account: Account,
                                                    tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(60):
        (src / f"f{i:02d}").write_bytes(os.urandom(1000 + i))
    m: Mount = make_mount(account)
    m.sh(f"mkdir many && cp {src}/* many/")
    m.umount()
    again: Mount = make_mount(account)
    again.sh("ls -l many > /dev/null")
    assert again.status()["prefetched"] == 0  # a listing alone reads no file
    again.sh(f"cat many/* > {tmp_path}/back && cat {src}/* | cmp - {tmp_path}/back")
    status = again.status()
    assert status["prefetched"] >= 60 and status["small_fetches"] == 0, status


def test_sigkilled_daemon_staged_writes_are_uploaded_on_next_mount(
        make_mount, account: Account) -> None:
    first: Mount = make_mount(account)
    first.sh("echo old > existing.txt && mkdir d")
    first.umount()
    m: Mount = make_mount(account, "upload_delay=60")
    m.sh("echo changed > existing.txt && echo fresh > d/new.txt && head -c 300000 "
         "/dev/urandom > d/blob")
    digest = m.sh("md5sum d/blob").stdout.split()[0]
    assert m.pid is not None
    os.kill(m.pid, signal.SIGKILL)
    eventually(lambda: not _alive(m.pid or 0), 10)
    subprocess.run(["fusermount3", "-u", "-z", str(m.path)], capture_output=True)
    m.pid = None
    assert _server_files(account)["existing.txt"].file_size == 4  # not uploaded before
    again: Mount = make_mount(account, start=False)
    again.cache = m.cache  # same cache dir, another mount point
    again.start()
    assert again.cli("sync", str(again.path)).returncode == 0
    assert again.sh("cat existing.txt d/new.txt").stdout == "changed\nfresh\n"
    assert again.sh("md5sum d/blob").stdout.split()[0] == digest
    done = again.cli("status", str(again.path))
    assert done.stdout.count("recovered /") == 3, done.stdout
    staging = list((m.cache / "staging").rglob("*"))
    assert not [p for p in staging if p.is_file() and p.name != ".lock"], staging
