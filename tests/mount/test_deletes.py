"""Unlinks through the mount: queued, batched into DeleteFiles, ordered, never lost."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from cloudgrpc_proto import cloud_storage_pb2 as pb
from tests.cluster import Account, Cluster
from tests.mount.conftest import Mount, _alive, eventually


def _trash(account: Account) -> dict[str, pb.FileEntry]:
    reply = account.cluster.files.ListTrash(pb.ListTrashRequest(session_token=account.token))
    return {f.original_path: f for f in reply.files}


def _names(account: Account, folder_id: str = "") -> list[str]:
    listing = account.ls(folder_id)
    return sorted([d.name for d in listing.folders] + [f.filename for f in listing.files])


def test_rm_of_many_files_is_batched_and_lands_in_the_trash(mnt: Mount, account: Account,
                                                            tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(300):
        (src / f"f{i:03d}").write_bytes(os.urandom(4096))
    mnt.sh(f"mkdir tree loose && cp {src}/* tree/ && cp {src}/* loose/")
    assert mnt.cli("sync", str(mnt.path)).returncode == 0
    assert account.storage().trash_bytes == 0

    mnt.sh("rm -r tree")
    # rm has returned: its final rmdir waited for the queued deletes, so the server agrees
    assert _names(account) == ["loose"]
    assert account.storage().trash_bytes == 300 * 4096  # every file trashed, not just hidden
    assert mnt.sh("ls .trash").stdout.split() == ["tree"]

    mnt.sh("rm loose/*")
    assert mnt.sh("ls loose").stdout == ""
    # listing the trash sends what is still queued first
    assert len(mnt.sh("ls .trash").stdout.split()) == 301
    loose = next(d.folder_id for d in account.ls().folders if d.name == "loose")
    assert _names(account, loose) == []
    assert len(_trash(account)) == 300
    status = mnt.status()
    assert status["deletes_done"] == 600 and status["deletes_pending"] == 0, status
    assert status["delete_calls"] <= 200, status  # batched: far fewer calls than unlinks


def test_rm_then_reuse_the_name(make_mount, account: Account) -> None:
    # deletes are held back 30 s unless an operation needs them first
    m: Mount = make_mount(account, "delete_delay=30")
    m.sh("echo old > f && echo other > g && echo moved > h")
    assert m.cli("sync", str(m.path)).returncode == 0
    m.sh("rm f && echo new > f && test \"$(cat f)\" = new")
    m.sh("rm g; mv h g")
    assert m.sh("cat g").stdout == "moved\n"
    assert sorted(m.sh("ls").stdout.split()) == ["Shared", "f", "g"]
    assert m.cli("sync", str(m.path)).returncode == 0
    files = {f.filename: f for f in account.ls().files}
    assert sorted(files) == ["f", "g"]
    assert account.download(files["f"].file_id) == b"new\n"
    assert account.download(files["g"].file_id) == b"moved\n"
    trash = _trash(account)  # the old ones were trashed, not overwritten
    assert sorted(trash) == ["/f", "/g"]
    assert account.download(trash["/f"].file_id) == b"old\n"
    assert account.download(trash["/g"].file_id) == b"other\n"
    status = m.status()
    assert status["deletes_done"] == 2 and status["deletes_failed"] == 0, status


def test_delete_of_a_file_already_gone_is_done_not_failed(make_mount, account: Account
                                                          ) -> None:
    m: Mount = make_mount(account, "delete_delay=3")
    m.sh("echo x > gone.txt && echo y > kept.txt")
    assert m.cli("sync", str(m.path)).returncode == 0
    fid = next(f.file_id for f in account.ls().files if f.filename == "gone.txt")
    m.sh("rm gone.txt")
    status = m.status()
    assert status["deletes_pending"] == 1
    assert [d["path"] for d in status["deletes"]] == ["/gone.txt"]
    # another client trashes it first: the queued delete then finds it gone
    account.cluster.files.DeleteFile(pb.DeleteFileRequest(session_token=account.token,
                                                          file_id=fid))
    assert m.cli("sync", str(m.path)).returncode == 0
    status = m.status()
    assert status["deletes_done"] == 1 and status["deletes_failed"] == 0, status
    assert m.sh("ls").stdout.split() == ["Shared", "kept.txt"]
    assert "/gone.txt" in _trash(account)


def test_sigkilled_daemon_queued_deletes_are_sent_by_the_next_mount(make_mount,
                                                                    account: Account) -> None:
    first: Mount = make_mount(account)
    first.sh("echo x > doomed && echo y > kept")
    first.umount()
    m: Mount = make_mount(account, "delete_delay=60")
    m.sh("rm doomed")
    assert m.sh("ls").stdout.split() == ["Shared", "kept"]
    assert m.pid is not None
    os.kill(m.pid, signal.SIGKILL)
    eventually(lambda: not _alive(m.pid or 0), 10)
    subprocess.run(["fusermount3", "-u", "-z", str(m.path)], capture_output=True)
    m.pid = None
    assert _names(account) == ["doomed", "kept"]  # never sent
    again: Mount = make_mount(account, start=False)
    again.cache = m.cache  # same cache dir, another mount point
    again.start()
    assert again.sh("ls").stdout.split() == ["Shared", "kept"]
    assert again.cli("sync", str(again.path)).returncode == 0
    assert _names(account) == ["kept"]
    assert "/doomed" in _trash(account)
    assert again.status()["deletes_recovered"] == 1
    assert not list((m.cache / "staging").rglob("*.delete"))


@pytest.mark.slow
def test_gateway_down_queued_delete_retries_and_is_reported(sqlite_cluster: Cluster,
                                                            tmp_path: Path) -> None:
    user = sqlite_cluster.sign_up()
    m = Mount(sqlite_cluster, user, tmp_path, "delete_delay=30").start()
    try:
        m.sh("mkdir d && echo a > d/a && echo b > keep")
        assert m.cli("sync").returncode == 0
        start = time.monotonic()
        m.sh("rm d/a")  # queued (held back 30 s), not waited for
        assert time.monotonic() - start < 2
        assert sqlite_cluster.gateway is not None
        sqlite_cluster.gateway.stop()
        done = m.cli("sync", "--timeout", "5")  # tries now, fails, reports what is left
        assert done.returncode == 1 and "/d/a" in done.stdout, done.stdout
        status = m.status()
        assert status["deletes_retrying"] == 1 and status["deletes"][0]["error"], status
        done = m.cli("status", str(m.path))
        assert "delete retrying" in done.stdout and "/d/a" in done.stdout, done.stdout
        start = time.monotonic()
        done = m.sh("timeout 60 rmdir d", check=False)
        assert done.returncode not in (0, 124) and "Input/output error" in done.stderr, done
        assert time.monotonic() - start < 30
        sqlite_cluster.start_gateway()
        assert m.cli("sync", "--timeout", "60").returncode == 0
        assert "/d/a" in _trash(user)
        eventually(lambda: m.sh("rmdir d", check=False).returncode == 0, 20)
        assert _names(user) == ["keep"]
        m.umount()
    finally:
        m.cleanup()
