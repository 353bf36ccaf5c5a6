"""The inode table: kernel inode numbers <-> server entry ids, with cached attributes.

The kernel names everything by inode number; the gateway names files, folders and symlinks
by id. This table is the one place that maps the two, keeps each entry's attributes (with
the time they were fetched, so callers can tell fresh from stale), the children of folders
that were listed (so ``lookup`` after ``readdir`` costs no call) and the kernel's lookup
counts (``forget``). A few inodes are virtual: ``.trash/`` and ``Shared/`` are views of
server lists, ``.cloudgrpc-status`` is a read-only file with the upload queue.

Inode numbers are never reused within a mount, so a stale kernel reference can never
reach another entry (no generation numbers needed).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import NoReturn

from cloudgrpc_proto import cloud_storage_pb2 as pb

ROOT_INODE = 1  # the kernel's number for a filesystem's root (FUSE_ROOT_ID)
TRASH_INODE = ROOT_INODE + 1
SHARED_INODE = ROOT_INODE + 2
STATUS_INODE = ROOT_INODE + 3
FIRST_DYNAMIC_INODE = 16

TRASH_NAME = ".trash"
SHARED_NAME = "Shared"
STATUS_NAME = ".cloudgrpc-status"
VIRTUAL_NAMES = {TRASH_NAME: TRASH_INODE, SHARED_NAME: SHARED_INODE, STATUS_NAME: STATUS_INODE}

S_IFMT = 0o170000  # the file-type bits of a mode (the stat module's S_IFMT is a function)
# entries stored with their type (mknod): their I/O is the kernel's, never the mount's
SPECIAL_TYPES = (stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK)
BLOCK_SIZE = 128 * 1024  # st_blksize: what cp and friends use as their buffer size


@dataclass
class Attributes:
    """What the kernel is told about an inode (the fields of ``struct stat`` it asks for,
    plus how long it may keep them): plain values, so the layers above the FUSE adapter
    and their tests need no pyfuse3; the adapter copies them into ``EntryAttributes``."""

    st_ino: int
    st_mode: int
    st_nlink: int
    st_uid: int
    st_gid: int
    st_size: int
    st_atime_ns: int
    st_mtime_ns: int
    st_ctime_ns: int
    st_rdev: int = 0
    st_blksize: int = 0
    st_blocks: int = 0
    generation: int = 0
    entry_timeout: float = 0.0
    attr_timeout: float = 0.0


class Kind(Enum):
    DIR = "dir"
    FILE = "file"
    LINK = "link"


class Area(Enum):
    """Where an entry lives: it decides what the mount allows on it."""

    TREE = "tree"  # the account's own tree: read-write
    TRASH = "trash"  # in .trash/: read-only, mv out restores, rm deletes for good
    SHARED = "shared"  # in Shared/: another user's file, read or write per the share
    VIRTUAL = "virtual"  # .trash, Shared, .cloudgrpc-status themselves


@dataclass
class Node:
    ino: int
    entry_id: str
    kind: Kind
    name: str
    parent: int
    area: Area = Area.TREE
    mode: int = 0o644  # permission bits only
    uid: int = 0
    gid: int = 0
    size: int = 0
    atime_ns: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    version: int = 0
    target: str = ""
    permission: str = "owner"
    lookups: int = 0
    attrs_at: float = 0.0  # time.monotonic() of the last refresh from the server
    children: Children | None = None  # name -> inode, for a listed folder
    children_at: float = 0.0
    deleted: bool = False
    kernel_version: int = -1  # version the kernel's page cache holds (keep_cache)
    # A folder's count of entry changes this mount made or saw applied (create, unlink,
    # rmdir, rename, a queued delete the gateway answered): a lookup or listing reply that
    # was asked for before the count moved may describe the tree before that change.
    changes: int = 0
    subfolders: int = 0  # a folder's live subfolders as the gateway last counted them
    ftype: int = 0  # a Kind.FILE's S_IFMT type when it is a fifo, socket or device (else 0)
    rdev: int = 0  # a device's number
    # A file's names (hard links) as the gateway counts them; the node's ``name`` and
    # ``parent`` are one of them, each folder's ``children`` maps its own to this inode.
    nlink: int = 1
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def is_dir(self) -> bool:
        return self.kind is Kind.DIR

    @property
    def local(self) -> bool:
        """Created through this mount and not uploaded yet: no server id so far."""
        return not self.entry_id and self.ino >= FIRST_DYNAMIC_INODE

    @property
    def writable(self) -> bool:
        """May content or attributes be changed through the mount?"""
        if self.area is Area.TREE:
            return True
        return self.area is Area.SHARED and self.permission == "write"


def permission_bits(mode: int, default: int) -> int:
    """A wire mode's permission bits. Without file-type bits a 0 means "not set" (older
    clients); with them (S_IFREG, S_IFDIR ...) the bits are as given, 0 included."""
    perm = mode & 0o7777
    return perm if perm or mode & S_IFMT else default


def _now_ns() -> int:
    return time.time_ns()


class Children(dict[str, int]):
    """A listed folder's entries, name -> inode, that keep the names of the folders among
    them as they change: a folder's link count is asked on every ``getattr`` (the kernel
    asks after each mkdir and rename in it), and counting a folder of thousands each time
    made those calls O(entries). A child's kind is looked up when its name goes in; a node
    never changes between folder and file."""

    __slots__ = ("_dirs", "_is_dir")

    def __init__(self, is_dir: Callable[[int], bool], items: Iterable[tuple[str, int]] = ()
                 ) -> None:
        super().__init__()
        self._is_dir = is_dir
        self._dirs: set[str] = set()
        for name, ino in items:
            self[name] = ino

    @property
    def folders(self) -> int:
        return len(self._dirs)

    def __setitem__(self, name: str, ino: int) -> None:
        super().__setitem__(name, ino)
        if self._is_dir(ino):
            self._dirs.add(name)
        else:
            self._dirs.discard(name)

    def __delitem__(self, name: str) -> None:
        super().__delitem__(name)
        self._dirs.discard(name)

    def pop(self, name: str, *default: int | None) -> int | None:  # type: ignore[override]
        if name not in self:
            if default:
                return default[0]
            raise KeyError(name)
        ino = self[name]
        del self[name]
        return ino

    def _unsupported(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("Children changes one name at a time (the folder count follows)")

    update = setdefault = popitem = clear = _unsupported  # type: ignore[assignment]


class InodeTable:
    """Nodes by inode number and by server id."""

    def __init__(self, root_folder_id: str, uid: int | None = None,
                 gid: int | None = None) -> None:
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid
        self._next = FIRST_DYNAMIC_INODE
        self.by_ino: dict[int, Node] = {}
        self.by_id: dict[str, int] = {}
        t = _now_ns()
        root = Node(ROOT_INODE, root_folder_id, Kind.DIR, "", ROOT_INODE, mode=0o755,
                    uid=self.uid, gid=self.gid, atime_ns=t, mtime_ns=t, ctime_ns=t)
        self._add(root)
        for name, ino in VIRTUAL_NAMES.items():
            kind = Kind.FILE if ino == STATUS_INODE else Kind.DIR
            mode = 0o444 if kind is Kind.FILE else 0o555
            self._add(Node(ino, "", kind, name, ROOT_INODE, area=Area.VIRTUAL, mode=mode,
                           uid=self.uid, gid=self.gid, atime_ns=t, mtime_ns=t, ctime_ns=t))

    # --- access ---------------------------------------------------------------------------

    def _add(self, node: Node) -> Node:
        self.by_ino[node.ino] = node
        if node.entry_id:
            self.by_id[node.entry_id] = node.ino
        return node

    def get(self, ino: int) -> Node | None:
        return self.by_ino.get(ino)

    def by_entry(self, entry_id: str) -> Node | None:
        ino = self.by_id.get(entry_id)
        return self.by_ino.get(ino) if ino is not None else None

    @property
    def root(self) -> Node:
        return self.by_ino[ROOT_INODE]

    def _node_for(self, entry_id: str, kind: Kind, name: str, parent: int) -> Node:
        node = self.by_entry(entry_id)
        if node is None:
            node = self._add(Node(self._next, entry_id, kind, name, parent))
            self._next += 1
        node.kind = kind
        node.name = name
        node.parent = parent
        node.deleted = False
        return node

    def new_local_file(self, name: str, parent: int, mode: int, uid: int, gid: int) -> Node:
        """A file created here: it gets its server id from its first upload (``assign_id``)."""
        t = _now_ns()
        node = self._add(Node(self._next, "", Kind.FILE, name, parent, mode=mode & 0o7777,
                              uid=uid, gid=gid, atime_ns=t, mtime_ns=t, ctime_ns=t,
                              attrs_at=time.monotonic()))
        self._next += 1
        return node

    def assign_id(self, node: Node, entry_id: str) -> None:
        """The first upload of a local file created it on the server as ``entry_id``."""
        other = self.by_entry(entry_id)
        if other is not None and other is not node:
            # a listing met the new file before its upload's answer did: one node wins
            folder = self.by_ino.get(other.parent)
            if folder is not None and folder.children is not None \
                    and folder.children.get(other.name) == other.ino:
                folder.children[other.name] = node.ino
            del self.by_id[entry_id]
            other.deleted = True
            self._maybe_drop(other)
        node.entry_id = entry_id
        self.by_id[entry_id] = node.ino

    # --- filling from server answers -----------------------------------------------------

    def _owner(self, uid: int, gid: int) -> tuple[int, int]:
        """Entries written by clients that do not set uid/gid (0/0) belong to the mounter."""
        if uid == 0 and gid == 0:
            return self.uid, self.gid
        return uid, gid

    def put_folder(self, entry: pb.FolderEntry, parent: int, area: Area = Area.TREE,
                   name: str | None = None) -> Node:
        if entry.folder_id == self.root.entry_id:
            node = self.root
        else:
            node = self._node_for(entry.folder_id, Kind.DIR, name or entry.name, parent)
        node.area = area
        node.mode = permission_bits(entry.mode, 0o755)
        node.uid, node.gid = self._owner(entry.uid, entry.gid)
        if node.ino == ROOT_INODE:
            node.uid, node.gid = self.uid, self.gid
        node.atime_ns, node.mtime_ns, node.ctime_ns = entry.atime_ns, entry.mtime_ns, \
            entry.ctime_ns
        node.permission = "owner"
        node.attrs_at = time.monotonic()
        return node

    def put_file(self, entry: pb.FileEntry, parent: int, area: Area = Area.TREE,
                 name: str | None = None) -> Node:
        kind = Kind.LINK if entry.symlink_target else Kind.FILE
        node = self._node_for(entry.file_id, kind, name or entry.filename, parent)
        self.refresh_file(node, entry)
        node.area = area
        return node

    def refresh_file(self, node: Node, entry: pb.FileEntry) -> None:
        """Copy a FileEntry's attributes onto ``node`` (name and place are left alone)."""
        node.kind = Kind.LINK if entry.symlink_target else Kind.FILE
        node.target = entry.symlink_target
        ftype = entry.mode & S_IFMT
        # only the account's own entries are shown with their type: a device entry that
        # reached Shared/ (another account's) is an empty regular file here
        own = entry.permission in ("", "owner")
        node.ftype = ftype if ftype in SPECIAL_TYPES and own else 0
        node.rdev = int(entry.rdev) if node.ftype else 0
        node.mode = permission_bits(entry.mode, 0o777 if node.kind is Kind.LINK else 0o644)
        node.uid, node.gid = self._owner(entry.uid, entry.gid)
        node.size = int(entry.file_size)
        node.atime_ns, node.mtime_ns, node.ctime_ns = entry.atime_ns, entry.mtime_ns, \
            entry.ctime_ns
        node.version = int(entry.version)
        node.nlink = max(int(entry.nlink), 1)  # 0 from a gateway without hard links
        node.permission = entry.permission or "owner"
        node.attrs_at = time.monotonic()

    def put_entry(self, response: pb.EntryResponse, parent: int,
                  area: Area = Area.TREE) -> Node:
        if response.WhichOneof("entry") == "folder":
            return self.put_folder(response.folder, parent, area)
        return self.put_file(response.file, parent, area)

    # --- folders' children ---------------------------------------------------------------

    def set_children(self, folder: Node, children: dict[str, int]) -> None:
        folder.children = Children(self._is_dir, children.items())
        folder.children_at = time.monotonic()

    def add_child(self, folder: Node, name: str, ino: int) -> None:
        if folder.children is not None:
            folder.children[name] = ino

    def drop_child(self, folder: Node, name: str) -> None:
        if folder.children is not None:
            folder.children.pop(name, None)

    def drop_name(self, node: Node, folder: Node, name: str) -> None:
        """One name of a file with several is gone: the node lives on under its others."""
        self.drop_child(folder, name)
        node.nlink = max(node.nlink - 1, 1)
        node.ctime_ns = _now_ns()
        if (node.parent, node.name) == (folder.ino, name):
            # the node's own name was that one: any folder listed here that holds another
            # name of it becomes its place (else the next listing or lookup tells)
            for other in self.by_ino.values():
                if other.children is None:
                    continue
                for child_name, ino in other.children.items():
                    if ino == node.ino:
                        node.parent, node.name = other.ino, child_name
                        return

    def add_name(self, node: Node, folder: Node, name: str) -> None:
        """A further name of the file (a hard link made here)."""
        self.add_child(folder, name, node.ino)
        node.nlink += 1
        node.ctime_ns = _now_ns()

    def mark_deleted(self, node: Node) -> None:
        """The entry is gone (trashed or replaced): unlink it from its parent's view."""
        parent = self.by_ino.get(node.parent)
        if parent is not None and parent.children is not None \
                and parent.children.get(node.name) == node.ino:
            del parent.children[node.name]
        node.deleted = True
        self._maybe_drop(node)

    # --- lookup counts --------------------------------------------------------------------

    def remember(self, node: Node, count: int = 1) -> None:
        node.lookups += count

    def forget(self, ino: int, count: int) -> None:
        node = self.by_ino.get(ino)
        if node is None:
            return
        node.lookups = max(0, node.lookups - count)
        self._maybe_drop(node)

    def _maybe_drop(self, node: Node) -> None:
        if node.ino < FIRST_DYNAMIC_INODE or node.lookups > 0 or not node.deleted:
            return
        if node.extra.get("pinned"):
            return
        self.by_ino.pop(node.ino, None)
        if node.entry_id and self.by_id.get(node.entry_id) == node.ino:
            del self.by_id[node.entry_id]

    # --- attributes -----------------------------------------------------------------------

    def subfolders(self, folder: Node) -> int:
        """Folders in ``folder``: counted from its children when it was listed here (they
        follow this mount's mkdir, rmdir and rename at once), else the gateway's count
        (which ``count_subfolder`` keeps up with this mount's changes). The root always
        counts ``.trash`` and ``Shared`` as it lists them: find(1) trusts nlink - 2 as
        the number of folders to descend into."""
        if folder.children is None:
            if folder.ino == ROOT_INODE:
                return folder.subfolders + sum(
                    1 for ino in VIRTUAL_NAMES.values() if self.by_ino[ino].kind is Kind.DIR)
            return folder.subfolders
        return folder.children.folders

    def _is_dir(self, ino: int) -> bool:
        child = self.by_ino.get(ino)
        return child is not None and child.kind is Kind.DIR

    def count_subfolder(self, folder: Node, delta: int) -> None:
        """This mount made (+1) or removed (-1) a folder in ``folder``: while its children
        are not listed here, the gateway's count it keeps follows at once."""
        if folder.children is None:
            folder.subfolders = max(0, folder.subfolders + delta)

    def attributes(self, node: Node, *, size: int | None = None, timeout: float = 1.0,
                   mtime_ns: int | None = None) -> Attributes:
        """What the kernel sees; the trash and read-only shares show no write bits."""
        perm = node.mode
        if not node.writable and node.kind is not Kind.LINK:
            perm &= ~0o222
        rdev = 0
        if node.kind is Kind.DIR:
            mode = stat.S_IFDIR | perm
            nlink = 2 + self.subfolders(node)  # "." and the name, each ".." below
        elif node.kind is Kind.LINK:
            mode = stat.S_IFLNK | 0o777
            nlink = node.nlink
        else:
            mode = (node.ftype or stat.S_IFREG) | perm
            nlink = 0 if node.deleted else node.nlink  # unlinked, open: 0 as on ext4
            rdev = node.rdev
        nbytes = node.size if size is None else size
        if node.kind is Kind.LINK:
            nbytes = len(node.target.encode())
        elif node.kind is Kind.DIR:
            nbytes = 4096
        return Attributes(
            st_ino=node.ino,
            st_mode=mode,
            st_nlink=nlink,
            st_uid=node.uid,
            st_gid=node.gid,
            st_size=nbytes,
            st_atime_ns=node.atime_ns or node.mtime_ns,
            st_mtime_ns=node.mtime_ns if mtime_ns is None else mtime_ns,
            st_ctime_ns=node.ctime_ns or node.mtime_ns,
            st_rdev=rdev,
            st_blksize=BLOCK_SIZE,
            st_blocks=(nbytes + 511) // 512,
            entry_timeout=timeout,
            attr_timeout=timeout,
        )
