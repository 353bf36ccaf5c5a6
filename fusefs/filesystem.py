"""The pyfuse3 adapter: kernel requests in, VFS calls out, answers and errno back.

Everything the mount decides lives in the VFS (``fusefs/vfs/``), which takes and answers
plain values and is tested without FUSE. This module only translates: ``bytes`` names to
``str``, ``RequestContext`` to ``Caller``, ``SetattrFields`` to ``AttrChanges``, and the
VFS's ``Attributes``, ``Opened``, ``DirEntry`` and ``FsStats`` to pyfuse3's objects. Typed
errors become an errno in exactly one place (``_errno_guard``): ``err.errno`` of the typed
error, EIO for anything unexpected, so a shell always gets an answer and the mount never
dies on a bad request. The kernel notifications the VFS asks for (the change feed) go
out through ``PyfuseKernel``.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pyfuse3
import trio

from cloudgrpc_proto import errors

from .inodes import Attributes
from .vfs import VFS, AttrChanges, Caller, Opened, Options

__all__ = ["CloudFS", "Options", "PyfuseKernel"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def _errno_guard(fn: F) -> F:
    """Map whatever a handler raises to a FUSEError, once, at the edge."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except errors.CloudError as exc:
            log.debug("%s: %s (%s)", fn.__name__, exc.message, type(exc).__name__)
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except UnicodeError:
            raise pyfuse3.FUSEError(errno.EINVAL) from None
        except OSError as exc:
            log.warning("%s: %s", fn.__name__, exc)
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except Exception:
            log.exception("%s failed", fn.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper  # type: ignore[return-value]


def _entry(attrs: Attributes) -> pyfuse3.EntryAttributes:
    out = pyfuse3.EntryAttributes()
    out.st_ino = attrs.st_ino
    out.generation = attrs.generation
    out.entry_timeout = attrs.entry_timeout
    out.attr_timeout = attrs.attr_timeout
    out.st_mode = attrs.st_mode
    out.st_nlink = attrs.st_nlink
    out.st_uid = attrs.st_uid
    out.st_gid = attrs.st_gid
    out.st_rdev = attrs.st_rdev
    out.st_size = attrs.st_size
    out.st_blksize = attrs.st_blksize
    out.st_blocks = attrs.st_blocks
    out.st_atime_ns = attrs.st_atime_ns
    out.st_mtime_ns = attrs.st_mtime_ns
    out.st_ctime_ns = attrs.st_ctime_ns
    return out


def _file_info(opened: Opened) -> pyfuse3.FileInfo:
    return pyfuse3.FileInfo(fh=opened.fh, keep_cache=opened.keep_cache,
                            direct_io=opened.direct_io)


def _caller(ctx: pyfuse3.RequestContext) -> Caller:
    return Caller(uid=ctx.uid, gid=ctx.gid, pid=ctx.pid, umask=ctx.umask)


def _changes(attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields) -> AttrChanges:
    return AttrChanges(
        mode=attr.st_mode if fields.update_mode else None,
        uid=attr.st_uid if fields.update_uid else None,
        gid=attr.st_gid if fields.update_gid else None,
        atime_ns=attr.st_atime_ns if fields.update_atime else None,
        mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
        size=attr.st_size if fields.update_size else None,
    )


class PyfuseKernel:
    """The VFS's ``Kernel``: its invalidations as pyfuse3 calls. ``invalidate_inode``
    blocks until the kernel has dropped the pages, so it runs on a thread in the mount's
    nursery (none before the mount serves: nothing is cached then)."""

    def __init__(self) -> None:
        self.nursery: trio.Nursery | None = None

    def invalidate_entry(self, parent_ino: int, name: str) -> None:
        try:
            pyfuse3.invalidate_entry_async(parent_ino, os.fsencode(name), ignore_enoent=True)
        except Exception as exc:  # noqa: BLE001 - an invalidation is advice to the kernel
            log.debug("invalidate_entry failed: %s", exc)

    def invalidate_inode(self, ino: int, attr_only: bool = False) -> None:
        if self.nursery is None:
            return

        async def run() -> None:
            try:
                await trio.to_thread.run_sync(pyfuse3.invalidate_inode, ino, attr_only)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENOSYS):
                    log.debug("invalidate_inode(%d) failed: %s", ino, exc)

        self.nursery.start_soon(run)


