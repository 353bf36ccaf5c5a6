"""Data at rest and secrets in output (issue 13).

A real cluster and a real FUSE mount run with umask 000, under a folder every local user can
traverse, so the only thing keeping another user out of the database, keys, chunks and
staged writes is the modes the system gives them. Every file under the gateway's data dir,
the nodes' data dirs and the mount's own folders must be 0600 (or stricter) and every folder
0700; a second local user (uid 65534) must fail to read them. Runtime folders that belong to
someone else are refused; symlinks planted in the mount's staging area are not written
through. With ``LOG_LEVEL=DEBUG`` no token, code or key appears in any process's output
(except the one-time code on the gateway console when no mail is configured, by design).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from tests.cluster import Account, Cluster
from tests.mount.conftest import Mount, _fuse_available

MiB = 1024 * 1024
NOBODY = 65534
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
NEEDS_FUSE = pytest.mark.skipif(bool(_fuse_available()), reason=_fuse_available() or "fuse")


def _as_nobody(cmd: str) -> subprocess.CompletedProcess[str]:
    """Run a shell command as another local user (uid/gid 65534, no groups)."""
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                           "--clear-groups", "bash", "-c", cmd],
                          capture_output=True, text=True, timeout=60, cwd="/")


class KeyFileCluster(Cluster):
    """A cluster whose gateway generates its admin key and cluster secret (as the README's
    setup does) instead of taking them from the environment; the test reads the key file."""

    def __init__(self, root: Path, database_url: str, **kwargs: object) -> None:
        env = {"ADMIN_KEY": "", "CLUSTER_SECRET": "", **kwargs.pop("env", {})}  # type: ignore[dict-item]
        super().__init__(root, database_url=database_url, env=env, **kwargs)  # type: ignore[arg-type]

    @property
    def data_dir(self) -> Path:
        return self.root / "gateway"

    def key(self, name: str) -> str:
        return (self.data_dir / name).read_text().strip()

    def status(self) -> pb.SystemStatusResponse:
        return self.admin.GetSystemStatus(
            pb.SystemStatusRequest(admin_key=self.key("admin_key")), timeout=10)


class UmaskMount(Mount):
    """A mount driven by the real CLI, whose processes run with the given umask."""

    umask = 0

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cloudgrpc_fusefs.mount_cli", *args],
                              env=self.env, capture_output=True, text=True, timeout=timeout,
                              umask=self.umask)

    def try_start(self) -> subprocess.CompletedProcess[str]:
        """Mount, expecting a refusal; a mount that starts anyway is cleaned up later."""
        done = self.cli("mount", str(self.path), "-o", f"cache_dir={self.cache}", timeout=60)
        if done.returncode == 0:
            self.pid = int(done.stdout.split("(pid ")[1].split(",")[0])
        return done

    @property
    def runtime(self) -> Path:
        return self.work / "run" / "cloudgrpc"

    def staging(self) -> Path:
        from cloudgrpc_fusefs.control import mount_key

        return self.cache / "staging" / mount_key(str(self.path))


@pytest.fixture
def open_root() -> Iterator[Path]:
    """A folder every local user may traverse (pytest's own tmp tree is 0700, which would
    make the second-user checks pass whatever our modes are)."""
    root = Path(tempfile.mkdtemp(prefix="cloudgrpc-at-rest-", dir="/tmp"))
    os.chmod(root, 0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _db_url(database_url: str, root: Path) -> str:
    return f"sqlite:///{root / 'gateway' / 'cloudgrpc.db'}" \
        if database_url.startswith("sqlite") else database_url


def _loose_entries(*roots: Path) -> list[str]:
    """Every file not 0600-or-stricter and every folder not 0700 under ``roots`` (and the
    roots themselves), or not ours."""
    bad = []
    for top in roots:
        for folder, dirs, files in os.walk(top):
            entries = [(folder, True)] if folder == str(top) else []
            entries += [(os.path.join(folder, d), True) for d in dirs]
            entries += [(os.path.join(folder, f), False) for f in files]
            for path, is_dir in entries:
                info = os.lstat(path)
                mode = stat.S_IMODE(info.st_mode)
                if info.st_uid != os.geteuid():
                    bad.append(f"{path} uid {info.st_uid}")
                elif stat.S_ISLNK(info.st_mode):
                    bad.append(f"{path} is a symlink")
                elif is_dir and mode != 0o700:
                    bad.append(f"{path} folder {oct(mode)}")
                elif not is_dir and mode & 0o177:
                    bad.append(f"{path} file {oct(mode)}")
    return bad


def _files(root: Path, pattern: str = "*") -> list[Path]:
    return [p for p in root.rglob(pattern) if p.is_file() and not p.is_symlink()]


# --- every file private, whatever the umask ----------------------------------------------------


@NEEDS_FUSE
def test_everything_written_is_private_under_umask_000(
        open_root: Path, database_url: str) -> None:
    cluster = KeyFileCluster(open_root, _db_url(database_url, open_root), umask=0)
    work = open_root / "client"
    work.mkdir()
    os.chmod(work, 0o755)
    mount: UmaskMount | None = None
    try:
        cluster.start()
        gateway_dir = cluster.data_dir
        node_dirs = [cluster.node_dir(name) for name in cluster.nodes]
        ada = cluster.sign_up()
        big = os.urandom(6 * MiB)
        uploaded = ada.upload(big, name="big.bin")
        assert ada.download(uploaded.file_id) == big

        mount = UmaskMount(cluster, ada, work, "upload_delay=10")
        mount.start()
        # A read through the mount lands in its chunk cache.
        assert mount.sh("sha256sum big.bin").stdout.split()[0] == \
            hashlib.sha256(big).hexdigest()
        # A write through the mount waits in staging (upload_delay) with its journal.
        mount.sh("head -c 300000 /dev/urandom > staged.bin && echo note > note.txt")
        staging = mount.staging()
        staged = [p for p in _files(staging) if re.fullmatch(r"\d+-[0-9a-f]{10}", p.name)]
        journals = _files(staging, "*.journal")
        cached = _files(mount.cache / "chunks")
        chunks = [p for d in node_dirs for p in _files(d / "chunks")]
        keys = [gateway_dir / "admin_key", gateway_dir / "cluster_secret",
                gateway_dir / "otp_key"]
        database = [gateway_dir / "cloudgrpc.db", gateway_dir / "cloudgrpc.db-wal",
                    gateway_dir / "cloudgrpc.db-shm"] if database_url.startswith("sqlite") \
            else []
        assert staged and journals, sorted(staging.iterdir())
        assert cached and chunks
        for path in keys + database + [mount.runtime / next(
                p.name for p in mount.runtime.iterdir() if p.name.endswith(".sock"))]:
            assert os.path.lexists(path), path

        loose = _loose_entries(gateway_dir, *node_dirs, mount.cache, mount.runtime)
        assert not loose, "\n".join(loose)

        if os.geteuid() == 0:
            control = open_root / "readable-by-anyone.txt"
            control.write_text("anyone\n")
            control.chmod(0o644)
            # The tree is open to the other user: only our modes keep them out.
            assert _as_nobody(f"cat {control}").stdout == "anyone\n"
            secret_files = keys + database + staged + journals + cached[:3] + chunks[:3]
            for path in secret_files:
                done = _as_nobody(f"cat {path} > /dev/null")
                assert done.returncode != 0 and "Permission denied" in done.stderr, path
            for folder in (gateway_dir, *node_dirs, mount.cache, staging, mount.runtime):
                done = _as_nobody(f"ls {folder}")
                assert done.returncode != 0 and "Permission denied" in done.stderr, folder

        assert mount.cli("sync").returncode == 0
        listing = {f.filename for f in ada.ls().files}
        assert {"big.bin", "staged.bin", "note.txt"} <= listing
        mount.umount()
        mount = None
        loose = _loose_entries(gateway_dir, *node_dirs, work / "run" / "cloudgrpc")
        assert not loose, "\n".join(loose)
        logs = "".join(p.read_text(errors="replace") for p in _files(work / "run", "*.log"))
        assert logs and ada.token not in logs
    finally:
        if mount is not None:
            mount.cleanup()
        cluster.stop()


def test_a_gateway_data_dir_left_loose_by_an_earlier_version_is_tightened(
        open_root: Path) -> None:
    """A data dir, database and key file written 0755/0644 by an earlier version."""
    gateway_dir = open_root / "gateway"
    gateway_dir.mkdir(mode=0o755)
    db = sqlite3.connect(gateway_dir / "cloudgrpc.db")
    db.execute("CREATE TABLE leftover (x)")
    db.commit()
    db.close()
    os.chmod(gateway_dir / "cloudgrpc.db", 0o644)
    (gateway_dir / "admin_key").write_text("an-old-admin-key\n")
    os.chmod(gateway_dir / "admin_key", 0o644)
    cluster = KeyFileCluster(open_root, f"sqlite:///{gateway_dir / 'cloudgrpc.db'}",
                             nodes=0, umask=0)
    try:
        cluster.start()
        assert cluster.key("admin_key") == "an-old-admin-key"  # kept, only tightened
        assert cluster.status().online_nodes == 0  # and it is the key in use
        loose = _loose_entries(gateway_dir)
        assert not loose, "\n".join(loose)
    finally:
        cluster.stop()


def test_a_node_store_left_loose_by_an_earlier_version_is_tightened_once(
        open_root: Path) -> None:
    from cloudgrpc_node.chunk_store import ChunkStore

    data = b"a chunk stored by an earlier version"
    sha = hashlib.sha256(data).hexdigest()
    root = open_root / "node_storage_node1"
    old = root / "chunks" / sha[:2] / sha[2:4] / sha
    old.parent.mkdir(parents=True)
    for folder in (root, root / "chunks", old.parent.parent, old.parent):
        os.chmod(folder, 0o755)
    old.write_bytes(data)
    os.chmod(old, 0o644)
    old_mask = os.umask(0)
    try:
        store = ChunkStore(root, 10 * MiB)
        assert store.get(sha) == data
        fresh = b"a chunk stored now"
        store.put(hashlib.sha256(fresh).hexdigest(), fresh)
        store.quarantine(sha)
    finally:
        os.umask(old_mask)
    loose = _loose_entries(root)
    assert not loose, "\n".join(loose)
    # Tightened once: a later start does not walk the store again.
    os.chmod(root / "chunks", 0o750)
    ChunkStore(root, 10 * MiB)
    assert stat.S_IMODE(os.stat(root / "chunks").st_mode) == 0o700  # the known folders, still
    assert (root / ".private-modes").exists()


# --- runtime folders of another user, symlinks --------------------------------------------------


def _run_gateway(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cloudgrpc_server.app"], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


@AS_ROOT
def test_runtime_folders_of_another_user_are_refused(open_root: Path) -> None:
    foreign = open_root / "foreign"
    foreign.mkdir()
    os.chown(foreign, NOBODY, NOBODY)
    env = {**os.environ, "DATA_DIR": str(foreign), "GRPC_SERVER_HOST": "127.0.0.1",
           "GRPC_SERVER_PORT": "0", "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)
    gateway = _run_gateway(env, open_root)
    assert gateway.returncode != 0, gateway.stdout
    lines = gateway.stderr.strip().splitlines()
    assert len(lines) == 1 and str(foreign) in lines[0] and "belongs to uid 65534" in lines[0], \
        gateway.stderr
    assert list(foreign.iterdir()) == []  # nothing was written there

    node = subprocess.run(
        [sys.executable, "-m", "cloudgrpc_node.app", "node1", "127.0.0.1", "0", "1",
         "--gateway", "127.0.0.1:9", "--data-dir", str(foreign)],
        env={**os.environ, "CLUSTER_SECRET": "x", "PYTHONUNBUFFERED": "1"},
        capture_output=True, text=True, timeout=60, cwd=open_root)
    assert node.returncode != 0
    lines = node.stderr.strip().splitlines()
    assert len(lines) == 1 and str(foreign) in lines[0] and "belongs to uid 65534" in lines[0], \
        node.stderr
    assert list(foreign.iterdir()) == []

    # The mount's runtime folder (where its control socket lives) and its cache folder.
    run = open_root / "run"
    (run / "cloudgrpc").mkdir(parents=True)
    os.chown(run / "cloudgrpc", NOBODY, NOBODY)
    status = subprocess.run([sys.executable, "-m", "cloudgrpc_fusefs.mount_cli", "status"],
                            env={**os.environ, "XDG_RUNTIME_DIR": str(run)},
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 1
    assert status.stderr.strip().splitlines() == [
        f"cloudgrpc: {run / 'cloudgrpc'} belongs to uid {NOBODY}, not to this user (0): "
        "refusing to keep private data there"]
    assert list((run / "cloudgrpc").iterdir()) == []


@AS_ROOT
@NEEDS_FUSE
def test_a_mount_refuses_a_cache_folder_of_another_user(
        open_root: Path, sqlite_cluster: Cluster) -> None:
    ada = sqlite_cluster.sign_up()
    work = open_root / "client"
    work.mkdir()
    mount = UmaskMount(sqlite_cluster, ada, work)
    mount.cache.mkdir()
    os.chown(mount.cache, NOBODY, NOBODY)
    try:
        done = mount.try_start()
        assert done.returncode != 0
        assert f"{mount.cache} belongs to uid {NOBODY}" in done.stderr, done.stderr
        assert list(mount.cache.iterdir()) == []
        assert not os.path.ismount(mount.path)
    finally:
        mount.cleanup()


@NEEDS_FUSE
def test_a_symlink_in_place_of_the_staging_folder_is_refused(
        open_root: Path, sqlite_cluster: Cluster) -> None:
    ada = sqlite_cluster.sign_up()
    work = open_root / "client"
    work.mkdir()
    victim = open_root / "victim-dir"
    victim.mkdir()
    mount = UmaskMount(sqlite_cluster, ada, work)
    mount.staging().parent.mkdir(parents=True, mode=0o700)
    mount.staging().symlink_to(victim)
    try:
        done = mount.try_start()
        assert done.returncode != 0
        assert f"{mount.staging()} is a symlink" in done.stderr, done.stderr
        assert list(victim.iterdir()) == []
        assert not os.path.ismount(mount.path)
    finally:
        mount.cleanup()


@NEEDS_FUSE
def test_journals_are_never_written_through_a_planted_symlink(
        open_root: Path, sqlite_cluster: Cluster) -> None:
    ada = sqlite_cluster.sign_up()
    work = open_root / "client"
    work.mkdir()
    victims = [open_root / "victim-journal", open_root / "victim-tmp"]
    for victim in victims:
        victim.write_text("precious\n")
    mount = UmaskMount(sqlite_cluster, ada, work, "upload_delay=8")
    mount.start()
    try:
        mount.sh("echo one > f.txt")
        journals = _files(mount.staging(), "*.journal")
        assert len(journals) == 1, sorted(mount.staging().iterdir())
        journal = journals[0]
        journal.unlink()
        journal.symlink_to(victims[0])  # in place of the journal
        journal.with_name(journal.name + ".tmp").symlink_to(victims[1])  # its old temp name
        mount.sh("echo two >> f.txt")  # the journal is written again
        assert mount.cli("sync").returncode == 0
        for victim in victims:
            assert victim.read_text() == "precious\n", victim
        assert mount.sh("cat f.txt").stdout == "one\ntwo\n"
        mount.umount()
    finally:
        mount.cleanup()
    (f,) = [f for f in ada.ls().files if f.filename == "f.txt"]
    assert ada.download(f.file_id) == b"one\ntwo\n"


@NEEDS_FUSE
def test_crash_recovery_does_not_upload_through_a_symlinked_staged_copy(
        open_root: Path, sqlite_cluster: Cluster) -> None:
    """A journal left in a staging dir whose copy is a symlink to another file: the next
    mount must not upload that file's content into the account."""
    ada = sqlite_cluster.sign_up()
    work = open_root / "client"
    work.mkdir()
    secret = open_root / "someone-elses-secret.txt"
    secret.write_text("top secret\n")
    mount = UmaskMount(sqlite_cluster, ada, work)
    dead = mount.cache / "staging" / "0123456789abcdef"  # a killed daemon's staging dir
    dead.mkdir(parents=True, mode=0o700)
    copy = dead / "7-0123456789"
    copy.symlink_to(secret)
    root_id = ada.ls().folder.folder_id
    (dead / (copy.name + ".journal")).write_text(json.dumps({
        "account": root_id, "entry_id": "", "parent_id": root_id, "name": "stolen.txt",
        "mode": 0o100644, "uid": 0, "gid": 0, "mtime_ns": 0, "base_version": 0,
        "path": "/stolen.txt", "copy": copy.name}))
    mount.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            status = mount.status()
            if status.get("recovered") and not status.get("recovering"):
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert secret.read_text() == "top secret\n"
        mount.umount()
    finally:
        mount.cleanup()
    names = {f.filename for f in ada.ls().files}
    assert "stolen.txt" not in names
    for f in ada.ls().files:
        assert ada.download(f.file_id) != b"top secret\n"


