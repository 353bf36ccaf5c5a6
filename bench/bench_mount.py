"""Benchmark the CloudGrpc mount side by side with a local folder, sshfs and rclone mount.

Usage (as root, on a machine with FUSE; installs sshfs, rclone and openssh-server from the
distribution's packages when ``--install`` is given)::

    python bench/bench_mount.py [--install] [--size-mib 256] [--files 1000]
                                [--peers local,cloudgrpc,sshfs,rclone] [--rounds 1]

Every peer runs the same shell workloads in the same run, because figures on a small
machine swing from run to run while the ratios between peers hold:

- sequential write of a random file with ``dd bs=1M`` (as dd sees it), the same until
  settled (the file stored: ``cloudgrpc sync`` for CloudGrpc, rclone's upload queue empty
  by its remote control's ``vfs/stats``), and the same with ``conv=fsync`` (for CloudGrpc
  fsync returns once both copies of every chunk are on the nodes; for rclone the time runs
  until its upload queue is empty as well). rclone mounts ``rclone serve webdav`` with
  ``--vfs-cache-mode writes --vfs-write-back 10ms``, so it starts uploading at once;
- cold sequential read (after a remount with the cache emptied);
- 1,000 files of 4 KiB: create (until settled: uploads done), cold read, delete;
- cold ``ls -l`` of a folder of 1,000 entries;
- 500 mkdir then 500 rename, until settled (CloudGrpc answers them at once and sends them
  behind: the time runs until the gateway has them all).

Before each write-side workload the disks are synced, so no workload pays for the deferred
writes of the one before it (or of the previous peer). ``--rounds N`` runs every peer N
times, alternating, and reports medians. It prints a table of seconds and ratios to sshfs.
The cluster is the test harness's real one (gateway, three nodes, replication 2) on
loopback. For CloudGrpc it also reports the gateway's CPU seconds (utime + stime from
/proc) per GiB written through the mount, over the two sequential writes until settled.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MiB = 1024 * 1024


def sh(cmd: str, cwd: Path | None = None, env: dict[str, str] | None = None,
       check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True,
                          text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"$ {cmd}\n{done.stdout}{done.stderr}")
    return done


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def drop_page_cache() -> None:
    sh("sync; echo 3 > /proc/sys/vm/drop_caches", check=False)


class Peer:
    name = "peer"
    path: Path

    def setup(self) -> None: ...
    def settle(self, expect: dict[str, int] | None = None) -> None: ...
    def remount_cold(self) -> None: drop_page_cache()
    def teardown(self) -> None: ...
    def gateway_cpu(self) -> float | None: return None  # CloudGrpc's gateway, CPU seconds


class Local(Peer):
    name = "local"

    def __init__(self, work: Path) -> None:
        self.path = work / "local"

    def setup(self) -> None:
        self.path.mkdir()

    def settle(self, expect: dict[str, int] | None = None) -> None:
        sh("sync")


class CloudGrpc(Peer):
    name = "cloudgrpc"

    def __init__(self, work: Path) -> None:
        from tests.cluster import Cluster

        self.work = work
        # production heartbeats (the test harness beats every 0.5 s, which would be most
        # of the gateway CPU a write is charged with), as bench_transfer.py runs it
        self.cluster = Cluster(work / "cluster", node_capacity_gb=8.0,
                               env={"HEARTBEAT_INTERVAL_S": "5", "NODE_TIMEOUT_S": "30"})
        self.path = Path(f"/tmp/mnt-mount-bench-{uuid.uuid4().hex[:6]}")
        self.cache = work / "cgcache"
        self.env: dict[str, str] = {}

    def setup(self) -> None:
        from cloudgrpc_proto import cloud_storage_pb2 as pb
        from tests.cluster import ADMIN_KEY

        (self.work / "cluster").mkdir()
        self.cluster.start()
        account = self.cluster.sign_up()
        self.cluster.admin.SetUserQuota(pb.SetUserQuotaRequest(
            admin_key=ADMIN_KEY, email=account.email, storage_bytes=8 * 1024 * MiB),
            timeout=10)
        (self.work / "run").mkdir()
        self.env = {**os.environ, "CLOUDGRPC_SESSION_TOKEN": account.token,
                    "CLOUDGRPC_SERVER": self.cluster.address,
                    "XDG_RUNTIME_DIR": str(self.work / "run")}
        self.path.mkdir()
        self._mount()

    def _cli(self, *args: str) -> str:
        # the console script a user runs (``cloudgrpc sync`` is part of the timed settle)
        done = subprocess.run([str(Path(sys.executable).parent / "cloudgrpc"), *args],
                              env=self.env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(done.stderr + done.stdout)
        return done.stdout

    def _mount(self) -> None:
        self._cli("mount", str(self.path), "-o", f"cache_dir={self.cache}")

    def settle(self, expect: dict[str, int] | None = None) -> None:
        self._cli("sync", str(self.path))

    def gateway_cpu(self) -> float | None:
        from bench.measure import cpu_seconds

        gateway = self.cluster.gateway
        return cpu_seconds(gateway.popen.pid) if gateway is not None else None

    def remount_cold(self) -> None:
        self._cli("umount", str(self.path))
        shutil.rmtree(self.cache, ignore_errors=True)
        drop_page_cache()
        self._mount()

    def teardown(self) -> None:
        try:
            self._cli("umount", str(self.path))
        except RuntimeError:
            sh(f"fusermount3 -u -z {self.path}", check=False)
        self.cluster.stop()
        self.path.rmdir()


class Sshfs(Peer):
    name = "sshfs"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.backing = work / "sshfs-backing"
        self.path = Path(f"/tmp/mnt-mount-bench-sshfs-{uuid.uuid4().hex[:6]}")
        self.sshd: subprocess.Popen[bytes] | None = None
        self.port = 0

    def setup(self) -> None:
        from tests.cluster import free_port

        self.backing.mkdir()
        self.path.mkdir()
        keys = self.work / "ssh"
        keys.mkdir(mode=0o700)
        sh(f"ssh-keygen -q -t ed25519 -N '' -f {keys}/host && "
           f"ssh-keygen -q -t ed25519 -N '' -f {keys}/user && "
           f"cp {keys}/user.pub {keys}/authorized_keys && chmod 600 {keys}/authorized_keys")
        self.port = free_port()
        config = keys / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {keys}/host\n"
            f"AuthorizedKeysFile {keys}/authorized_keys\nPasswordAuthentication no\n"
            "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
            "Subsystem sftp internal-sftp\nPidFile none\n")
        os.makedirs("/run/sshd", exist_ok=True)
        self.sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                                     stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        self.keys = keys
        self._mount()

    def _mount(self) -> None:
        sh(f"sshfs -p {self.port} root@127.0.0.1:{self.backing} {self.path} "
           f"-o IdentityFile={self.keys}/user,StrictHostKeyChecking=no,"
           f"UserKnownHostsFile=/dev/null")

    def remount_cold(self) -> None:
        sh(f"fusermount3 -u {self.path}")
        drop_page_cache()
        self._mount()

    def teardown(self) -> None:
        sh(f"fusermount3 -u {self.path}", check=False)
        if self.sshd is not None:
            self.sshd.send_signal(signal.SIGTERM)
            self.sshd.wait(10)
        self.path.rmdir()


class Rclone(Peer):
    name = "rclone"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.backing = work / "rclone-backing"
        self.path = Path(f"/tmp/mnt-mount-bench-rclone-{uuid.uuid4().hex[:6]}")
        self.server: subprocess.Popen[bytes] | None = None
        self.mount: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.rc = ""  # its remote control, to read the upload queue

    def setup(self) -> None:
        from tests.cluster import free_port

        self.backing.mkdir()
        self.path.mkdir()
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.server = subprocess.Popen(["rclone", "serve", "webdav", str(self.backing),
                                        "--addr", f"127.0.0.1:{port}"],
                                       stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        self._mount()

    def _mount(self) -> None:
        from tests.cluster import free_port

        self.rc = f"127.0.0.1:{free_port()}"
        self.mount = subprocess.Popen(
            ["rclone", "mount", ":webdav:", str(self.path), "--webdav-url", self.url,
             "--vfs-cache-mode", "writes", "--vfs-write-back", "10ms",
             "--cache-dir", str(self.work / "rclone-cache"),
             "--rc", "--rc-addr", self.rc, "--rc-no-auth"],
            stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while not os.path.ismount(self.path) and time.monotonic() < deadline:
            time.sleep(0.1)

    def settle(self, expect: dict[str, int] | None = None) -> None:
        """Wait until rclone's upload queue is empty (``vfs/stats``) and the served folder
        holds what was written."""
        while True:
            stats = json.loads(sh(f"rclone rc --url http://{self.rc}/ vfs/stats").stdout)
            cache = stats.get("diskCache", {})
            if not cache.get("uploadsInProgress") and not cache.get("uploadsQueued"):
                break
            time.sleep(0.01)
        for rel, size in (expect or {}).items():
            target = self.backing / rel
            while not (target.exists() and target.stat().st_size == size):
                time.sleep(0.02)

    def remount_cold(self) -> None:
        self._umount()
        shutil.rmtree(self.work / "rclone-cache", ignore_errors=True)
        drop_page_cache()
        self._mount()

    def _umount(self) -> None:
        sh(f"fusermount3 -u {self.path}", check=False)
        if self.mount is not None:
            self.mount.wait(30)

    def teardown(self) -> None:
        self._umount()
        if self.server is not None:
            self.server.send_signal(signal.SIGTERM)
            self.server.wait(10)
        self.path.rmdir()


def quiesce() -> None:
    """Write back what earlier steps (or the previous peer) left dirty, so no workload pays
    for another's deferred disk writes."""
    sh("sync")
    time.sleep(0.5)


