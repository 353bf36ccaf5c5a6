"""The control socket: how ``cloudgrpc status``/``sync``/``umount`` talk to a background mount.

Each mount daemon listens on a unix socket in the user's runtime directory, named after the
mount point, and answers one JSON request per connection with one JSON reply. A socket in a
0700 directory of the user's own is as private as the mount itself; no token travels here.
The runtime folder must belong to the user and not be a symlink (``/tmp/cloudgrpc-UID`` is
a name another local user could take first): otherwise nothing runs there.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudgrpc_proto.private_files import private_dir

if TYPE_CHECKING:
    import trio

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/cloudgrpc``, else ``/tmp/cloudgrpc-<uid>`` (created 0700).

    Raises ``PrivatePathError`` when it is a symlink or belongs to another user."""
    base = os.environ.get("XDG_RUNTIME_DIR", "").strip()
    path = Path(base) / "cloudgrpc" if base else Path(f"/tmp/cloudgrpc-{os.getuid()}")
    return private_dir(path)


def mount_key(mountpoint: str) -> str:
    return hashlib.sha1(os.path.abspath(mountpoint).encode()).hexdigest()[:16]


def socket_path(mountpoint: str) -> Path:
    return runtime_dir() / f"mount-{mount_key(mountpoint)}.sock"


def log_path(mountpoint: str) -> Path:
    return runtime_dir() / f"mount-{mount_key(mountpoint)}.log"


async def serve(path: Path, handler: Handler) -> None:
    """Answer requests on ``path`` until cancelled; the socket file is removed at the end."""
    import trio  # the daemon's side only: the CLI's side (``request``) starts without it

    path.unlink(missing_ok=True)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(16)
    listener = trio.SocketListener(sock)

    async def one(stream: trio.SocketStream) -> None:
        async with stream:
            buf = b""
            while not buf.endswith(b"\n"):
                data = await stream.receive_some(65536)
                if not data:
                    return
                buf += data
            try:
                request = json.loads(buf)
                reply = await handler(request)
            except Exception as exc:  # noqa: BLE001 - report, keep serving
                log.exception("control request failed")
                reply = {"ok": False, "error": str(exc)}
            try:
                await stream.send_all(json.dumps(reply).encode() + b"\n")
            except trio.BrokenResourceError:
                pass

    try:
        await trio.serve_listeners(one, [listener])
    finally:
        path.unlink(missing_ok=True)


def request(path: Path, message: dict[str, Any], timeout: float | None = 10.0
            ) -> dict[str, Any]:
    """Send one request to a mount daemon; OSError when nothing listens there."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(message).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            data = sock.recv(65536)
            if not data:
                break
            buf += data
    if not buf:
        raise ConnectionError("the mount daemon closed the connection")
    return dict(json.loads(buf))


def live_sockets() -> list[Path]:
    """Sockets of running mounts (stale ones, left by a crash, are removed)."""
    found = []
    for path in sorted(runtime_dir().glob("mount-*.sock")):
        try:
            request(path, {"cmd": "ping"}, timeout=2.0)
        except (OSError, ValueError):
            try:
                if time.time() - path.stat().st_mtime > 5:
                    path.unlink(missing_ok=True)
            except OSError:
                pass
            continue
        found.append(path)
    return found
