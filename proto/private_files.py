"""Files that hold secrets or user data: 0600 files in 0700 folders, whatever the umask.

Every process of the system (gateway, node, mount, CLIs) keeps something another local
user must not read: the database and its journals, keys, chunks, staged writes, caches. They
all go through here so the rule is written once:

- a private folder is created 0700; an existing one must be a real folder (not a symlink)
  owned by this user, and is tightened to 0700 if it is looser;
- a private file is created 0600 with ``O_NOFOLLOW`` (a symlink planted in its place is
  refused, not followed) and ``O_CLOEXEC``;
- a secret file (a key the process generates on first start) is created once with
  ``O_EXCL``, so two processes starting together agree on one key.

``PrivatePathError`` says what is wrong in words an operator can act on.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import time
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


class PrivatePathError(OSError):
    """A folder or file that should be private is not safe to use."""


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and missing parents) 0700, or check and tighten an existing one.

    Missing parents are created 0700 too. An existing folder must not be a symlink and must
    belong to this user; group and other permissions are removed from it.
    """
    folder = Path(path)
    missing: list[Path] = []
    probe = folder
    while not os.path.lexists(probe) and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for item in reversed(missing):
        try:
            os.mkdir(item, DIR_MODE)
        except FileExistsError:
            pass
        os.chmod(item, DIR_MODE, follow_symlinks=False)
    info = os.lstat(folder)
    if stat.S_ISLNK(info.st_mode):
        raise PrivatePathError(f"{folder} is a symlink: refusing to keep private data there")
    if not stat.S_ISDIR(info.st_mode):
        raise PrivatePathError(f"{folder} is not a folder")
    if info.st_uid != os.geteuid():
        raise PrivatePathError(
            f"{folder} belongs to uid {info.st_uid}, not to this user ({os.geteuid()}): "
            "refusing to keep private data there")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(folder, stat.S_IMODE(info.st_mode) & ~0o077 & 0o7777)
    return folder


def open_private(path: str | os.PathLike[str], flags: int = os.O_WRONLY | os.O_CREAT,
                 mode: int = FILE_MODE) -> int:
    """``os.open`` for a private file: never follows a symlink, 0600 whatever the umask."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            raise PrivatePathError(f"{path} belongs to uid {info.st_uid}, not to this user")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a private file atomically (temporary file, fsync, rename)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_private(path: str | os.PathLike[str]) -> bytes:
    """Read a private file without following a symlink."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def load_or_create_secret(path: str | os.PathLike[str], nbytes: int = 32) -> str:
    """The secret kept in ``path``, generated (URL-safe, ``nbytes`` random) on first use.

    The folder is made private first. Creation uses ``O_EXCL``: of two processes that start
    together, one writes the key and the other reads it.
    """
    target = Path(path)
    private_dir(target.parent)
    for _ in range(50):
        try:
            value = read_private(target).decode("utf-8").strip()
        except FileNotFoundError:
            value = None
        if value:
            return value
        if value is None:
            key = secrets.token_urlsafe(nbytes)
            try:
                fd = open_private(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                continue  # another process is writing it: read theirs
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(key + "\n")
                f.flush()
                os.fsync(f.fileno())
            return key
        time.sleep(0.02)  # created but not yet written by the other process
    raise PrivatePathError(f"{target} stays empty: remove it to generate a new key")