# --- no secret in any output ---------------------------------------------------------------------


def _console_code(cluster: Cluster, email: str, after: int) -> str:
    assert cluster.gateway is not None
    rx = re.compile(rf"\[OTP\] code for {re.escape(email)}: (\d{{6}})")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [m.group(1) for line in cluster.gateway.lines[after:]
                 if (m := rx.search(line))]
        if found:
            return found[-1]
        time.sleep(0.05)
    raise AssertionError(f"no console code for {email}")


def _sign_up_on_console(cluster: Cluster, secrets: dict[str, str], label: str) -> Account:
    assert cluster.gateway is not None
    email = f"{label}-{uuid.uuid4().hex[:6]}@example.com"
    seen = len(cluster.gateway.lines)
    cluster.auth.SendOTP(pb.SendOTPRequest(email=email), timeout=10)
    code = _console_code(cluster, email, seen)
    verified = cluster.auth.VerifyOTP(pb.VerifyOTPRequest(email=email, otp=code), timeout=10)
    reply = cluster.auth.Enroll(pb.EnrollRequest(
        email=email, full_name=label, device_name=f"{label}-box",
        verification_token=verified.verification_token), timeout=10)
    assert reply.session_token and reply.refresh_token
    secrets[f"{label} code"] = code
    secrets[f"{label} verification token"] = verified.verification_token
    secrets[f"{label} session token"] = reply.session_token
    secrets[f"{label} refresh token"] = reply.refresh_token
    return Account(cluster, email, reply.session_token, reply.user_id, reply.refresh_token)


