"""The mount daemon: sign in, mount, serve, and shut down without losing staged writes.

Shutdown paths all end the same way: ``fusermount3 -u`` (or ``cloudgrpc umount``) ends
pyfuse3's loop; SIGTERM/SIGINT first wait for the upload queue and then unmount. Either
way the queue (and the queued deletes, deleter.py) is drained before the process exits, and
whatever could not be uploaded is logged by path with its staging copy left on disk (a
delete not sent keeps its journal, which the next mount sends).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyfuse3
import trio

from cloudgrpc_proto import errors
from cloudgrpc_proto.client import CloudClient, not_signed_in
from cloudgrpc_proto.memory import reuse_chunk_buffers
from cloudgrpc_proto.private_files import private_dir, tighten_tree
from cloudgrpc_proto.retry import RetryPolicy

from . import control
from .filesystem import CloudFS, PyfuseKernel
from .reader import cache_home
from .vfs import VFS, Options

log = logging.getLogger(__name__)

ENV_TOKEN = "CLOUDGRPC_SESSION_TOKEN"
ENV_REFRESH = "CLOUDGRPC_REFRESH_TOKEN"
CALL_TIMEOUT = 10.0
DRAIN_TIMEOUT = 600.0


@dataclass
class MountConfig:
    mountpoint: str
    server: str | None = None
    fuse_options: set[str] = field(default_factory=set)
    cache_dir: Path | None = None
    options: Options = field(default_factory=Options)
    debug: bool = False
    ready_fd: int | None = None


def make_client(server: str | None) -> CloudClient:
    """A client with the keyring session (or ``$CLOUDGRPC_SESSION_TOKEN`` for scripts)."""
    kwargs: dict[str, Any] = dict(timeout=CALL_TIMEOUT, retry=RetryPolicy(attempts=3),
                                  stall_timeout=120.0)
    token = os.environ.get(ENV_TOKEN, "").strip()
    if token:
        return CloudClient(server, session_token=token,
                           refresh_token=os.environ.get(ENV_REFRESH, "").strip(), **kwargs)
    client = CloudClient.from_session_store(server, **kwargs)
    if not client.signed_in:
        client.close()
        raise errors.Unauthenticated(not_signed_in(client.target))
    return client


def set_kernel_read_ahead(mountpoint: str, kib: int) -> bool:
    """Raise the kernel's read-ahead for this mount (its bdi), when allowed (root).

    FUSE mounts get 128 KiB, which keeps only one request of a sequential reader in flight
    at a time; a few MiB let the kernel ask for several at once, and the reader's own
    chunk prefetch keeps ahead of them. Without the right to change it, the default stays.
    """
    target = os.path.abspath(mountpoint)
    device = ""
    try:
        with open("/proc/self/mountinfo") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) > 4 and fields[4] == target:
                    device = fields[2]
        if not device:
            return False
        path = f"/sys/class/bdi/{device}/read_ahead_kb"
        with open(path, "w") as handle:
            handle.write(str(kib))
    except OSError as exc:
        log.debug("kernel read-ahead left at its default: %s", exc)
        return False
    log.info("kernel read-ahead for %s: %d KiB", target, kib)
    return True


def build(config: MountConfig, client: CloudClient) -> CloudFS:
    # The cache holds other people's shared bytes and our staged writes: a 0700 folder of
    # ours (refused when it is a symlink or someone else's), tightened once if an earlier
    # version left it looser.
    cache = private_dir(config.cache_dir or cache_home())
    tighten_tree(cache)
    chunks = cache / "chunks"
    staging = private_dir(cache / "staging") / control.mount_key(config.mountpoint)
    root = client.list_files()
    kernel = PyfuseKernel()
    vfs = VFS(client, root, chunks, staging, config.options,
              mountpoint=os.path.abspath(config.mountpoint), kernel=kernel)
    return CloudFS(vfs, kernel)


async def _main(fs: CloudFS, config: MountConfig, state: dict[str, Any]) -> None:
    sock = control.socket_path(config.mountpoint)
    vfs = fs.vfs

    async def handle(req: dict[str, Any]) -> dict[str, Any]:
        cmd = req.get("cmd")
        if cmd == "ping":
            return {"ok": True, "mountpoint": vfs.mountpoint}
        if cmd == "status":
            return {"ok": True, **vfs.status()}
        if cmd == "sync":
            timeout = req.get("timeout")
            deadline = time.monotonic() + float(timeout) if timeout else None
            left = await vfs.sync(deadline)
            return {"ok": not left, "left": left, **vfs.status()}
        if cmd == "stop":
            nursery.start_soon(stop, "stop requested")
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    async def stop(reason: str) -> None:
        log.info("%s: uploading staged writes and sending queued deletes, then unmounting",
                 reason)
        await vfs.sync(time.monotonic() + DRAIN_TIMEOUT)
        state["unmount"] = True
        pyfuse3.terminate()

    async def signals() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as receiver:
            async for signum in receiver:
                nursery.start_soon(stop, signal.Signals(signum).name)

    async def ready() -> None:
        await trio.sleep(0)
        if config.options.kernel_read_ahead_kb:
            await trio.to_thread.run_sync(set_kernel_read_ahead, config.mountpoint,
                                          config.options.kernel_read_ahead_kb)
        if config.ready_fd is not None:
            try:
                os.write(config.ready_fd, b"ready\n")
                os.close(config.ready_fd)
            except OSError:
                pass

    async with trio.open_nursery() as nursery:
        await fs.serve(nursery)
        nursery.start_soon(control.serve, sock, handle)
        nursery.start_soon(signals)
        nursery.start_soon(ready)
        await pyfuse3.main()
        log.info("unmounted: draining the upload queue and the queued deletes")
        left = await vfs.sync(time.monotonic() + DRAIN_TIMEOUT)
        for item in left:
            what = "not deleted" if item.get("kind") == "delete" else "not uploaded"
            log.error("%s: %s (%s: %s)", what, item["path"], item["state"], item["error"])
        state["left"] = len(left)
        vfs.stop_watch()
        nursery.cancel_scope.cancel()


def run(config: MountConfig) -> int:
    """Mount and serve until unmounted; the exit status says whether anything was left."""
    reuse_chunk_buffers(arenas=2)  # chunk buffers: from the heap, shared by the workers
    client = make_client(config.server)
    try:
        fs = build(config, client)
    except Exception:
        client.close()
        raise
    options = set(pyfuse3.default_options)
    # nodev, nosuid: device entries and set-user-ID bits are kept as data (ls -l shows
    # them) but give no one access to hardware or privileges, even on a root mount with
    # allow_other (fusermount3 adds both for other users' mounts anyway)
    options.update({"fsname=cloudgrpc", "subtype=cloudgrpc", "nodev", "nosuid"})
    options.update(config.fuse_options)
    if config.debug:
        options.add("debug")
    pyfuse3.init(fs, config.mountpoint, options)
    state: dict[str, Any] = {"unmount": False, "left": 0}
    try:
        trio.run(_main, fs, config, state)
    except BaseException:
        pyfuse3.close(unmount=True)
        raise
    else:
        pyfuse3.close(unmount=state["unmount"])
    finally:
        fs.vfs.writer.close()
        fs.vfs.deleter.close()
        client.close()
    return 1 if state["left"] else 0