def run_peer(peer: Peer, src: Path, src2: Path, size: int, files: int,
             small: Path) -> dict[str, float]:
    r: dict[str, float] = {}
    d = peer.path
    quiesce()
    cpu_before = peer.gateway_cpu()
    started = time.perf_counter()
    r["write dd"] = timed(lambda: sh(f"dd if={src} of={d}/big bs=1M status=none"))
    peer.settle({"big": size})
    r["write settled"] = time.perf_counter() - started

    def write_fsync() -> None:
        sh(f"dd if={src2} of={d}/big2 bs=1M conv=fsync status=none")
        if isinstance(peer, Rclone):
            peer.settle({"big2": size})

    quiesce()
    r["write dd fsync"] = timed(write_fsync)
    peer.settle({"big2": size})
    cpu_after = peer.gateway_cpu()
    if cpu_before is not None and cpu_after is not None:
        r[GATEWAY_CPU] = (cpu_after - cpu_before) / (2 * size / (1024 * MiB))
    peer.remount_cold()
    r["cold seq read"] = timed(lambda: sh(f"dd if={d}/big of=/dev/null bs=1M status=none"))
    sizes = {f"small/f{i}": 4096 for i in range(files)}

    def create() -> None:
        sh(f"mkdir {d}/small && cp {small}/* {d}/small/")
        peer.settle(sizes)

    quiesce()
    r["create 1000x4K (settled)"] = timed(create)
    peer.remount_cold()
    r["cold ls -l 1000"] = timed(lambda: sh(f"ls -l {d}/small > /dev/null"))
    peer.remount_cold()
    r["cold read 1000x4K"] = timed(lambda: sh(f"cat {d}/small/* > /dev/null"))
    quiesce()
    r["delete 1000"] = timed(lambda: sh(f"rm -r {d}/small"))

    def dirs() -> None:
        sh(f"mkdir {d}/dirs && cd {d}/dirs && for i in $(seq 1 500); do mkdir d$i; done && "
           "for i in $(seq 1 500); do mv d$i r$i; done")
        peer.settle()

    quiesce()
    r["500 mkdir + 500 mv"] = timed(dirs)
    return r


