"""The VFS: the mount's view of the tree and its pending changes, without FUSE.

Every filesystem operation is here, taking plain values (inode numbers, ``str`` names, a
``Caller``, ``AttrChanges``) and answering plain ones (``Attributes``, ``Opened``,
``DirEntry``, ``FsStats``), or raising a typed error whose ``errno`` is the answer
(``FsError`` for the filesystem's own, the client library's for the gateway's). The pyfuse3
adapter (``fusefs/filesystem.py``) only translates, so everything the mount decides is
tested by driving this class under trio against a real gateway (tests/mount/test_vfs.py).

What lives here: lookups and listings over ``inodes.InodeTable`` (with the rule that a
reply asked for before an entry change in its folder is asked again, so no stale entry
comes back); files created here and not uploaded yet (``local_names``); open handles and
open counts (a file unlinked while open lives on its staging copy until the last
release); the quota and EFBIG checks of growing writes; rename rules (trash, Shared/,
hard links, local files, queued folder moves); and the change feed's effect on the caches
(the kernel is told through the ``Kernel`` interface the adapter provides). Content reads
go to ``reader.Reader``, writes to ``writer.Writer``, queued deletes and folder changes to
``deleter.Deleter``; every gateway call is a ``CloudClient`` method on a worker thread.

The kernel keeps entries and attributes for ``ttl`` seconds (1 s, not pyfuse3's 300 s), and
the gateway's change feed (``WatchChanges``) drops them sooner when another client changes
the tree, so a second mount sees a change within about a second.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import trio

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import errors
from cloudgrpc_proto.client import CALL_ORIGIN, CloudClient
from cloudgrpc_proto.direct_reads import NodeReads

from ..aio import Blocking
from ..deleter import Deleter, PendingDelete
from ..inodes import (
    ROOT_INODE,
    SHARED_INODE,
    SPECIAL_TYPES,
    STATUS_INODE,
    TRASH_INODE,
    VIRTUAL_NAMES,
    Area,
    Attributes,
    InodeTable,
    Kind,
    Node,
)
from ..reader import ChunkCache, Reader
from ..remote import shared_view_names
from ..writer import UploadTarget, Writer
from .change_feed import ChangeFeed
from .own_changes import OwnChanges, name_key
from .space import Space
from .values import (
    MAX_FILE_SIZE,
    MAX_LINKS,
    NAME_MAX,
    SYMLINK_MAX,
    AttrChanges,
    Caller,
    DirEntry,
    FsError,
    FsStats,
    Handle,
    Kernel,
    NoKernel,
    Opened,
    Options,
    checked_name,
)

log = logging.getLogger(__name__)

STALE_TTL = 1.0  # our own cache, when the change feed is down
WATCHED_TTL = 60.0  # our own cache, while the change feed is up (it tells us of changes)
PREFETCH_FOLDERS = 64  # listed folders remembered for a prefetch at their first open
REPLY_RETRIES = 5  # a lookup or listing asked again when an entry change overtook it


class VFS:
    """The mount's filesystem; build it with the account's root listing.

    Its operations are the kernel's (lookup, getattr, setattr, readlink, opendir/readdir,
    mkdir, rmdir, create/open/read/write/flush/fsync/release, unlink, rename, symlink,
    link, mknod, statfs, forget) on plain values; ``serve`` starts the change feed, the
    upload workers and the delete queue in a nursery, ``sync`` waits for what is pending,
    ``status`` reports it. ``kernel`` receives invalidations (none by default).
    """

    def __init__(
        self,
        client: CloudClient,
        root: pb.ListFilesResponse,
        cache_dir: Any,
        staging_dir: Any,
        options: Options | None = None,
        mountpoint: str = "",
        kernel: Kernel | None = None,
    ) -> None:
        self.client = client
        self.kernel: Kernel = kernel or NoKernel()
        self.own = OwnChanges()
        self.options = options or Options()
        self.mountpoint = mountpoint
        self.blocking = Blocking(self.options.threads)
        self.table = InodeTable(root.folder.folder_id)
        self.table.put_folder(root.folder, ROOT_INODE)
        self.cache = ChunkCache(cache_dir, self.options.cache_bytes)
        self.direct = NodeReads() if self.options.direct_reads else None
        if self.direct is not None:
            client.node_reads = self.direct  # direct writes share its channels to the nodes
        self.reader = Reader(client, self.blocking, self.cache, self.options.read_ahead,
                             self.direct)
        self.reader.on_version = self._version_seen
        self.writer = Writer(client, self.blocking, staging_dir, self.options.upload_workers,
                             account=root.folder.folder_id, delay=self.options.upload_delay)
        self.writer.target_of = self._upload_target
        self.writer.on_uploaded = self._uploaded
        self.writer.on_start = lambda target: self.own.expect(target.key)
        self.writer.on_abort = lambda target: self.own.unexpect(target.key)
        self.deleter = Deleter(client, self.blocking, staging_dir, root.folder.folder_id,
                               claim=self.writer.owns_dir, delay=self.options.delete_delay)
        self.deleter.on_start = lambda ids: self.own.expect(*ids)
        self.deleter.on_abort = lambda ids: self.own.unexpect(*ids)
        self.deleter.on_deleted = self._deletes_applied
        self.deleter.on_failed = self._deletes_failed
        self.deleter.on_applied = self._folder_change_applied
        self.writer.before_create = self.deleter.flush
        # files created here and not uploaded yet, by (parent inode, name)
        self.local_names: dict[tuple[int, str], int] = {}
        self.handles: dict[int, Handle] = {}
        self.dir_handles: dict[int, list[tuple[str, int]]] = {}
        # folders listed whose small files are fetched at the first open of one of them
        self._prefetch_pending: OrderedDict[int, None] = OrderedDict()
        self._dirs: dict[int, int] = {}
        self._next_fh = 1
        self._open_count: dict[int, int] = {}
        self.origin = uuid.uuid4().hex[:16]  # this daemon's calls, for the change feed
        self.space = Space(lambda: self.call(self.client.storage_info), self.writer,
                           self.table)
        self.feed = ChangeFeed(self)
        self._fill_children(self.table.root, root)

    # --- plumbing -------------------------------------------------------------------------

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """A gateway call on a worker thread, after any queued folder change."""
        if self.deleter.ordered:
            # mkdir and folder moves answered ahead of the gateway go first: no call may see
            # (or act on) the server's tree without them
            await self.deleter.flush(quiet=True)
        return await self.blocking(fn, *args, **kwargs)

    def _fh(self) -> int:
        fh = self._next_fh
        self._next_fh += 1
        return fh

    @property
    def cache_ttl(self) -> float:
        return WATCHED_TTL if self.watch_ok else STALE_TTL

    def _fresh(self, when: float) -> bool:
        return time.monotonic() - when < self.cache_ttl

    def node(self, ino: int) -> Node:
        node = self.table.get(ino)
        if node is None:
            raise FsError(errno.ENOENT)
        return node

    def attrs(self, node: Node) -> Attributes:
        st = self.writer.get(node.ino)
        if node.ino == STATUS_INODE:
            return self.table.attributes(node, size=len(self.status_text()), timeout=0)
        return self.table.attributes(
            node, size=st.size if st is not None else None, timeout=self.options.ttl
        )

    def path_of(self, node: Node) -> str:
        parts = []
        cur: Node | None = node
        hops = 0
        while cur is not None and cur.ino != ROOT_INODE and hops < 4096:
            parts.append(cur.name)
            cur = self.table.get(cur.parent)
            hops += 1
        return "/" + "/".join(reversed(parts))

    # --- own changes (not to be invalidated when the change feed echoes them) -------------

    async def mutate(
        self, keys: tuple[str, ...], fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        """A changing call whose change-feed echo must not invalidate our own caches."""
        self.own.expect(*keys)
        try:
            return await self.call(fn, *args, **kwargs)
        except BaseException:
            self.own.unexpect(*keys)
            raise

    # --- listings -------------------------------------------------------------------------

    def _fill_children(self, folder: Node, listing: pb.ListFilesResponse) -> None:
        children: dict[str, int] = {}
        for d in listing.folders:
            sub = self.table.put_folder(d, folder.ino)
            sub.subfolders = d.subfolders  # (counted in listings and StatEntry only)
            children[d.name] = sub.ino
        for f in listing.files:
            if self.deleter.hidden(f.file_id):
                continue  # unlinked here, its delete still queued
            node = self.table.by_entry(f.file_id)
            staged = self.writer.get(node.ino) if node is not None else None
            if node is not None and staged is not None and staged.dirty:
                # local changes not uploaded yet win over the server's older attributes
                node.name, node.parent, node.area = f.filename, folder.ino, Area.TREE
            else:
                node = self.table.put_file(f, folder.ino)
            children[f.filename] = node.ino
        for (parent_ino, name), ino in self.local_names.items():
            if parent_ino == folder.ino:
                children[name] = ino  # created here, not uploaded yet
        if folder.ino == ROOT_INODE:
            for name, ino in VIRTUAL_NAMES.items():
                children[name] = ino
        self.table.set_children(folder, children)

    @staticmethod
    def _unique(name: str, entry_id: str, taken: dict[str, int]) -> str:
        if name not in taken:
            return name
        stem, dot, ext = name.rpartition(".")
        tag = entry_id[:8]
        return f"{stem} ({tag}).{ext}" if dot and stem else f"{name} ({tag})"

    async def children(self, folder: Node) -> dict[str, int]:
        """The folder's entries by name, listed with one call when the cache is stale."""
        if folder.children is not None and self._fresh(folder.children_at):
            return folder.children
        if folder.ino == TRASH_INODE:
            await self._flush_deletes_quietly()  # what was just removed belongs in the trash
            reply = await self.call(self.client.list_trash)
            kids: dict[str, int] = {}
            for d in reply.folders:
                name = self._unique(d.name, d.folder_id, kids)
                kids[name] = self.table.put_folder(d, TRASH_INODE, Area.TRASH, name).ino
                self.table.set_children(self.table.by_ino[kids[name]], {})
                self.table.by_ino[kids[name]].children_at = float("inf")
            for f in reply.files:
                name = self._unique(f.filename, f.file_id, kids)
                kids[name] = self.table.put_file(f, TRASH_INODE, Area.TRASH, name).ino
            self.table.set_children(folder, kids)
        elif folder.ino == SHARED_INODE:
            reply = await self.call(self.client.list_shared_with_me)
            kids = {}
            for name, f in shared_view_names(reply.files).items():
                kids[name] = self.table.put_file(f, SHARED_INODE, Area.SHARED, name).ino
            self.table.set_children(folder, kids)
        elif folder.area is Area.TREE:
            for _ in range(REPLY_RETRIES):
                seen = await self._changes_now(folder)
                reply = await self.call(self.client.list_files, folder.entry_id)
                if folder.changes == seen:
                    break
                # an entry change here landed while the listing was out: it may show the
                # folder as it was before (a name just removed, a name moved away)
            self._fill_children(folder, reply)
        else:
            self.table.set_children(folder, {})
        assert folder.children is not None
        return folder.children

    async def _child(self, parent: Node, name: str) -> Node | None:
        """The entry ``name`` in ``parent``, or None."""
        if not parent.is_dir:
            raise FsError(errno.ENOTDIR)
        if parent.ino == ROOT_INODE and name in VIRTUAL_NAMES:
            return self.table.get(VIRTUAL_NAMES[name])
        for attempt in range(REPLY_RETRIES):
            if parent.children is not None and self._fresh(parent.children_at):
                ino = parent.children.get(name)
                return self.table.get(ino) if ino is not None else None
            local = self.local_names.get((parent.ino, name))
            if local is not None:
                return self.table.get(local)
            if parent.area is not Area.TREE:
                break
            seen = await self._changes_now(parent)
            try:
                reply = await self.call(
                    self.client.stat, parent_folder_id=parent.entry_id, name=name
                )
            except errors.NotFound:
                if parent.changes != seen and attempt + 1 < REPLY_RETRIES:
                    continue  # a rename here may have brought the name meanwhile
                self.table.drop_child(parent, name)
                return None
            if parent.changes != seen and attempt + 1 < REPLY_RETRIES:
                # An entry change in this folder landed while the question was out (a
                # queued delete the gateway answered, an rmdir, a rename): the answer may
                # be from before it and bring the old entry back. Ask again.
                continue
            if reply.WhichOneof("entry") == "file" and self.deleter.hidden(reply.file.file_id):
                return None  # unlinked here, its delete still queued
            existing = (
                self.table.by_entry(reply.file.file_id)
                if reply.WhichOneof("entry") == "file"
                else None
            )
            if existing is not None and self.writer.get(existing.ino) is not None:
                existing.name, existing.parent = name, parent.ino
                node = existing
            else:
                node = self.table.put_entry(reply, parent.ino)
                if reply.WhichOneof("entry") == "folder":
                    node.subfolders = reply.folder.subfolders
            self.table.add_child(parent, name, node.ino)
            return node
        kids = await self.children(parent)
        ino = kids.get(name)
        return self.table.get(ino) if ino is not None else None

    async def _existing(self, parent_ino: int, name: str) -> tuple[Node, Node, str]:
        parent = self.node(parent_ino)
        checked_name(name)
        node = await self._child(parent, name)
        if node is None:
            raise FsError(errno.ENOENT)
        return parent, node, name

    async def _refresh(self, node: Node) -> None:
        """Re-read an entry's attributes unless they are fresh or local changes own them."""
        if node.area is Area.VIRTUAL or node.local or node.deleted \
                or self._fresh(node.attrs_at):
            return  # (an unlinked file still open lives on its staging copy alone)
        st = self.writer.get(node.ino)
        try:
            reply = await self.call(self.client.stat, entry_id=node.entry_id)
        except errors.NotFound:
            if st is None:
                self.table.mark_deleted(node)
                raise
            return
        except (errors.Unavailable, errors.DeadlineExceeded):
            # Gateway away: the last known attributes beat an EIO on every stat (and on the
            # chdir into the mount). Every node came with attributes from some reply, even
            # when a lost change feed has just marked them all stale.
            return
        if reply.WhichOneof("entry") == "folder":
            self.table.put_folder(reply.folder, node.parent, node.area, node.name)
            node.subfolders = reply.folder.subfolders
        elif st is None or not st.dirty:
            old = node.version
            self.table.refresh_file(node, reply.file)
            if node.version != old:
                self.reader.forget(node.entry_id)

    def _version_seen(self, entry_id: str, version: int) -> None:
        node = self.table.by_entry(entry_id)
        if node is not None and node.version != version:
            node.attrs_at = 0.0

    # --- lookup and attributes ------------------------------------------------------------

    async def lookup(self, parent_inode: int, name: str) -> Attributes | None:
        """The entry's attributes (one more kernel reference to it), None when missing.

        None is answered to the kernel as a negative entry it keeps for ``ttl`` like a
        positive one: `cp` into the mount looks each new name up twice (stat, then open)
        before creating it. The change feed invalidates it when another mount creates the
        name."""
        parent = self.node(parent_inode)
        node = await self._child(parent, checked_name(name))
        if node is None:
            return None
        self.table.remember(node)
        return self.attrs(node)

    async def forget(self, inode_list: list[tuple[int, int]]) -> None:
        for ino, count in inode_list:
            self.table.forget(ino, count)

    async def getattr(self, inode: int) -> Attributes:
        node = self.node(inode)
        await self._refresh(node)
        return self.attrs(node)

    async def setattr(self, inode: int, wanted: AttrChanges) -> Attributes:
        node = self.node(inode)
        if node.area is Area.VIRTUAL:
            raise FsError(errno.EPERM)
        if not node.writable:
            raise FsError(errno.EACCES)
        changes: dict[str, int] = {}
        if wanted.mode is not None:
            # with the type bit: "these bits as given" (chmod 0 stays 0, see stored_mode)
            kind = stat.S_IFDIR if node.is_dir else stat.S_IFREG
            changes["mode"] = kind | stat.S_IMODE(wanted.mode)
        if wanted.uid is not None:
            changes["uid"] = wanted.uid
        if wanted.gid is not None:
            changes["gid"] = wanted.gid
        if wanted.atime_ns is not None:
            changes["atime_ns"] = wanted.atime_ns
        if wanted.mtime_ns is not None:
            changes["mtime_ns"] = wanted.mtime_ns
        if wanted.size is not None:
            if node.kind is not Kind.FILE:
                raise FsError(errno.EISDIR if node.is_dir else errno.EINVAL)
            if wanted.size > MAX_FILE_SIZE:
                raise FsError(errno.EFBIG)
            await self._check_room(node, wanted.size)
            await self._truncate(node, wanted.size)
            if "mtime_ns" not in changes:
                node.mtime_ns = node.ctime_ns = time.time_ns()
            if self._open_count.get(inode, 0) == 0:
                self.writer.schedule(inode)
        if node.kind is Kind.LINK:
            changes.pop("mode", None)  # a symlink's mode is always 0777
        if changes:
            # An upload in flight carries the attributes it started with: let it land
            # first, or it would overwrite what is set here.
            await self.writer.settle(inode)
        if node.is_dir and ("mtime_ns" in changes or "atime_ns" in changes):
            # so do the entry changes in the folder that are still on their way (a create
            # uploading, an unlink queued): the time set here (cp -a, tar) comes after them
            await self.deleter.flush()
            for child in [n for n in self.table.by_ino.values()
                          if n.parent == node.ino and n.local]:
                await self.writer.settle(child.ino)
        if changes and node.local:
            # not on the server yet: the first upload carries mode, owner and mtime
            node.mode = stat.S_IMODE(changes.get("mode", node.mode))
            node.uid = changes.get("uid", node.uid)
            node.gid = changes.get("gid", node.gid)
            node.atime_ns = changes.get("atime_ns", node.atime_ns)
            node.mtime_ns = changes.get("mtime_ns", node.mtime_ns)
            node.ctime_ns = time.time_ns()
            self.writer.journal(inode)
        elif changes:
            before = {key: getattr(node, key) for key in changes}
            for key, value in changes.items():
                # an upload starting meanwhile carries these
                setattr(node, key, stat.S_IMODE(value) if key == "mode" else value)
            try:
                reply = await self.mutate(
                    (node.entry_id,), self.client.set_attributes, node.entry_id, **changes
                )
            except BaseException:
                for key, value in before.items():
                    setattr(node, key, value)
                raise
            st = self.writer.get(inode)
            if reply.WhichOneof("entry") == "folder":
                self.table.put_folder(reply.folder, node.parent, node.area, node.name)
            else:
                size = node.size
                self.table.refresh_file(node, reply.file)
                if st is not None and st.dirty:
                    node.size = size
            if "mtime_ns" in changes:
                node.mtime_ns = changes["mtime_ns"]
        return self.attrs(node)

    async def _truncate(self, node: Node, size: int) -> None:
        st = self.writer.get(node.ino)
        if size == 0:
            st = self.writer.create_empty(node.ino)
            st.opens = self._open_count.get(node.ino, 0)
            st.gen += 1
            return
        await self._stage(node)
        await self.writer.truncate(node.ino, size)

    async def _stage(self, node: Node) -> None:
        """Make sure the file has a complete local staging copy (fetched if need be)."""
        if self.writer.get(node.ino) is not None:
            return
        st = self.writer._new_file(node.ino)
        try:
            if node.size:
                await self.reader.copy_into(node.entry_id, node.version, st.fd, node.size)
            st.size = os.fstat(st.fd).st_size
        except BaseException:
            self.writer._remove(st)
            raise
        if self.writer.get(node.ino) is not None:  # another request staged it meanwhile
            self.writer._remove(st)
            return
        st.opens = self._open_count.get(node.ino, 0)
        self.writer.adopt(node.ino, st)

    async def readlink(self, inode: int) -> str:
        node = self.node(inode)
        if node.kind is not Kind.LINK:
            raise FsError(errno.EINVAL)
        return node.target

    # --- directories ----------------------------------------------------------------------

    async def opendir(self, inode: int) -> int:
        node = self.node(inode)
        if not node.is_dir:
            raise FsError(errno.ENOTDIR)
        fh = self._fh()
        self.dir_handles[fh] = []
        self._dirs[fh] = inode
        return fh

    async def readdir(self, fh: int, start_id: int) -> Iterator[DirEntry]:
        """The listing from offset ``start_id`` on, built lazily: the kernel takes entries
        until its buffer is full, then asks again from where it stopped. The caller
        ``remember``s each ``counted`` entry the kernel took (its lookup count)."""
        entries = self.dir_handles.get(fh)
        if entries is None:
            raise FsError(errno.EBADF)
        if start_id == 0:
            folder = self.node(self._dirs[fh])
            kids = dict(await self.children(folder))
            entries[:] = sorted(kids.items())
            if self.options.prefetch and folder.area is Area.TREE:
                # fetched when one of its files is first opened: ``ls -l`` reads none
                self._prefetch_pending[folder.ino] = None
                self._prefetch_pending.move_to_end(folder.ino)
                while len(self._prefetch_pending) > PREFETCH_FOLDERS:
                    self._prefetch_pending.popitem(last=False)
            folder = self.node(self._dirs[fh])
            parent = self.table.get(folder.parent) or folder
            entries[:0] = [(".", -folder.ino), ("..", -parent.ino)]
        return self._dir_entries(entries, start_id)

    def _dir_entries(self, entries: list[tuple[str, int]], start: int) -> Iterator[DirEntry]:
        for index in range(start, len(entries)):
            name, ino = entries[index]
            node = self.table.get(abs(ino))
            if node is None:
                continue
            # "." and "..": listed, but no lookup count (the kernel's rule)
            yield DirEntry(name, self.attrs(node), index + 1, counted=ino > 0)

    def remember(self, ino: int) -> None:
        """The kernel took a reference to ``ino`` (a listed entry it accepted)."""
        node = self.table.get(ino)
        if node is not None:
            self.table.remember(node)

    def _prefetch_small(self, inos: Any) -> None:
        files = []
        for ino in inos:
            node = self.table.get(ino)
            if node is None or node.kind is not Kind.FILE or not node.entry_id \
                    or node.size <= 0 or self.writer.get(ino) is not None:
                continue
            files.append((node.entry_id, node.version, node.size))
        if files:
            self.reader.prefetch_small(files)

    async def releasedir(self, fh: int) -> None:
        self.dir_handles.pop(fh, None)
        self._dirs.pop(fh, None)

    async def mkdir(
        self, parent_inode: int, name: str, mode: int, caller: Caller
    ) -> Attributes:
        parent = self._tree_dir(parent_inode)
        text = checked_name(name)
        gid, perm = self._new_owner(parent, caller, stat.S_IMODE(mode), folder=True)
        # the type bit says "these permission bits as given" (mkdir with mode 0 is 0)
        wire_mode = stat.S_IFDIR | perm
        if self._queues_folders():
            return await self._mkdir_queued(parent, text, wire_mode, caller.uid, gid)
        await self.deleter.flush()  # a file of that name may be on its way to the trash
        reply = await self.mutate(
            (name_key(parent.entry_id, text),),
            self.client.create_folder,
            text,
            parent.entry_id,
            mode=wire_mode,
            uid=caller.uid,
            gid=gid,
        )
        node = self.table.put_folder(reply.folder, parent.ino)
        self.table.set_children(node, {})
        self.table.add_child(parent, text, node.ino)
        self.table.count_subfolder(parent, +1)
        self._dir_changed(parent)
        self.table.remember(node)
        return self.attrs(node)

    def _queues_folders(self) -> bool:
        """May folder changes be answered here and sent behind (deleter.py)? Only while the
        change feed is up (the gateway was there a moment ago, and another mount's change
        to the same names reaches us) and the gateway takes the ids this mount chooses."""
        return self.options.queue_folders and self.watch_ok and self.feed.client_folder_ids

    @staticmethod
    def _new_owner(parent: Node, caller: Caller, perm: int,
                   folder: bool = False) -> tuple[int, int]:
        """A new entry's group and permission bits: in a set-group-ID folder it takes the
        folder's group, and a new folder keeps the bit (Linux's inode_init_owner)."""
        if parent.mode & stat.S_ISGID:
            return parent.gid, perm | (stat.S_ISGID if folder else 0)
        return caller.gid, perm

    async def _mkdir_queued(self, parent: Node, name: str, mode: int, uid: int,
                            gid: int) -> Attributes:
        """mkdir answered at once: the folder gets its id here and its CreateFolder is
        queued behind any queued deletes (so ``rm f; mkdir f`` works in that order)."""
        if await self._child(parent, name) is not None:
            raise FsError(errno.EEXIST)
        t = time.time_ns()
        entry = pb.FolderEntry(folder_id=str(uuid.uuid4()), name=name,
                               parent_folder_id=parent.entry_id, mode=mode, uid=uid,
                               gid=gid, atime_ns=t, mtime_ns=t, ctime_ns=t)
        node = self.table.put_folder(entry, parent.ino)
        self.table.set_children(node, {})
        self.table.add_child(parent, name, node.ino)
        self.table.count_subfolder(parent, +1)
        self._dir_changed(parent)
        self.deleter.queue_mkdir(entry.folder_id, parent.entry_id, name, mode=mode,
                                 uid=uid, gid=gid, path=self.path_of(node),
                                 parent_ino=parent.ino)
        self.table.remember(node)
        return self.attrs(node)

    def _inside(self, folder: Node, ancestor: Node) -> bool | None:
        """Is ``folder`` ``ancestor`` or below it? None when the chain up is not known."""
        node: Node | None = folder
        for _ in range(4096):
            if node is None:
                return None
            if node.ino == ancestor.ino:
                return True
            if node.ino == ROOT_INODE:
                return False
            node = self.table.get(node.parent)
        return None

    def _move_folder_queued(self, node: Node, old_parent: Node, old_name: str,
                            new_parent: Node, new_name: str) -> bool:
        """A folder rename to a free name answered at once, its MoveEntry queued; False
        when it has to go the long way (the chain above the target is not known)."""
        inside = self._inside(new_parent, node)
        if inside is None:
            return False
        if inside:
            raise FsError(errno.EINVAL)  # not below itself
        self.table.drop_child(old_parent, old_name)
        node.name, node.parent = new_name, new_parent.ino
        node.ctime_ns = time.time_ns()
        self._dir_changed(old_parent, new_parent)
        self.table.add_child(new_parent, new_name, node.ino)
        self.table.count_subfolder(old_parent, -1)
        self.table.count_subfolder(new_parent, +1)
        self.deleter.queue_move(node.entry_id, new_parent.entry_id, new_name,
                                path=self.path_of(node), parent_ino=new_parent.ino,
                                from_ino=old_parent.ino, from_name=old_name)
        return True

    def _folder_change_applied(self, item: PendingDelete) -> None:
        """The gateway did a queued mkdir or move: take its attributes, keep the name and
        place the mount shows (a later queued move may have changed them already)."""
        if not item.parent_ino:
            # one a killed daemon journaled: this mount never showed it, so what it lists
            # may be behind the server now
            self.all_stale()
            for folder in [n for n in self.table.by_ino.values() if n.is_dir]:
                self.kernel.invalidate_inode(folder.ino)
            return
        self._entries_changed(item.parent_ino, item.from_ino)
        node = self.table.by_entry(item.entry_id)
        if node is None or node.deleted or item.reply is None \
                or item.reply.WhichOneof("entry") != "folder":
            return
        self.table.put_folder(item.reply.folder, node.parent, node.area, node.name)

    def _tree_dir(self, ino: int) -> Node:
        node = self.node(ino)
        if not node.is_dir:
            raise FsError(errno.ENOTDIR)
        if node.area is not Area.TREE:
            raise FsError(errno.EACCES)
        return node

    async def rmdir(self, parent_inode: int, name: str) -> None:
        parent, node, text = await self._existing(parent_inode, name)
        if not node.is_dir:
            raise FsError(errno.ENOTDIR)
        if node.area is Area.VIRTUAL:
            raise FsError(errno.EBUSY)
        if self._holds_local(node):
            raise FsError(errno.ENOTEMPTY)  # holds files not uploaded yet
        await self.deleter.flush()  # the files rm -r just removed, before their folder
        if node.area is Area.TRASH:
            await self.call(self.client.empty_trash, [node.entry_id])
        elif node.area is Area.TREE:
            await self.mutate((node.entry_id,), self.client.delete_folder, node.entry_id)
        else:
            raise FsError(errno.EACCES)
        self.table.mark_deleted(node)
        self.table.count_subfolder(parent, -1)
        self._dir_changed(parent)
        self.trash_changed()

    def trash_changed(self) -> None:
        self.table.get(TRASH_INODE).children = None  # type: ignore[union-attr]

    def _dir_changed(self, *folders: Node) -> None:
        """An entry was made, removed or renamed in these folders here: their mtime and
        ctime move, as on Linux (the gateway's own change of them lands later)."""
        t = time.time_ns()
        for folder in folders:
            folder.mtime_ns = folder.ctime_ns = t
        self._entries_changed(*(folder.ino for folder in folders))

    def _folder_changed(self, ino: int) -> None:
        folder = self.table.get(ino)
        if folder is not None:
            self._dir_changed(folder)

    def _entries_changed(self, *inos: int) -> None:
        """Entry changes in these folders: lookups and listings asked before now are asked
        again (``_child``, ``children``), so none brings back the old state."""
        for ino in inos:
            folder = self.table.get(ino)
            if folder is not None:
                folder.changes += 1

    async def _changes_now(self, folder: Node) -> int:
        """The folder's change count once queued folder changes are applied (``call`` would
        apply them anyway; counted before, they would make every reply look overtaken)."""
        if self.deleter.ordered:
            await self.deleter.flush(quiet=True)
        return folder.changes

    def _deletes_applied(self, items: list[PendingDelete]) -> None:
        """The gateway trashed queued unlinks: a lookup that left while they were still
        queued (hidden then) may come back with the file (no longer hidden now)."""
        self._entries_changed(*{item.parent_ino for item in items if item.parent_ino})
        self.trash_changed()

    async def _flush_deletes_quietly(self) -> None:
        """Flush queued deletes where a failure is not the caller's to report."""
        try:
            await self.deleter.flush()
        except errors.CloudError as exc:
            log.info("queued deletes not applied yet: %s", exc.message)

    def _deletes_failed(self, items: list[PendingDelete]) -> None:
        """Queued changes the gateway refused for good: show the server's tree again.

        A refused delete leaves the file in place; a refused mkdir means the folder shown
        here does not exist; a refused move leaves the folder where it was."""
        for item in items:
            if item.op == "mkdir":
                node = self.table.by_entry(item.entry_id)
                if node is not None:
                    parent_ino, name = node.parent, node.name
                    self.table.mark_deleted(node)
                    self.kernel.invalidate_entry(parent_ino, name)
            elif item.op == "move":
                node = self.table.by_entry(item.entry_id)
                if node is not None:
                    shown_in = self.table.get(node.parent)
                    if shown_in is not None:
                        self.table.drop_child(shown_in, node.name)
                    self.kernel.invalidate_entry(node.parent, node.name)
                    node.attrs_at = 0.0
                origin = self.table.get(item.from_ino) if item.from_ino else None
                if origin is not None:
                    origin.children = None
                    self.kernel.invalidate_entry(origin.ino, item.from_name)
            parent = self.table.get(item.parent_ino) if item.parent_ino else None
            if parent is not None:
                parent.children = None
                parent.attrs_at = 0.0
                self.kernel.invalidate_inode(parent.ino, attr_only=True)

    # --- files: create, open, read, write -------------------------------------------------

    async def create(
        self, parent_inode: int, name: str, mode: int, flags: int, caller: Caller
    ) -> tuple[Opened, Attributes]:
        parent = self._tree_dir(parent_inode)
        text = checked_name(name)
        node = await self._create_file(parent, text, mode, caller)
        fh = self._open_handle(node, flags)
        st = self.writer.get(node.ino)
        assert st is not None
        st.opens = self._open_count[node.ino]
        self.table.remember(node)
        return Opened(fh), self.attrs(node)

    async def _create_file(
        self, parent: Node, name: str, mode: int, caller: Caller
    ) -> Node:
        """A new file, local for now: its first upload (at close/fsync) creates it.

        It is visible at once (the parent's listing merges local files), and until it is
        uploaded, unlink, rename and chmod act on it locally.
        """
        known = parent.children.get(name) if parent.children is not None else None
        if known is not None or (parent.ino, name) in self.local_names:
            raise FsError(errno.EEXIST)  # (the kernel looked the name up just before)
        # the mode as asked (the kernel applied the umask): open(O_CREAT, 0) makes a 0000 file
        gid, perm = self._new_owner(parent, caller, stat.S_IMODE(mode))
        node = self.table.new_local_file(name, parent.ino, perm, caller.uid, gid)
        self.table.add_child(parent, name, node.ino)
        self.local_names[(parent.ino, name)] = node.ino
        self._dir_changed(parent)
        st = self.writer.create_empty(node.ino)
        st.gen += 1  # even an empty new file has to reach the server
        return node

    def _holds_local(self, folder: Node) -> bool:
        return any(p == folder.ino for p, _ in self.local_names)

    def _unlocal(self, node: Node) -> None:
        if self.local_names.get((node.parent, node.name)) == node.ino:
            del self.local_names[(node.parent, node.name)]

    async def _ensure_uploaded(self, node: Node) -> None:
        """Before a server-side operation on a local file: its first upload, now."""
        if node.local:
            await self.writer.wait(node.ino)
            if node.local:
                raise FsError(errno.EIO)

    def _open_handle(self, node: Node, flags: int) -> int:
        fh = self._fh()
        self.handles[fh] = Handle(node.ino, flags)
        self._open_count[node.ino] = self._open_count.get(node.ino, 0) + 1
        return fh

    async def open(self, inode: int, flags: int) -> Opened:
        node = self.node(inode)
        if node.is_dir:
            raise FsError(errno.EISDIR)
        writes = (flags & os.O_ACCMODE) in (os.O_WRONLY, os.O_RDWR)
        if writes and not node.writable:
            raise FsError(errno.EACCES if node.area is not Area.VIRTUAL else errno.EPERM)
        fh = self._open_handle(node, flags)
        if node.ino == STATUS_INODE:
            self.handles[fh].status = self.status_text()
            return Opened(fh, direct_io=True)
        if node.parent in self._prefetch_pending and not writes:
            # the first file opened in a folder listed here: its small files come too, in
            # batches, and this one's read waits for its batch (``cat *``, ``grep -r``)
            del self._prefetch_pending[node.parent]
            parent = self.table.get(node.parent)
            if parent is not None and parent.children is not None:
                self._prefetch_small(parent.children.values())
        await self._refresh(node)
        if writes and flags & os.O_TRUNC:
            st = self.writer.create_empty(inode)
            st.gen += 1
            node.mtime_ns = node.ctime_ns = time.time_ns()
        st = self.writer.get(inode)
        if st is not None:
            st.opens = self._open_count[inode]
        keep = st is None and node.kernel_version == node.version
        if st is None:
            node.kernel_version = node.version
        else:
            node.kernel_version = -1
        return Opened(fh, keep_cache=keep)

    def _handle(self, fh: int) -> Handle:
        handle = self.handles.get(fh)
        if handle is None:
            raise FsError(errno.EBADF)
        return handle

    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:
        # the kernel is answered from any contiguous buffer: a view of a chunk in memory is
        # not copied
        handle = self._handle(fh)
        if handle.ino == STATUS_INODE:
            return handle.status[off : off + size]
        node = self.node(handle.ino)
        if self.writer.get(node.ino) is not None:
            return self.writer.read(node.ino, off, size)
        if node.size == 0 or off >= node.size:
            return b""
        return await self.reader.read(node.entry_id, node.version, off, size, handle.read_state,
                                      size=node.size)

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self._handle(fh)
        if not handle.writes:
            raise FsError(errno.EBADF)
        node = self.node(handle.ino)
        await self._stage(node)
        st = self.writer.get(node.ino)
        assert st is not None
        if handle.flags & os.O_APPEND:
            off = st.size
        end = off + len(buf)
        if end > MAX_FILE_SIZE:
            raise FsError(errno.EFBIG)
        if end > st.size:
            await self._check_room(node, end)
        written = await self.writer.write(node.ino, off, buf)
        node.mtime_ns = node.ctime_ns = time.time_ns()
        return written

    async def _check_room(self, node: Node, new_size: int) -> None:
        """Refuse a write the quota cannot hold now, rather than fail its upload later."""
        if node.area is not Area.TREE:
            return  # a shared file counts against its owner's quota: the gateway decides
        await self.space.check_growth(node, new_size)

    async def flush(self, fh: int) -> None:
        handle = self._handle(fh)
        if not handle.writes:
            return
        node = self.table.get(handle.ino)
        st = self.writer.get(handle.ino)
        if node is not None and node.local and st is not None and st.size == 0:
            # A new file nothing was written to yet: its release uploads it (``touch``
            # ends there a moment later). dd dups its output and closes the original
            # before it writes: that flush would create the empty file on the gateway,
            # a whole upload, only for the real one to follow.
            return
        self.writer.schedule(handle.ino)

    async def fsync(self, fh: int, datasync: bool) -> None:
        handle = self._handle(fh)
        await self.writer.wait(handle.ino)

    async def release(self, fh: int) -> None:
        handle = self.handles.pop(fh, None)
        if handle is None:
            return
        ino = handle.ino
        left = self._open_count.get(ino, 1) - 1
        if left:
            self._open_count[ino] = left
        else:
            self._open_count.pop(ino, None)
        if handle.writes:
            self.writer.schedule(ino)
        self.writer.release(ino)
        node = self.table.get(ino)
        if not left and (node is None or node.deleted):
            self.writer.discard(ino)  # the last descriptor of an unlinked file: it goes now

    def _upload_target(self, ino: int) -> UploadTarget | None:
        node = self.table.get(ino)
        if node is None or node.deleted or not (node.entry_id or node.local):
            return None
        parent = self.table.get(node.parent)
        if node.local and (parent is None or not parent.entry_id):
            return None
        return UploadTarget(
            node.entry_id,
            node.name,
            (node.ftype or stat.S_IFREG) | node.mode,  # with its type: a mode of 0 stays 0
            node.uid,
            node.gid,
            node.mtime_ns,
            self.path_of(node),
            parent_id=parent.entry_id if parent is not None else "",
            base_version=node.version,
            # a create changes the folder: with the time it has here, so a time set on it
            # since (cp -a, tar) is what the gateway keeps
            parent_mtime_ns=parent.mtime_ns if node.local and parent is not None else 0,
            rdev=node.rdev,
        )

    def _uploaded(self, ino: int, st: Any, reply: pb.UploadFileResponse) -> None:
        node = self.table.get(ino)
        if node is None:
            self.space.uploaded(None)
            return
        # the upload turned staged growth into used space: accounted for without asking
        # GetStorageInfo again on the next write
        self.space.uploaded(int(reply.entry.file_size) - (0 if node.local else node.size))
        mtime = node.mtime_ns
        current = self.writer.get(ino)
        if node.local:
            self._unlocal(node)
            self.table.assign_id(node, reply.entry.file_id or reply.file_id)
            # An entry change in its folder: a listing asked for while this upload was
            # out may predate the file and, now that it is no longer a local name to
            # merge in, would leave it out (``children`` asks again).
            self._entries_changed(node.parent)
        self.table.refresh_file(node, reply.entry)
        if current is not None and current.dirty:
            node.mtime_ns = mtime
        node.kernel_version = node.version if current is st else -1
        self.reader.forget(node.entry_id)

    # --- removing and renaming ------------------------------------------------------------

    async def unlink(self, parent_inode: int, name: str) -> None:
        parent, node, text = await self._existing(parent_inode, name)
        if node.is_dir:
            raise FsError(errno.EISDIR)
        await self._remove_file(node, parent, text)

    def _let_go(self, node: Node) -> None:
        """A file's name is gone: its local copy goes too, unless descriptors still have it
        open (then the last ``release`` drops it; nothing of it is uploaded any more)."""
        if not self._open_count.get(node.ino):
            self.writer.discard(node.ino)

    async def _remove_name(self, node: Node, parent: Node, name: str) -> None:
        """unlink of one name of a file with several (hard links): the file, its content,
        its other names and its open descriptors stay; nothing goes to the trash."""
        await self.mutate(
            (node.entry_id, node.entry_id),  # echoed as "deleted" (the name) and "updated"
            self.client.delete_file,
            node.entry_id,
            parent_folder_id=parent.entry_id,
            name=name,
        )
        self.table.drop_name(node, parent, name)
        node.attrs_at = 0.0  # nlink and ctime as the gateway has them, at the next stat
        self._dir_changed(parent)

    async def _remove_file(self, node: Node, parent: Node | None = None,
                           name: str = "") -> None:
        """Remove a file's name (``name`` in ``parent``; the node's own when not given)."""
        if node.area is Area.VIRTUAL:
            raise FsError(errno.EPERM)
        if node.area is Area.TREE and not node.local and node.attrs_at == 0.0:
            # whether the file has other names decides what goes: another client changed
            # it (the change feed marked it stale), perhaps linked it; an rm -r of a listed
            # tree pays no call here
            await self._refresh(node)
        if node.area is Area.TREE and node.nlink > 1 and not node.local:
            await self._remove_name(node, parent or self.node(node.parent), name or node.name)
            return
        if node.local:
            await self.writer.settle(node.ino)
        if node.local:  # never reached the server: nothing to tell it
            self._unlocal(node)
            self._let_go(node)
            self.table.mark_deleted(node)
            self._folder_changed(node.parent)
            return
        if node.area is Area.TRASH:
            await self.call(self.client.empty_trash, [node.entry_id])
        elif node.area is Area.TREE:
            st = self.writer.get(node.ino)
            if st is not None and st.dirty:
                # The trash keeps what was written last: send it before the file goes
                # there (a restore would otherwise bring back older content).
                await self.writer.wait(node.ino)
            if self._open_count.get(node.ino):
                # open descriptors keep reading and writing it until the last close, as on
                # ext4: a local copy holds it from now on (the trash gets it as it is now)
                await self._stage(node)
            # to the trash in the background (deleter.py): rm -r pays one call per batch
            self.deleter.queue(node.entry_id, self.path_of(node), node.parent)
        else:
            raise FsError(errno.EACCES)
        self._let_go(node)
        self.reader.forget(node.entry_id)
        self.table.mark_deleted(node)
        self._folder_changed(node.parent)
        self.trash_changed()

    async def rename(
        self,
        parent_inode_old: int,
        name_old: str,
        parent_inode_new: int,
        name_new: str,
        *,
        noreplace: bool = False,
        exchange: bool = False,
    ) -> None:
        """rename(2); ``noreplace`` and ``exchange`` are renameat2's flags (an exchange is
        not supported: EINVAL)."""
        if exchange:
            raise FsError(errno.EINVAL)
        old_parent, node, old_name = await self._existing(parent_inode_old, name_old)
        new_parent = self.node(parent_inode_new)
        new_name = checked_name(name_new)
        if not new_parent.is_dir:
            raise FsError(errno.ENOTDIR)
        target = await self._child(new_parent, new_name)
        if target is not None and target.ino == node.ino:
            return
        if target is not None and noreplace:
            raise FsError(errno.EEXIST)
        if node.area is Area.VIRTUAL or (target is not None and target.area is Area.VIRTUAL):
            raise FsError(errno.EBUSY)
        if target is not None and target.is_dir and self._holds_local(target):
            raise FsError(errno.ENOTEMPTY)  # holds files not uploaded yet
        if target is not None and target.local:
            await self.writer.settle(target.ino)
        if node.local:
            await self.writer.settle(node.ino)
        if node.local and new_parent.area is Area.TREE and new_parent.ino != TRASH_INODE \
                and (target is None or (target.local and not target.is_dir)):
            # neither name is on the server yet: a local rename, the upload follows it
            if target is not None:
                self._unlocal(target)
                self.writer.discard(target.ino)
                self.table.mark_deleted(target)
            self._unlocal(node)
            self.table.drop_child(old_parent, old_name)
            node.name, node.parent = new_name, new_parent.ino
            node.ctime_ns = time.time_ns()
            self.table.add_child(new_parent, new_name, node.ino)
            self.local_names[(new_parent.ino, new_name)] = node.ino
            self._dir_changed(old_parent, new_parent)
            self.writer.journal(node.ino)
            return
        if target is not None and target.local and not target.is_dir:
            self._unlocal(target)  # replaced before it was ever uploaded
            self.writer.discard(target.ino)
            self.table.mark_deleted(target)
            target = None
        if node.is_dir and target is None and node.area is Area.TREE \
                and new_parent.area is Area.TREE and self._queues_folders() \
                and self._move_folder_queued(node, old_parent, old_name, new_parent, new_name):
            return
        await self.deleter.flush()  # MoveEntry must not meet (or replace) a file rm removed
        await self._ensure_uploaded(node)
        if new_parent.ino == TRASH_INODE and node.area is Area.TREE:
            if node.is_dir:
                await self.mutate(
                    (node.entry_id,), self.client.delete_folder, node.entry_id, recursive=True
                )
                self.table.mark_deleted(node)
                self.table.count_subfolder(old_parent, -1)
                self._dir_changed(old_parent)
                self.trash_changed()
            else:
                await self._remove_file(node, old_parent, old_name)
            return
        if new_parent.area is not Area.TREE:
            raise FsError(errno.EXDEV if new_parent.area is Area.SHARED else errno.EACCES)
        if node.area is Area.SHARED:
            raise FsError(errno.EXDEV)
        if target is not None:
            if node.is_dir and not target.is_dir:
                raise FsError(errno.ENOTDIR)
            if not node.is_dir and target.is_dir:
                raise FsError(errno.EISDIR)
        if node.area is Area.TRASH:
            if target is not None:
                if target.is_dir:
                    await self.call(self.client.delete_folder, target.entry_id)
                    self.table.mark_deleted(target)
                    self.table.count_subfolder(new_parent, -1)
                else:
                    await self._remove_file(target, new_parent, new_name)
                    await self.deleter.flush()  # the name is free once it is in the trash
            reply = await self.mutate(
                (
                    node.entry_id,
                    name_key(new_parent.entry_id, new_name),
                ),
                self.client.restore_file,
                node.entry_id,
                new_parent_folder_id=new_parent.entry_id,
                new_name=new_name,
            )
            self.table.drop_child(old_parent, old_name)
            restored = self.table.put_entry(reply, new_parent.ino)
            restored.name = new_name
            self.table.add_child(new_parent, new_name, restored.ino)
            if restored.is_dir:
                self.table.count_subfolder(new_parent, +1)
            self._dir_changed(new_parent)
            self.trash_changed()
            return
        # a target with other names is not replaced, only its name goes (its file stays)
        target_named_elsewhere = target is not None and not target.is_dir and target.nlink > 1
        if target is not None and not target.is_dir and self._open_count.get(target.ino) \
                and not target_named_elsewhere:
            await self._stage(target)  # replaced while open: its descriptors keep a copy
        keys = (node.entry_id,) if target is None else (node.entry_id, target.entry_id)
        several = not node.is_dir and node.nlink > 1  # say which of its names moves
        try:
            reply = await self.mutate(
                keys,
                self.client.move_entry,
                node.entry_id,
                new_parent.entry_id,
                new_name,
                replace_existing=True,
                old_parent_folder_id=old_parent.entry_id if several else "",
                old_name=old_name if several else "",
            )
        except errors.FailedPrecondition:
            raise FsError(errno.ENOTEMPTY) from None
        self.table.drop_child(old_parent, old_name)
        if target is not None and target_named_elsewhere:
            self.table.drop_name(target, new_parent, new_name)
            target.attrs_at = 0.0
        elif target is not None:
            self._let_go(target)
            self.reader.forget(target.entry_id)
            self.table.mark_deleted(target)
        node.name, node.parent = new_name, new_parent.ino
        node.ctime_ns = time.time_ns()
        self._apply_reply(node, reply)
        self.table.add_child(new_parent, new_name, node.ino)
        if node.is_dir:
            self.table.count_subfolder(old_parent, -1)
            if target is None:  # (a folder it replaced was counted there already)
                self.table.count_subfolder(new_parent, +1)
        self._dir_changed(old_parent, new_parent)

    def _apply_reply(self, node: Node, reply: pb.EntryResponse) -> None:
        """Attributes a changing call answered with (no stat needed after it)."""
        which = reply.WhichOneof("entry")
        if which == "folder":
            self.table.put_folder(reply.folder, node.parent, node.area, node.name)
        elif which == "file":
            st = self.writer.get(node.ino)
            if st is None or not st.dirty:
                old = node.version
                self.table.refresh_file(node, reply.file)
                if node.version != old:
                    self.reader.forget(node.entry_id)

    # --- links, nodes ---------------------------------------------------------------------

    async def symlink(
        self, parent_inode: int, name: str, target: str, caller: Caller
    ) -> Attributes:
        parent = self._tree_dir(parent_inode)
        text = checked_name(name)
        if len(os.fsencode(target)) > SYMLINK_MAX:
            raise FsError(errno.ENAMETOOLONG)
        await self.deleter.flush()  # a file of that name may be on its way to the trash
        reply = await self.mutate(
            (name_key(parent.entry_id, text),),
            self.client.create_symlink,
            parent.entry_id,
            text,
            target,
            uid=caller.uid,
            gid=self._new_owner(parent, caller, 0)[0],
        )
        node = self.table.put_entry(reply, parent.ino)
        self.table.add_child(parent, text, node.ino)
        self._dir_changed(parent)
        self.table.remember(node)
        return self.attrs(node)

    async def link(self, inode: int, new_parent_inode: int, new_name: str) -> Attributes:
        """A hard link: a further name on the gateway for the same file (same inode here)."""
        text = checked_name(new_name)
        node = self.node(inode)
        parent = self.node(new_parent_inode)
        if not parent.is_dir:
            raise FsError(errno.ENOTDIR)
        if node.is_dir or node.area is Area.VIRTUAL:
            raise FsError(errno.EPERM)  # link(2) on a folder
        if Area.SHARED in (node.area, parent.area):
            raise FsError(errno.EXDEV)  # another account's file: links stay in one account
        if node.area is not Area.TREE or parent.area is not Area.TREE:
            raise FsError(errno.EACCES)  # the trash is read-only
        if await self._child(parent, text) is not None:
            raise FsError(errno.EEXIST)
        await self.deleter.flush()  # a name rm just removed, or the file's own delete
        await self._ensure_uploaded(node)
        if node.nlink >= MAX_LINKS:
            raise FsError(errno.EMLINK)
        try:
            reply = await self.mutate(
                (node.entry_id,),
                self.client.link_file,
                node.entry_id,
                parent.entry_id,
                text,
            )
        except errors.FailedPrecondition:
            # the gateway's count of names reached MAX_LINKS (links made elsewhere)
            raise FsError(errno.EMLINK) from None
        self.table.add_name(node, parent, text)
        self._apply_reply(node, reply)  # nlink and ctime as the gateway counts them
        self._dir_changed(parent)
        self.table.remember(node)
        return self.attrs(node)

    async def mknod(
        self, parent_inode: int, name: str, mode: int, rdev: int, caller: Caller
    ) -> Attributes:
        parent = self._tree_dir(parent_inode)
        text = checked_name(name)
        ftype = stat.S_IFMT(mode)
        if ftype not in (stat.S_IFREG, *SPECIAL_TYPES):
            raise FsError(errno.EINVAL)
        node = await self._create_file(parent, text, mode, caller)
        if ftype != stat.S_IFREG:
            # a fifo, socket or device: an entry with its type and number and no content,
            # stored like a new empty file (its first upload); its I/O is the kernel's
            node.ftype, node.rdev = ftype, rdev
        self.writer.schedule(node.ino)
        self.table.remember(node)
        return self.attrs(node)

    # --- statfs ---------------------------------------------------------------------------

    async def statfs(self) -> FsStats:
        """The account's quota as a filesystem's size (``df``), less what staged writes
        will add (asked afresh: df after buying a tier shows it)."""
        info = await self.space.info(fresh=True)
        pending = self.space.pending_growth()
        block = 4096
        free = max(0, int(info.available_bytes) - pending) // block
        return FsStats(
            f_bsize=block,
            f_frsize=block,
            f_blocks=int(info.allocated_bytes) // block,
            f_bfree=free,
            f_bavail=free,
            f_files=int(info.file_count) + 1_000_000,
            f_ffree=1_000_000,
            f_favail=1_000_000,
            f_namemax=NAME_MAX,
        )

    # --- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        report = self.writer.status()
        report.update(self.deleter.status())
        report["mountpoint"] = self.mountpoint
        report["watch"] = "connected" if self.watch_ok else "disconnected"
        report["cache_bytes"] = self.cache.size
        report["cache_capacity"] = self.cache.capacity
        report["local_files"] = len(self.local_names)
        report["small_cache_bytes"] = self.reader.small.size
        report["small_hits"] = self.reader.small_hits
        report["small_fetches"] = self.reader.small_fetches
        report["prefetched"] = self.reader.prefetched
        if self.direct is not None:
            report["direct_chunks"] = self.direct.fetched
            report["direct_failures"] = self.direct.failed
        report["pid"] = os.getpid()
        report["metrics"] = self.metrics()
        return report

    def metrics(self) -> dict[str, int]:
        """The mount's own counts since it started (``cloudgrpc status --json``, README)."""
        figures = {**self.writer.metrics(), **self.reader.metrics(),
                   "chunk_cache_bytes": self.cache.size,
                   "chunk_cache_capacity": self.cache.capacity}
        if self.direct is not None:
            figures["direct_chunks"] = self.direct.fetched
            figures["direct_failures"] = self.direct.failed
        return figures

    def status_text(self) -> bytes:
        return (json.dumps(self.status(), indent=2, sort_keys=True) + "\n").encode()

    # --- the change feed (change_feed.py) -------------------------------------------------

    @property
    def watch_ok(self) -> bool:
        """Is the change feed up? Then it tells of other clients' changes."""
        return self.feed.connected

    def all_stale(self) -> None:
        """Nothing cached can be trusted (the feed was down): ask again on next use."""
        for node in self.table.by_ino.values():
            node.attrs_at = 0.0
            if node.is_dir and node.ino != TRASH_INODE:
                node.children = None
        self.trash_changed()

    # --- life cycle -----------------------------------------------------------------------

    async def serve(self, nursery: trio.Nursery) -> None:
        """Start the background tasks (change feed, upload workers) in ``nursery``."""
        self.reader.nursery = nursery
        # Recovery runs without our origin: the files it brings back come to this mount's
        # caches through the change feed like anyone else's.
        nursery.start_soon(self._recover)
        # Every other call of this daemon (this task, the FUSE handlers pyfuse3.main starts
        # from it, the queues) names the mount as its origin, and the gateway does not echo
        # their changes back on our WatchChanges stream (see ChangeFeed.apply's "hello").
        CALL_ORIGIN.set(self.origin)
        nursery.start_soon(self.feed.run)
        nursery.start_soon(self.writer.run)
        nursery.start_soon(self.deleter.run)

    async def _recover(self) -> None:
        """What a killed daemon left: its queued deletes first, then its staged uploads
        (one of which may re-create a name a delete frees)."""
        await self._flush_deletes_quietly()
        await self.writer.recover()

    async def sync(self, deadline: float | None = None) -> list[dict[str, Any]]:
        """Wait for the upload queue and the queued deletes; what is left, as dicts."""
        left = [item.as_dict() for item in await self.deleter.sync(deadline)]
        return left + [job.as_dict() for job in await self.writer.sync(deadline)]

    def stop_watch(self) -> None:
        self.feed.stop()
        if self.direct is not None:
            self.direct.close()