class CloudFS(pyfuse3.Operations):
    """pyfuse3's Operations over a ``VFS`` built with a ``PyfuseKernel``."""

    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, vfs: VFS, kernel: PyfuseKernel) -> None:
        super().__init__()
        self.vfs = vfs
        self.kernel = kernel

    async def serve(self, nursery: trio.Nursery) -> None:
        """Start the VFS's background tasks; kernel notifications may go out from now."""
        self.kernel.nursery = nursery
        await self.vfs.serve(nursery)

    # --- names and attributes -------------------------------------------------------------

    @_errno_guard
    async def lookup(self, parent_inode: int, name: bytes,
                     ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        attrs = await self.vfs.lookup(parent_inode, os.fsdecode(name))
        if attrs is None:  # a negative entry, kept by the kernel like a positive one
            missing = pyfuse3.EntryAttributes()
            missing.st_ino = 0
            missing.entry_timeout = self.vfs.options.ttl
            return missing
        return _entry(attrs)

    async def forget(self, inode_list: list[tuple[int, int]]) -> None:
        await self.vfs.forget(inode_list)

    @_errno_guard
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return _entry(await self.vfs.getattr(inode))

    @_errno_guard
    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes,
                      fields: pyfuse3.SetattrFields, fh: int | None,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return _entry(await self.vfs.setattr(inode, _changes(attr, fields)))

    @_errno_guard
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return os.fsencode(await self.vfs.readlink(inode))

    # --- folders --------------------------------------------------------------------------

    @_errno_guard
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        return await self.vfs.opendir(inode)

    @_errno_guard
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        for entry in await self.vfs.readdir(fh, start_id):
            if not pyfuse3.readdir_reply(token, os.fsencode(entry.name),
                                         _entry(entry.attributes), entry.next_offset):
                return  # the kernel's buffer is full: it asks again from this entry
            if entry.counted:
                self.vfs.remember(entry.attributes.st_ino)

    async def releasedir(self, fh: int) -> None:
        await self.vfs.releasedir(fh)

    @_errno_guard
    async def mkdir(self, parent_inode: int, name: bytes, mode: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return _entry(await self.vfs.mkdir(parent_inode, os.fsdecode(name), mode,
                                           _caller(ctx)))

    @_errno_guard
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        await self.vfs.rmdir(parent_inode, os.fsdecode(name))

    # --- files ----------------------------------------------------------------------------

    @_errno_guard
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext
                     ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        opened, attrs = await self.vfs.create(parent_inode, os.fsdecode(name), mode, flags,
                                              _caller(ctx))
        return _file_info(opened), _entry(attrs)

    @_errno_guard
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        return _file_info(await self.vfs.open(inode, flags))

    @_errno_guard
    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:
        return await self.vfs.read(fh, off, size)

    @_errno_guard
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return await self.vfs.write(fh, off, buf)

    @_errno_guard
    async def flush(self, fh: int) -> None:
        await self.vfs.flush(fh)

    @_errno_guard
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.vfs.fsync(fh, datasync)

    @_errno_guard
    async def release(self, fh: int) -> None:
        await self.vfs.release(fh)

    @_errno_guard
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        await self.vfs.unlink(parent_inode, os.fsdecode(name))

    @_errno_guard
    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: pyfuse3.RequestContext) -> None:
        await self.vfs.rename(parent_inode_old, os.fsdecode(name_old), parent_inode_new,
                              os.fsdecode(name_new),
                              noreplace=bool(flags & pyfuse3.RENAME_NOREPLACE),
                              exchange=bool(flags & pyfuse3.RENAME_EXCHANGE))

    # --- links, special files, statfs -----------------------------------------------------

    @_errno_guard
    async def symlink(self, parent_inode: int, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return _entry(await self.vfs.symlink(parent_inode, os.fsdecode(name),
                                             os.fsdecode(target), _caller(ctx)))

    @_errno_guard
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return _entry(await self.vfs.link(inode, new_parent_inode, os.fsdecode(new_name)))

    @_errno_guard
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return _entry(await self.vfs.mknod(parent_inode, os.fsdecode(name), mode, rdev,
                                           _caller(ctx)))

    @_errno_guard
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        stats = await self.vfs.statfs()
        out = pyfuse3.StatvfsData()
        for name in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                     "f_ffree", "f_favail", "f_namemax"):
            setattr(out, name, getattr(stats, name))
        return out