def install() -> None:
    sh("apt-get install -y -q sshfs rclone openssh-server openssh-client > /dev/null")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--install", action="store_true")
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--peers", default="local,cloudgrpc,sshfs,rclone")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every peer this many times, alternating; report medians")
    args = parser.parse_args()
    if args.install:
        install()
    wanted = args.peers.split(",")
    available = {"local": True, "cloudgrpc": True,
                 "sshfs": bool(shutil.which("sshfs")) and os.path.exists("/usr/sbin/sshd"),
                 "rclone": bool(shutil.which("rclone"))}
    runs: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-mount-") as tmp:
        work = Path(tmp)
        size = args.size_mib * MiB
        src, src2 = work / "src.bin", work / "src2.bin"
        for path in (src, src2):
            sh(f"head -c {size} /dev/urandom > {path}")
        small = work / "smallsrc"
        small.mkdir()
        for i in range(args.files):
            (small / f"f{i}").write_bytes(os.urandom(4096))
        classes = {"local": Local, "cloudgrpc": CloudGrpc, "sshfs": Sshfs, "rclone": Rclone}
        for round_no in range(1, args.rounds + 1):
            for name in wanted:
                if not available.get(name):
                    if round_no == 1:
                        print(f"skipping {name}: not installed (use --install)",
                              file=sys.stderr)
                    continue
                home = work / f"{name}-{round_no}"
                home.mkdir()
                peer = classes[name](home)
                try:
                    peer.setup()
                    print(f"running {name} (round {round_no} of {args.rounds})...",
                          file=sys.stderr)
                    runs.setdefault(name, []).append(
                        run_peer(peer, src, src2, size, args.files, small))
                finally:
                    peer.teardown()
                    shutil.rmtree(home, ignore_errors=True)
    results = {name: {row: statistics.median(r[row] for r in done) for row in done[0]}
               for name, done in runs.items()}
    names = list(results)
    rows = [row for row in next(iter(results.values())) if row != GATEWAY_CPU] \
        if results else []
    if args.rounds > 1:
        print(f"\nmedian of {args.rounds} rounds; per round:")
        for name, done in runs.items():
            for row in done[0]:
                print(f"  {name:9} {row:26} " + " ".join(f"{r[row]:.2f}" for r in done))
    print(f"\n{args.size_mib} MiB file, {args.files} small files; seconds (lower is better),"
          " cloudgrpc/sshfs time ratio and the target (issue 16: cloudgrpc's time at most"
          " the peer's)\n")
    print("| workload | " + " | ".join(names) + " | cloudgrpc÷sshfs | target |")
    print("|---" * (len(names) + 3) + "|")
    for row in rows:
        cells = [f"{results[n][row]:.2f}" for n in names]
        ratio = ""
        peer, limit = TARGETS.get(row, ("sshfs", 0.0))
        target = f"<= {limit:g}x {peer}" if limit else ""
        if "cloudgrpc" in results and "sshfs" in results and results["sshfs"][row]:
            ratio = f"{results['cloudgrpc'][row] / results['sshfs'][row]:.2f}"
        if limit and "cloudgrpc" in results and peer in results and results[peer][row]:
            met = results["cloudgrpc"][row] <= limit * results[peer][row]
            target += " (met)" if met else " (NOT met)"
        print(f"| {row} | " + " | ".join(cells) + f" | {ratio} | {target} |")
    if GATEWAY_CPU in results.get("cloudgrpc", {}):
        cpu = results["cloudgrpc"][GATEWAY_CPU]
        print(f"\ncloudgrpc {GATEWAY_CPU}: {cpu:.2f} (target <= 0.3: "
              f"{'met' if cpu <= 0.3 else 'NOT met'})")
    return 0


GATEWAY_CPU = "gateway CPU s/GiB written"


# Issue 16's targets as time ratios: cloudgrpc's seconds <= factor x the peer's seconds.
TARGETS = {
    "write dd": ("sshfs", 1.0),
    "write settled": ("rclone", 1.0),
    "write dd fsync": ("sshfs", 1.0),
    "cold seq read": ("sshfs", 1.0),
    "create 1000x4K (settled)": ("sshfs", 1.0),
    "cold ls -l 1000": ("sshfs", 1.0),
    "cold read 1000x4K": ("sshfs", 1.0),
    "delete 1000": ("sshfs", 1.0),
    "500 mkdir + 500 mv": ("sshfs", 1.0),
}


if __name__ == "__main__":
    sys.exit(main())
