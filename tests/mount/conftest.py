"""Fixtures for the end-to-end mount tests: one real cluster, real FUSE mounts, shell commands.

The cluster (gateway, three nodes, SMTP sink) is shared by the whole module set to keep the
suite fast; every test signs up its own account, so tests cannot see each other's files.
Mounts go through the real CLI in background mode (``python -m cloudgrpc_fusefs.mount_cli
mount``), live under ``/tmp/mnt-mount-*`` and are unmounted (and their daemon stopped by
PID) when the test ends.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import Account, Cluster

MiB = 1024 * 1024


def _fuse_available() -> str:
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if shutil.which("fusermount3") is None:
        return "no fusermount3"
    try:
        import pyfuse3  # noqa: F401
    except ImportError:
        return "pyfuse3 not installed"
    return ""


_why = _fuse_available()
pytestmark = pytest.mark.skipif(bool(_why), reason=_why)


@pytest.fixture(scope="session")
def mount_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if _why:
        pytest.skip(_why)
    c = Cluster(tmp_path_factory.mktemp("mount-cluster"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture
def account(mount_cluster: Cluster) -> Account:
    return mount_cluster.sign_up()


class Mount:
    """One background mount of an account, driven with shell commands."""

    def __init__(self, cluster: Cluster, account: Account, work: Path,
                 options: str = "") -> None:
        self.cluster = cluster
        self.account = account
        self.work = work
        self.path = Path(f"/tmp/mnt-mount-{uuid.uuid4().hex[:10]}")
        self.path.mkdir()
        self.cache = work / f"cache-{uuid.uuid4().hex[:6]}"
        self.options = options
        self.env = {
            **os.environ,
            "CLOUDGRPC_SESSION_TOKEN": account.token,
            "XDG_RUNTIME_DIR": str(work / "run"),
            "CLOUDGRPC_SERVER": cluster.address,
        }
        if account.refresh_token:
            self.env["CLOUDGRPC_REFRESH_TOKEN"] = account.refresh_token
        (work / "run").mkdir(exist_ok=True)
        self.pid: int | None = None

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cloudgrpc_fusefs.mount_cli", *args],
                              env=self.env, capture_output=True, text=True, timeout=timeout)

    def start(self) -> Mount:
        opts = f"cache_dir={self.cache}" + (f",{self.options}" if self.options else "")
        done = self.cli("mount", str(self.path), "-o", opts, timeout=60)
        assert done.returncode == 0, done.stderr + done.stdout
        self.pid = int(done.stdout.split("(pid ")[1].split(",")[0])
        return self

    def sh(self, cmd: str, check: bool = True, timeout: float = 120
           ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(["bash", "-c", cmd], cwd=self.path, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        if check:
            assert done.returncode == 0, f"$ {cmd}\n{done.stdout}{done.stderr}"
        return done

    def status(self) -> dict[str, Any]:
        """What ``.cloudgrpc-status`` says (uploads, deletes, cache and read counters)."""
        return json.loads(self.sh("cat .cloudgrpc-status").stdout)

    def umount(self) -> None:
        if self.pid is None:
            return
        done = self.cli("umount", str(self.path), timeout=180)
        if done.returncode != 0:
            subprocess.run(["fusermount3", "-u", "-z", str(self.path)], capture_output=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _alive(self.pid):
            time.sleep(0.05)
        if _alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)
        self.pid = None
        assert done.returncode == 0, done.stderr + done.stdout

    def cleanup(self) -> None:
        if self.pid is not None:
            subprocess.run(["fusermount3", "-u", "-z", str(self.path)], capture_output=True)
            if _alive(self.pid):
                os.kill(self.pid, signal.SIGTERM)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and _alive(self.pid):
                    time.sleep(0.05)
                if _alive(self.pid):
                    os.kill(self.pid, signal.SIGKILL)
            self.pid = None
        try:
            self.path.rmdir()
        except OSError:
            pass

    def log(self) -> str:
        logs = list((self.work / "run" / "cloudgrpc").glob("*.log"))
        return "\n".join(p.read_text(errors="replace")[-4000:] for p in logs)


def eventually(check: Callable[[], bool], within: float) -> float:
    """Seconds until ``check()`` holds; fails the test after ``within`` seconds."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        if check():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"not within {within}s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def make_mount(mount_cluster: Cluster, tmp_path: Path) -> Iterator:
    made: list[Mount] = []

    def make(account: Account, options: str = "", start: bool = True) -> Mount:
        m = Mount(mount_cluster, account, tmp_path, options)
        made.append(m)
        return m.start() if start else m

    yield make
    for m in made:
        m.cleanup()


@pytest.fixture
def mnt(make_mount, account: Account) -> Mount:  # type: ignore[no-untyped-def]
    return make_mount(account)
