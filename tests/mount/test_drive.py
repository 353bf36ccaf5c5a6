"""The drive across mounts and accounts: shares, quota, a second mount, remounting."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from cloudgrpc_proto import cloud_storage_pb2 as pb
from tests.cluster import ADMIN_KEY, Account, Cluster
from tests.mount.conftest import MiB, Mount, eventually


def _file_id(account: Account, name: str) -> str:
    for f in account.ls().files:
        if f.filename == name:
            return f.file_id
    raise AssertionError(f"{name} not on the server")


def test_two_mounts_see_each_others_changes_within_2s(make_mount, account: Account) -> None:
    a: Mount = make_mount(account)
    b: Mount = make_mount(account)
    assert b.sh("ls").stdout.split() == ["Shared"]
    a.sh("echo one > shared.txt && mkdir folder")
    took = eventually(lambda: b.sh("cat shared.txt", check=False).stdout == "one\n", 2.0)
    assert took < 2.0
    b.sh("ls folder")
    a.sh("echo two > shared.txt")
    eventually(lambda: b.sh("cat shared.txt", check=False).stdout == "two\n", 2.0)
    b.sh("echo from-b > folder/x && mv shared.txt renamed.txt")
    eventually(lambda: a.sh("cat folder/x", check=False).stdout == "from-b\n", 2.0)
    eventually(lambda: sorted(a.sh("ls").stdout.split()) == ["Shared", "folder",
                                                             "renamed.txt"], 2.0)
    a.sh("rm renamed.txt")
    eventually(lambda: "renamed.txt" not in b.sh("ls").stdout, 2.0)
    eventually(lambda: "renamed.txt" in b.sh("ls .trash").stdout, 2.0)


def test_remount_with_empty_cache_keeps_everything(make_mount, account: Account,
                                                   tmp_path: Path) -> None:
    m: Mount = make_mount(account)
    data = os.urandom(5 * MiB + 7)
    (tmp_path / "d.bin").write_bytes(data)
    m.sh(f"mkdir -p x/y && cp {tmp_path}/d.bin x/y/d.bin && echo hi > x/note && "
         "chmod 600 x/note && ln -s y/d.bin x/link && touch -d '2010-01-01' x/note")
    m.umount()  # waits for the uploads
    again: Mount = make_mount(account)
    assert again.cache != m.cache and not again.cache.joinpath("chunks").exists() or \
        not any(again.cache.joinpath("chunks").iterdir())
    again.sh(f"cmp {tmp_path}/d.bin x/y/d.bin && cmp {tmp_path}/d.bin x/link")
    assert again.sh("stat -c '%a %y' x/note").stdout.startswith("600 2010-01-01")
    assert again.sh("cat x/note").stdout == "hi\n"


def test_read_only_share_refuses_writes(make_mount, mount_cluster: Cluster,
                                        account: Account) -> None:
    friend = mount_cluster.sign_up()
    account.upload(b"read me\n", name="ro.txt")
    account.upload(b"edit me\n", name="rw.txt")
    for name, perm in (("ro.txt", "read"), ("rw.txt", "write")):
        mount_cluster.files.ShareFile(pb.ShareFileRequest(
            session_token=account.token, file_id=_file_id(account, name),
            share_with_email=friend.email, permission=perm), timeout=10)
    m: Mount = make_mount(friend)
    assert sorted(m.sh("ls Shared").stdout.split()) == ["ro.txt", "rw.txt"]
    assert m.sh("cat Shared/ro.txt").stdout == "read me\n"
    with pytest.raises(PermissionError) as info:
        with open(m.path / "Shared" / "ro.txt", "a") as handle:
            handle.write("no")
    assert info.value.errno == errno.EACCES
    done = m.sh("echo x >> Shared/ro.txt", check=False)
    assert done.returncode != 0 and "Permission denied" in done.stderr
    m.sh("echo more >> Shared/rw.txt")
    assert m.cli("sync").returncode == 0
    assert account.download(_file_id(account, "rw.txt")) == b"edit me\nmore\n"
    owner: Mount = make_mount(account)
    assert owner.sh("cat rw.txt").stdout == "edit me\nmore\n"


def test_quota_exhaustion_gives_edquot(make_mount, mount_cluster: Cluster,
                                       account: Account) -> None:
    mount_cluster.admin.SetUserQuota(pb.SetUserQuotaRequest(
        admin_key=ADMIN_KEY, email=account.email, storage_bytes=2 * MiB), timeout=10)
    m: Mount = make_mount(account)
    assert m.sh("df -B1 --output=size . | tail -1").stdout.strip() == str(2 * MiB)
    m.sh("head -c 1000000 /dev/urandom > ok.bin")
    done = m.sh("head -c 3000000 /dev/urandom > big.bin", check=False)
    assert done.returncode != 0
    assert "Disk quota exceeded" in done.stderr or "No space left" in done.stderr
    fd = os.open(m.path / "direct.bin", os.O_WRONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError) as info:
            os.write(fd, b"\0" * (3 * MiB))
        assert info.value.errno in (errno.EDQUOT, errno.ENOSPC)
    finally:
        os.close(fd)
    assert m.cli("sync").returncode == 0
    # buying space (an operator raising the quota here) makes df grow
    mount_cluster.admin.SetUserQuota(pb.SetUserQuotaRequest(
        admin_key=ADMIN_KEY, email=account.email, storage_bytes=8 * MiB), timeout=10)
    assert m.sh("df -B1 --output=size . | tail -1").stdout.strip() == str(8 * MiB)
    m.sh("head -c 3000000 /dev/urandom > big.bin")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_uploads_staged_writes_before_exit(make_mount, account: Account,
                                                  sig: signal.Signals) -> None:
    m: Mount = make_mount(account, "upload_delay=1")
    m.sh("head -c 2000000 /dev/urandom > last.bin")
    digest = m.sh("md5sum last.bin").stdout.split()[0]
    assert m.pid is not None
    os.kill(m.pid, sig)
    eventually(lambda: not os.path.ismount(m.path), 30)
    m.pid = None
    again: Mount = make_mount(account)
    assert again.sh("md5sum last.bin").stdout.split()[0] == digest


@pytest.mark.slow
def test_gateway_down_gives_eio_quickly_then_reconnects(sqlite_cluster: Cluster,
                                                        tmp_path: Path) -> None:
    user = sqlite_cluster.sign_up()
    m = Mount(sqlite_cluster, user, tmp_path).start()
    try:
        m.sh("echo before > f.txt && mkdir d")
        assert m.cli("sync").returncode == 0
        assert sqlite_cluster.gateway is not None
        sqlite_cluster.gateway.stop()
        time.sleep(1.5)  # past the kernel's 1 s attribute timeout
        for cmd in ("stat nothing-here", "df .", "ls d", "echo x > new.txt"):
            start = time.monotonic()
            done = m.sh(f"timeout 60 {cmd}", check=False)
            took = time.monotonic() - start
            assert done.returncode not in (0, 124), (cmd, done.stdout, done.stderr)
            assert took < 20, (cmd, took)
        assert "Input/output error" in m.sh("df .", check=False).stderr
        sqlite_cluster.start_gateway()
        eventually(lambda: m.sh("cat f.txt", check=False).stdout == "before\n", 20)
        eventually(lambda: m.sh("echo after > g.txt", check=False).returncode == 0, 20)
        assert m.cli("sync").returncode == 0
        m.umount()
    finally:
        m.cleanup()


NOBODY = 65534


def _as_nobody(cmd: str) -> subprocess.CompletedProcess[str]:
    """Run a shell command as another local user (uid/gid 65534, no groups)."""
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                           "--clear-groups", "bash", "-c", cmd],
                          capture_output=True, text=True, timeout=60, cwd="/")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_allow_other_lets_other_users_in_subject_to_the_mode_bits(
        make_mount, account: Account) -> None:
    private: Mount = make_mount(account)
    refused = _as_nobody(f"ls {private.path}")
    assert refused.returncode != 0 and "Permission denied" in refused.stderr
    m: Mount = make_mount(account, "allow_other")
    m.sh("echo public > pub.txt && chmod 644 pub.txt && echo secret > priv.txt && "
         "chmod 600 priv.txt && mkdir drop closed && chmod 777 drop && chmod 700 closed")
    root = m.path
    assert _as_nobody(f"cat {root}/pub.txt").stdout == "public\n"
    for cmd in (f"cat {root}/priv.txt", f"echo x >> {root}/pub.txt", f"ls {root}/closed",
                f"touch {root}/new.txt", f"rm {root}/pub.txt", f"mv {root}/pub.txt {root}/p"):
        done = _as_nobody(cmd)
        assert done.returncode != 0 and "Permission denied" in done.stderr, cmd
    done = _as_nobody(f"echo mine > {root}/drop/n.txt && mkdir {root}/drop/sub && "
                      f"stat -c '%u %g %a' {root}/drop/n.txt")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:2] == [str(NOBODY), str(NOBODY)]
    assert m.sh("cat pub.txt drop/n.txt").stdout == "public\nmine\n"
    m.umount()
    again: Mount = make_mount(account)
    assert again.sh("stat -c '%u %g' drop/n.txt drop/sub").stdout.split() == [
        str(NOBODY)] * 4
    assert again.sh("stat -c '%a' priv.txt").stdout.strip() == "600"


@pytest.mark.slow
def test_mount_outlives_its_session_with_the_device_refresh_token(tmp_path: Path) -> None:
    """Sessions here last 3 s (24 h in production): the mount renews its session with the
    device refresh token and keeps working, reads, writes and the change feed alike."""
    c = Cluster(tmp_path / "c", env={"SESSION_TTL_S": "3", "SESSION_CACHE_S": "0"})
    c.start()
    try:
        ada = c.sign_up(device_name="box")
        assert ada.refresh_token
        m = Mount(c, ada, tmp_path)
        try:
            m.start()
            m.sh("echo one > a.txt && mkdir d")
            assert m.cli("sync").returncode == 0
            time.sleep(4)  # the first session is dead now
            with pytest.raises(grpc.RpcError) as err:
                c.files.ListFiles(pb.ListFilesRequest(session_token=ada.token), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            m.sh("echo two >> a.txt && mv d e && echo three > e/b.txt")
            assert m.cli("sync").returncode == 0
            assert sorted(m.sh("ls").stdout.split()) == ["Shared", "a.txt", "e"]
            # a change from another device still reaches the mount (the mount's refresh
            # token has rotated since: the one it started with is not ours to reuse)
            c.sign_in(ada.email, device_name="phone").upload(b"from elsewhere\n",
                                                             name="c.txt")
            eventually(lambda: m.sh("cat c.txt", check=False).stdout == "from elsewhere\n",
                       5)
            m.umount()
            again = Mount(c, c.sign_in(ada.email, device_name="box"), tmp_path).start()
            try:
                assert again.sh("cat a.txt e/b.txt").stdout == "one\ntwo\nthree\n"
            finally:
                again.cleanup()
        finally:
            m.cleanup()
    finally:
        c.stop()


def test_a_full_cluster_gives_enospc_and_keeps_the_data(tmp_path: Path) -> None:
    """Nodes out of room: the write's fsync fails with ENOSPC (not EDQUOT: the account has
    room), the data stays staged, and once an operator adds a node it goes up."""
    cluster = Cluster(tmp_path / "full", nodes=2, node_capacity_gb=0.012)
    cluster.start()
    m: Mount | None = None
    try:
        account = cluster.sign_up()
        (tmp_path / "m").mkdir()
        m = Mount(cluster, account, tmp_path / "m")
        m.start()
        m.sh("head -c 1000000 /dev/urandom > fits.bin && sync fits.bin")
        done = m.sh("head -c 30000000 /dev/urandom > big.bin && sync big.bin", check=False)
        assert done.returncode != 0 and "No space left on device" in done.stderr, done.stderr
        staged = m.sh("md5sum big.bin").stdout  # still readable, nothing lost
        assert m.sh("stat -c %s big.bin").stdout.strip() == "30000000"
        cluster.start_node("node3", capacity_gb=1.0)
        cluster.start_node("node4", capacity_gb=1.0)
        eventually(lambda: m is not None and m.cli("sync", "--timeout", "20").returncode == 0,
                   60.0)
        m.umount()
        again = Mount(cluster, account, tmp_path / "m")
        again.start()
        m = again
        assert again.sh("md5sum big.bin").stdout == staged
    finally:
        if m is not None:
            m.cleanup()
        cluster.stop()
