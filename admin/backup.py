"""``cloudgrpc-admin --backup FILE``: the gateway's metadata snapshot, written safely.

The gateway makes the snapshot (one consistent read of its database, plus the cluster's
keys) and streams it; this side only stores it, and refuses to keep anything it cannot
vouch for: the bytes go to a private temporary file next to FILE (0600), their size and
SHA-256 must match what the gateway announces in its last piece, then the file is
fsynced and renamed into place, so FILE is either the whole checked backup or untouched.
An existing FILE is never replaced unless the operator says so.

The file holds the cluster secret, the OTP key and the admin key besides every account's
metadata: it is as sensitive as the gateway's DATA_DIR and its database together.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto.client import CloudClient
from cloudgrpc_proto.errors import AlreadyExists, DataLoss, InvalidArgument, Unavailable
from cloudgrpc_proto.private_files import open_private

DEFAULT_STALL_S = 30.0


@dataclass(frozen=True)
class BackupReport:
    path: Path
    size: int
    sha256: str
    tables: int
    rows: int
    revision: str
    created_at: str


def write_backup(client: CloudClient, admin_key: str, path: str | os.PathLike[str], *,
                 overwrite: bool = False, stall_s: float = DEFAULT_STALL_S) -> BackupReport:
    """Stream the gateway's snapshot into ``path`` (0600, atomically); what was written.

    ``stall_s``: the call is abandoned when no piece arrives for that long (the gateway
    sends one at least every few seconds while it works).
    """
    target = Path(path)
    if target.is_dir():
        raise InvalidArgument(f"{target} is a folder: name the backup file")
    if os.path.lexists(target) and not overwrite:
        raise AlreadyExists(f"{target} already exists: pass --overwrite to replace it")
    folder = target.parent
    if not folder.is_dir():
        raise InvalidArgument(f"{folder} is not a folder")
    tmp = folder / f".{target.name}.{secrets.token_hex(4)}.tmp"
    fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with os.fdopen(fd, "wb") as f:
            last = _receive(client, admin_key, f, stall_s)
            f.flush()
            os.fsync(f.fileno())
        _place(tmp, target, overwrite)
        _sync_folder(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return BackupReport(target, last.total_bytes, last.sha256, last.tables, last.rows,
                        last.revision, last.created_at)


def _receive(client: CloudClient, admin_key: str, f: BinaryIO, stall_s: float
             ) -> pb.BackupPiece:
    """Write the pieces to ``f``; the gateway's last piece once size and SHA-256 match."""
    stream = client.backup_metadata(admin_key)
    stalled = threading.Event()

    def give_up() -> None:
        stalled.set()
        stream.cancel()

    digest = hashlib.sha256()
    size = 0
    last: pb.BackupPiece | None = None
    timer: threading.Timer | None = None
    try:
        while True:
            timer = threading.Timer(stall_s, give_up)
            timer.daemon = True
            timer.start()
            piece = next(stream, None)
            timer.cancel()
            if piece is None:
                break
            if piece.data:
                f.write(piece.data)
                digest.update(piece.data)
                size += len(piece.data)
            if piece.sha256:
                last = piece
    finally:
        if timer is not None:
            timer.cancel()
        if stalled.is_set() or last is None:
            stream.cancel()
    if stalled.is_set():
        raise Unavailable(f"the gateway sent nothing for {stall_s:g} s: backup abandoned, "
                          "nothing written")
    if last is None:
        raise DataLoss("the gateway's stream ended before the backup was complete: "
                       "nothing written")
    if size != last.total_bytes or digest.hexdigest() != last.sha256:
        raise DataLoss(f"the backup received ({size} bytes, SHA-256 {digest.hexdigest()}) "
                       f"does not match what the gateway sent ({last.total_bytes} bytes, "
                       f"SHA-256 {last.sha256}): nothing written")
    return last


def _place(tmp: Path, target: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``target``; without ``overwrite`` never over an existing file,
    even one created meanwhile (a hard link fails if the name exists)."""
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)
    except FileExistsError:
        raise AlreadyExists(f"{target} already exists: pass --overwrite to replace it"
                            ) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        if os.path.lexists(target):  # a file system without hard links
            raise AlreadyExists(f"{target} already exists: pass --overwrite to replace it"
                                ) from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


def _sync_folder(folder: Path) -> None:
    """Make the rename durable (the folder's entry), where the platform allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
