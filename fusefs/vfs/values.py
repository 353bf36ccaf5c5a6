"""The plain values the VFS takes and answers, and its one error type.

The FUSE adapter (``fusefs/filesystem.py``) turns pyfuse3's objects into these and back;
tests build them directly. Nothing here knows about pyfuse3, so the whole VFS runs (and is
tested) without a kernel, the way JuiceFS keeps ``pkg/vfs`` apart from ``pkg/fuse``.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from typing import Protocol

from cloudgrpc_proto import errors

from ..inodes import Attributes
from ..reader import ReadState

NAME_MAX = 255
# The largest file the mount takes: ext4's limit with 4 KiB blocks (16 TiB). A truncate or
# write beyond it answers EFBIG, as there, before the quota is asked (EDQUOT).
MAX_FILE_SIZE = 1 << 44
SYMLINK_MAX = 4095
MAX_LINKS = 65000  # the gateway's limit of names per file (ext4's): EMLINK beyond
ATTR_TTL = 1.0  # kernel entry/attr timeout

__all__ = [
    "ATTR_TTL", "MAX_FILE_SIZE", "MAX_LINKS", "NAME_MAX", "SYMLINK_MAX", "AttrChanges",
    "Attributes", "Caller", "DirEntry", "FsError", "FsStats", "Handle", "Kernel", "Opened",
    "Options", "checked_name",
]


class FsError(errors.CloudError):
    """A filesystem answer that is an errno of its own (ENOENT, EEXIST, ENOTEMPTY, EFBIG,
    ...), not a gateway error: the adapter hands ``errno`` to the kernel like any other
    typed error's."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or os.strerror(code))
        self.errno = code


def checked_name(name: str) -> str:
    """A name as the kernel may ask for it: at most NAME_MAX bytes, and UTF-8 on the wire
    (a name that is not, undecodable bytes the adapter kept as surrogates, is EINVAL)."""
    if len(os.fsencode(name)) > NAME_MAX:
        raise FsError(errno.ENAMETOOLONG)
    try:
        name.encode("utf-8")
    except UnicodeError:
        raise FsError(errno.EINVAL, "name is not UTF-8") from None
    return name


@dataclass(frozen=True)
class Caller:
    """Who asks (the kernel's request context): owner of what it creates."""

    uid: int = 0
    gid: int = 0
    pid: int = 0
    umask: int = 0o022


@dataclass
class AttrChanges:
    """What a setattr changes; None = left as it is."""

    mode: int | None = None  # permission bits (the type bits are ignored)
    uid: int | None = None
    gid: int | None = None
    atime_ns: int | None = None
    mtime_ns: int | None = None
    size: int | None = None


@dataclass(frozen=True)
class Opened:
    """An open file handle and how the kernel should cache its pages."""

    fh: int
    keep_cache: bool = False
    direct_io: bool = False


@dataclass(frozen=True)
class DirEntry:
    """One entry of a listing: its name, attributes and the offset of the next entry.
    ``counted`` entries take a lookup count when the kernel accepts them ("." and ".."
    do not)."""

    name: str
    attributes: Attributes
    next_offset: int
    counted: bool


@dataclass(frozen=True)
class FsStats:
    """statfs: the account's quota in blocks (``df``)."""

    f_bsize: int
    f_frsize: int
    f_blocks: int
    f_bfree: int
    f_bavail: int
    f_files: int
    f_ffree: int
    f_favail: int
    f_namemax: int


class Kernel(Protocol):
    """What the VFS tells the kernel when the tree changed behind its caches (the change
    feed, a queued change the gateway refused). The adapter sends these to pyfuse3; tests
    record them."""

    def invalidate_entry(self, parent_ino: int, name: str) -> None: ...

    def invalidate_inode(self, ino: int, attr_only: bool = False) -> None: ...


class NoKernel:
    """No kernel to tell (a VFS driven directly, without a mount)."""

    def invalidate_entry(self, parent_ino: int, name: str) -> None:
        pass

    def invalidate_inode(self, ino: int, attr_only: bool = False) -> None:
        pass


@dataclass
class Handle:
    """An open file: its inode, open flags and reader position (for read-ahead)."""

    ino: int
    flags: int
    read_state: ReadState = field(default_factory=ReadState)
    status: bytes = b""

    @property
    def writes(self) -> bool:
        return (self.flags & os.O_ACCMODE) in (os.O_WRONLY, os.O_RDWR)


@dataclass
class Options:
    ttl: float = ATTR_TTL
    cache_bytes: int = 2048 * 1024 * 1024
    read_ahead: int = 8
    upload_workers: int = 8
    threads: int = 24
    upload_delay: float = 0.0  # seconds an upload waits before it starts (tests)
    delete_delay: float = 0.0  # seconds a queued unlink waits before it is sent (tests)
    prefetch: bool = True  # listing a folder prefetches its small files' content
    kernel_read_ahead_kb: int = 4096  # 0 = leave the kernel's default (128 KiB)
    direct_reads: bool = True  # read chunks from the storage nodes when the gateway allows
    queue_folders: bool = True  # mkdir and folder renames answered at once (deleter.py)