def test_no_secret_reaches_any_log(open_root: Path, database_url: str) -> None:
    cluster = KeyFileCluster(open_root, _db_url(database_url, open_root),
                             env={"LOG_LEVEL": "DEBUG", "SMTP_HOST": ""})
    secrets: dict[str, str] = {}
    try:
        cluster.start()
        secrets["admin key"] = cluster.key("admin_key")
        secrets["cluster secret"] = cluster.key("cluster_secret")
        secrets["otp key"] = cluster.key("otp_key")
        ada = _sign_up_on_console(cluster, secrets, "ada")
        bob = _sign_up_on_console(cluster, secrets, "bob")
        data = os.urandom(3 * MiB)
        up = ada.upload(data, name="shared.bin")
        assert ada.download(up.file_id) == data
        chunks = cluster.files.GetFileChunks(pb.GetFileChunksRequest(
            session_token=ada.token, file_id=up.file_id, with_sources=True), timeout=10)
        for i, source in enumerate(chunks.sources):
            if not source.read_token:
                continue
            secrets[f"read token {i}"] = source.read_token
            with grpc.insecure_channel(source.addresses[0]) as channel:
                got = pb_grpc.ChunkServiceStub(channel).GetChunk(pb.GetChunkRequest(
                    sha256=source.sha256, read_token=source.read_token), timeout=10)
                assert got.data
        shared = cluster.files.ShareFile(pb.ShareFileRequest(
            session_token=ada.token, file_id=up.file_id, share_with_email=bob.email,
            permission="read"), timeout=10)
        assert shared.success, shared.message
        secrets["share token"] = shared.share_token
        assert bob.download(up.file_id) == data
        renewed = cluster.auth.RefreshSession(
            pb.RefreshSessionRequest(refresh_token=ada.refresh_token), timeout=10)
        assert renewed.session_token
        secrets["renewed session token"] = renewed.session_token
        secrets["renewed refresh token"] = renewed.refresh_token
        cluster.auth.Logout(pb.LogoutRequest(
            session_token=renewed.session_token,
            refresh_token=renewed.refresh_token or ada.refresh_token), timeout=10)
        with pytest.raises(grpc.RpcError):
            Account(cluster, ada.email, renewed.session_token, ada.user_id).ls()
        time.sleep(1.0)  # heartbeats and the event writer: their lines are in too
        secrets = {k: v for k, v in secrets.items() if v}
        assert cluster.gateway is not None
        outputs = {"gateway": cluster.gateway.lines,
                   **{name: proc.lines for name, proc in cluster.nodes.items()}}
        assert any("DEBUG" in line for line in cluster.gateway.lines)  # the level took
        leaks = []
        for who, lines in outputs.items():
            for line in lines:
                for what, value in secrets.items():
                    if value in line and not (
                            who == "gateway" and what.endswith(" code")
                            and line.startswith("[OTP] code for ")):
                        leaks.append(f"{what} in {who}: {line.strip()[:200]}")
        assert not leaks, "\n".join(leaks)
        engine = sa.create_engine(cluster.database_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT * FROM events")).fetchall()
        finally:
            engine.dispose()
        assert rows
        dump = repr(rows)
        for what, value in secrets.items():
            assert value not in dump, f"{what} in the events table"
    finally:
        cluster.stop()


# --- the session kept by the clients ------------------------------------------------------------


def test_the_keyring_file_the_tests_use_is_private_under_umask_000(
        open_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cloudgrpc_proto.session_store import Session, SessionStore, SessionStoreError

    data_home = open_root / "share"  # missing: created by the store
    monkeypatch.setenv("XDG_DATA_HOME", str(data_home))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    session = Session(email="ada@example.com", user_id="u1", session_token="s-" + "x" * 40,
                      refresh_token="r-" + "y" * 40)
    old_mask = os.umask(0)
    try:
        store = SessionStore("127.0.0.1:1")
        store.save(session)
        path = Path(store.backend.file_path)
        assert path.is_relative_to(data_home)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert not _loose_entries(data_home)
        assert store.load() is not None and store.load().session_token == session.session_token

        # A symlink planted in place of the file is refused, not written through.
        victim = open_root / "victim.cfg"
        victim.write_text("precious\n")
        path.unlink()
        path.symlink_to(victim)
        with pytest.raises(SessionStoreError, match="symlink"):
            SessionStore("127.0.0.1:1").save(session)
        assert victim.read_text() == "precious\n"
    finally:
        os.umask(old_mask)
    path.unlink()
    store = SessionStore("127.0.0.1:1")
    store.save(session)
    if os.geteuid() == 0:
        os.chmod(data_home, 0o755)
        os.chmod(path.parent, 0o755)  # opened up by hand: the file's own mode still holds
        done = _as_nobody(f"cat {path}")
        assert done.returncode != 0 and "Permission denied" in done.stderr
        assert _as_nobody(f"ls {path.parent}").returncode == 0  # it was reachable
    store.save(session)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700  # tightened again
