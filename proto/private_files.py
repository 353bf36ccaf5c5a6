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
import errno
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
    fd = _open_nofollow(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
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


def _open_nofollow(path: str | os.PathLike[str], flags: int, mode: int = FILE_MODE) -> int:
    """``os.open`` that says in words why a symlink in place of a private file is refused."""
    try:
        return os.open(path, flags, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP and os.path.islink(path):
            raise PrivatePathError(
                f"{path} is a symlink: refusing to follow it for private data") from None
        raise


def write_private(path: str | os.PathLike[str], data: bytes, *, sync: bool = True) -> None:
    """Write ``data`` to a private file atomically (temporary file, fsync, rename).

    The rename replaces a symlink planted at ``path`` instead of writing through it.
    ``sync=False`` skips the fsync, for small files rewritten often whose loss in a power
    cut is harmless (the mount's journals: a crash of the process alone loses nothing).
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    fd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_private(path: str | os.PathLike[str]) -> bytes:
    """Read a private file without following a symlink."""
    fd = _open_nofollow(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _read_tightened(path: Path) -> bytes:
    """Read a file of ours that must be private, tightening it to 0600 first (a key file
    an earlier version wrote 0644 stops being readable by others on the next start)."""
    with os.fdopen(open_private(path, os.O_RDONLY), "rb") as f:
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
            value = _read_tightened(target).decode("utf-8").strip()
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



def private_file(path: str | os.PathLike[str], *, create: bool = True) -> bool:
    """Make sure ``path`` is a private file: created empty 0600 when missing (``create``),
    else checked (not a symlink, ours) and tightened to 0600. False when it is missing.

    For files another library opens by name afterwards (SQLite's database and its -wal and
    -shm, keyrings.alt's file): created here first, they keep the mode we gave them.
    """
    flags = os.O_RDONLY | (os.O_CREAT if create else 0)
    try:
        fd = open_private(path, flags)
    except FileNotFoundError:
        if create:
            raise
        return False
    os.close(fd)
    return True


TIGHTENED_MARKER = ".private-modes"


def tighten_tree(root: str | os.PathLike[str], marker: str = TIGHTENED_MARKER) -> int:
    """Remove group and other permissions from everything under ``root``, once.

    Stores written by earlier versions (files 0644 in 0755 folders) are tightened on the
    first start of this one; a marker file then tells later starts that the walk is done
    (a node store can hold many thousands of folders). Symlinks are neither followed nor
    changed. Returns how many entries were tightened.
    """
    base = Path(root)
    done = base / marker
    if os.path.lexists(done):
        return 0
    changed = 0
    for folder, dirs, files in os.walk(base, followlinks=False):
        for name in (*dirs, *files):
            full = os.path.join(folder, name)
            try:
                info = os.lstat(full)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
                continue
            if stat.S_IMODE(info.st_mode) & 0o077:
                os.chmod(full, stat.S_IMODE(info.st_mode) & ~0o077, follow_symlinks=False)
                changed += 1
    os.close(open_private(done, os.O_WRONLY | os.O_CREAT))
    return changed
