"""mkdir and folder renames through the mount: answered at once, sent in order, never lost.

The mount picks a new folder's id itself and queues the CreateFolder (and a folder's
MoveEntry) behind the queued deletes; ``delete_delay`` holds the queue back so these tests
can look at the server while the calls are still queued.
"""

from __future__ import annotations

import os
import signal
import subprocess

from cloudgrpc_proto import cloud_storage_pb2 as pb
from tests.cluster import Account
from tests.mount.conftest import Mount, _alive, eventually


def _tree(account: Account, folder_id: str = "", prefix: str = "") -> list[str]:
    """Every path under a folder on the server, folders ending in '/'."""
    listing = account.ls(folder_id)
    out = [prefix + f.filename for f in listing.files]
    for d in listing.folders:
        out.append(prefix + d.name + "/")
        out.extend(_tree(account, d.folder_id, prefix + d.name + "/"))
    return sorted(out)


def test_mkdir_and_folder_mv_answer_at_once_and_reach_the_server_in_order(
        make_mount, account: Account) -> None:
    account.upload(b"old\n", "f")
    account.cluster.files.CreateFolder(pb.CreateFolderRequest(
        session_token=account.token, name="gone"), timeout=10)
    m: Mount = make_mount(account, "delete_delay=30")  # the queue waits unless asked
    eventually(lambda: m.status()["watch"] == "connected", 10)
    # rmdir sends what is queued before it (the delete of f, then the mkdir f): in order
    m.sh("rm f && mkdir f && rmdir gone && mkdir gone")
    assert m.cli("sync", str(m.path)).returncode == 0
    assert _tree(account) == ["f/", "gone/"]
    assert m.sh("ls").stdout.split() == ["Shared", "f", "gone"]  # the listing is fresh
    m.sh("mkdir -p a/b/c && mv a/b x && mkdir x/c/d && mv x/c/d top && ls x/c")
    # answered without the gateway: it has none of it yet
    assert _tree(account) == ["f/", "gone/"]
    status = m.status()
    assert status["folder_changes_pending"] == 6, status
    done = m.sh("python3 -c 'import os; os.rename(\"a\", \"a/in\")'", check=False)
    # not below itself, even while queued (asked directly: mv checks that itself)
    assert done.returncode != 0 and "Invalid argument" in done.stderr, done
    assert m.sh("find . -path ./Shared -prune -o -path ./.trash -prune -o -type d -print "
                "| sort").stdout.split() == [
        ".", "./a", "./f", "./gone", "./top", "./x", "./x/c"]
    m.sh("echo hi > x/c/file")  # an upload into a queued folder sends the queue first
    assert m.cli("sync", str(m.path)).returncode == 0
    assert _tree(account) == ["a/", "f/", "gone/", "top/", "x/", "x/c/", "x/c/file"]
    x = next(d for d in account.ls().folders if d.name == "x")
    c = account.ls(x.folder_id).folders[0]
    assert account.download(account.ls(c.folder_id).files[0].file_id) == b"hi\n"
    status = m.status()
    assert status["folder_changes_pending"] == 0 and status["folder_changes_done"] == 8, status
    assert status["deletes_done"] == 1 and status["deletes_failed"] == 0, status
    # a second mount of the account sees the same tree
    other: Mount = make_mount(account)
    assert other.sh("ls x/c && ls -d f gone top").stdout.split() == [
        "file", "f", "gone", "top"]


def test_queued_mkdir_that_loses_its_name_is_undone(make_mount, account: Account) -> None:
    m: Mount = make_mount(account, "delete_delay=30")
    eventually(lambda: m.status()["watch"] == "connected", 10)
    m.sh("mkdir taken && ls -d taken")
    assert m.status()["folder_changes_pending"] == 1
    theirs = account.cluster.files.CreateFolder(pb.CreateFolderRequest(
        session_token=account.token, name="taken"), timeout=10).folder
    account.upload(b"theirs", "inside.txt", folder_id=theirs.folder_id)
    assert m.cli("sync", str(m.path)).returncode == 0
    status = m.status()
    failed = [d for d in status["deletes"] if d["kind"] == "mkdir"]
    assert failed and failed[0]["path"] == "/taken" and failed[0]["state"] == "failed", status
    shown = m.cli("status", str(m.path)).stdout
    assert "mkdir failed" in shown and "/taken" in shown and "exists" in shown, shown
    # the mount shows the server's folder now, not the one it made up
    eventually(lambda: m.sh("ls taken").stdout.split() == ["inside.txt"], 10)
    assert m.sh("cat taken/inside.txt").stdout == "theirs"
    assert _tree(account) == ["taken/", "taken/inside.txt"]


def test_sigkilled_daemon_queued_folder_changes_are_sent_by_the_next_mount(
        make_mount, account: Account) -> None:
    m: Mount = make_mount(account, "delete_delay=60")
    eventually(lambda: m.status()["watch"] == "connected", 10)
    m.sh("ls && mkdir keep && mkdir keep/inner && mv keep kept && ls kept")
    assert m.status()["folder_changes_pending"] == 3
    assert m.pid is not None
    os.kill(m.pid, signal.SIGKILL)
    eventually(lambda: not _alive(m.pid or 0), 10)
    subprocess.run(["fusermount3", "-u", "-z", str(m.path)], capture_output=True)
    m.pid = None
    assert _tree(account) == []  # never sent
    again: Mount = make_mount(account, start=False)
    again.cache = m.cache  # the same cache dir: its journal is adopted
    again.start()
    assert again.cli("sync", str(again.path)).returncode == 0
    assert _tree(account) == ["kept/", "kept/inner/"]
    eventually(lambda: again.sh("ls kept").stdout.split() == ["inner"], 10)
    assert again.status()["deletes_recovered"] == 3
    assert not list((m.cache / "staging").rglob("*.delete"))
