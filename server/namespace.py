"""The file tree of every account: folders, files, symlinks, trash and shares.

All metadata rules live here, behind typed errors: who may see or change an entry, names
unique within a folder, no folder moved into itself, soft delete into the trash and
restore from it, quota accounting on commit and on permanent delete. Every method runs
in one database transaction, so a rename or an overwrite is atomic whatever it holds.

Names and inodes are apart, as on a local filesystem (and in JuiceFS and S3QL): a ``files``
row is the inode (content, attributes, nlink, trash state) and every name of it, in a
folder, is a ``file_names`` row; hard links are several rows naming one file, none of them
special. On the wire a file is still its id, and a (folder, name) pair says which of its
names an operation means; a file reached by id shows its oldest name. A file goes to the
trash only when its last name goes, and keeps that name there (see ``FileName``).
"""

from __future__ import annotations

import datetime as dt
import logging
import mimetypes
import posixpath
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from stat import S_IFDIR, S_IFREG

from sqlalchemy import (
    Integer,
    Row,
    bindparam,
    cast,
    delete,
    exists,
    func,
    literal_column,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session as DbSession

from cloudgrpc_proto.errors import (
    AlreadyExists,
    CloudError,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
)

from .accounts import Caller, normalize_email
from .change_feed import Change, ChangeFeed
from .db import Database
from .events import EventBus
from .models import (
    Chunk,
    File,
    FileChunk,
    FileName,
    Folder,
    Share,
    User,
    UserChunk,
    new_id,
    utcnow,
)
from .reservations import Reservations
from .text_checks import check_printable

log = logging.getLogger(__name__)

NAME_MAX = 255
MAX_DELETE_BATCH = 1000
MAX_DEPTH = 4096  # a guard against a (corrupt) cycle in the tree, far deeper than any real one
MAX_LINKS = 65000  # names one file may have (ext4's limit; link(2) answers EMLINK beyond)

# The metadata calls a mount makes one per mkdir, mv, rm or lookup run a handful of
# statements each, and on this stack every statement costs far more in SQLAlchemy than in the
# database. So the hot ones are built once here (their cache key is computed once too) and
# run as Core statements: one recursive query answers "whose folder, is it live, what is its
# path, what is above it" instead of one ORM load per ancestor, one query says whether a name
# is taken by a folder or a file, one UPDATE touches the parents' times.
_FOLDERS = Folder.__table__
_FILES = File.__table__
_NAMES = FileName.__table__


def _ancestry_query():  # type: ignore[no-untyped-def]
    """A folder's row and its ancestors' rows, nearest first (``depth`` 0 is the folder)."""
    up = select(*_FOLDERS.c, literal_column("0", Integer).label("depth")).where(
        _FOLDERS.c.id == bindparam("folder_id")).cte("ancestry", recursive=True)
    up = up.union_all(select(*_FOLDERS.c, (up.c.depth + 1).label("depth")).where(
        _FOLDERS.c.id == up.c.parent_id, up.c.depth < MAX_DEPTH))
    return select(up).order_by(up.c.depth)


_ANCESTRY = _ancestry_query()
_NAME_TAKEN = union_all(
    select(literal_column("'folder'").label("kind"), _FOLDERS.c.id).where(
        _FOLDERS.c.parent_id == bindparam("parent_id"), _FOLDERS.c.name == bindparam("name"),
        _FOLDERS.c.deleted_at.is_(None)),
    select(literal_column("'file'").label("kind"), _NAMES.c.file_id).where(
        _NAMES.c.folder_id == bindparam("parent_id"), _NAMES.c.name == bindparam("name"),
        _NAMES.c.deleted_at.is_(None)),
)
_LOCK_FOLDER = select(_FOLDERS.c.id).where(
    _FOLDERS.c.id == bindparam("folder_id"), _FOLDERS.c.owner_id == bindparam("owner_id")
).with_for_update()
_TOUCH_FOLDERS = update(_FOLDERS).where(
    _FOLDERS.c.id.in_([bindparam("a"), bindparam("b")])
).values(mtime_ns=bindparam("t"), ctime_ns=bindparam("t"))
_INSERT_FOLDER = _FOLDERS.insert()
_MOVE_FOLDER = update(_FOLDERS).where(_FOLDERS.c.id == bindparam("entry_id")).values(
    name=bindparam("new_name"), parent_id=bindparam("dest_id"), ctime_ns=bindparam("t"))
# A name moves (the file's ctime changes with it: _TOUCH_FILE).
_MOVE_NAME = update(_NAMES).where(_NAMES.c.id == bindparam("name_id")).values(
    name=bindparam("new_name"), folder_id=bindparam("dest_id"))
_TOUCH_FILE = update(_FILES).where(_FILES.c.id == bindparam("entry_id")).values(
    ctime_ns=bindparam("t"))
# To the trash: the inode is marked (RETURNING its name count, read under the row lock), its
# oldest name is kept, marked too (what the trash lists and a restore brings back), and when
# it had others (a link made meanwhile included), they go (_DROP_LIVE_NAMES, nlink 1).
_TRASH_FILE = update(_FILES).where(_FILES.c.id == bindparam("entry_id")).values(
    deleted_at=bindparam("now"), ctime_ns=bindparam("t")).returning(_FILES.c.nlink)
_TRASH_FIRST_NAME = update(_NAMES).where(_NAMES.c.id == select(_NAMES.c.id).where(
    _NAMES.c.file_id == bindparam("entry_id")).order_by(
    _NAMES.c.created_at, _NAMES.c.id).limit(1).scalar_subquery()).values(
    deleted_at=bindparam("now")).returning(_NAMES.c.folder_id, _NAMES.c.name)
_DROP_LIVE_NAMES = delete(_NAMES).where(
    _NAMES.c.file_id == bindparam("entry_id"), _NAMES.c.deleted_at.is_(None)
).returning(_NAMES.c.folder_id, _NAMES.c.name)
_INSERT_NAME = _NAMES.insert()
_DELETE_FILE = delete(_FILES).where(_FILES.c.id == bindparam("entry_id"))
_FILE_ROW = select(_FILES).where(_FILES.c.id == bindparam("entry_id"))
# A file with one of its names: its oldest (the name a lookup by id shows), or a given one.
_FILE_NAMED = select(_FILES, _NAMES.c.id.label("name_id"), _NAMES.c.folder_id,
                     _NAMES.c.name).join(_NAMES, _NAMES.c.file_id == _FILES.c.id)
_FILE_FIRST_NAME = _FILE_NAMED.where(_FILES.c.id == bindparam("entry_id")).order_by(
    _NAMES.c.created_at, _NAMES.c.id).limit(1)
_FILE_FIRST_NAME_LOCKED = _FILE_FIRST_NAME.with_for_update(of=_FILES)
_FILE_BY_NAME = _FILE_NAMED.where(
    _FILES.c.id == bindparam("entry_id"), _NAMES.c.folder_id == bindparam("folder_id"),
    _NAMES.c.name == bindparam("name"), _NAMES.c.deleted_at.is_(None))
_FOLDER_ROW = select(_FOLDERS).where(_FOLDERS.c.id == bindparam("entry_id"))


def _entry_query(file_side):  # type: ignore[no-untyped-def]
    """A folder's row or a file's row with one of its names (``file_side``), whichever
    ``entry_id`` is, in one statement (a move does not know which it is given): a column
    ``kind`` says which; a column the row's kind lacks is NULL."""
    files = file_side.subquery()
    sides = {"folder": _FOLDERS.c, "file": files.c}
    labels = list(dict.fromkeys([*_FOLDERS.c.keys(), *files.c.keys()]))
    types = {**{k: c.type for k, c in files.c.items()}, **{k: c.type for k, c in
                                                            _FOLDERS.c.items()}}
    folder, file = (select(literal_column(f"'{kind}'").label("kind"), *[
        cols[k].label(k) if k in cols else cast(null(), types[k]).label(k) for k in labels])
        for kind, cols in sides.items())
    return union_all(folder.where(_FOLDERS.c.id == bindparam("entry_id")), file)


def _entry_of(rows: Sequence[Row], caller_id: str) -> tuple[Folder | File, str] | None:
    """From ``_entry_query``'s rows: the caller's folder, else the file (whoever owns it),
    as a detached object, with the name's id for a file."""
    def values(row: Row, table) -> dict[str, object]:  # type: ignore[no-untyped-def]
        return {k: row._mapping[k] for k in table.c.keys()}
    for row in rows:
        if row.kind == "folder" and row.owner_id == caller_id:
            return Folder(**values(row, _FOLDERS)), ""
    for row in rows:
        if row.kind == "file":
            f = File(**values(row, _FILES))
            f.folder_id, f.name = row.folder_id, row.name
            return f, str(row.name_id)
    return None


_ENTRY_FIRST_NAME = _entry_query(_FILE_FIRST_NAME)
_ENTRY_BY_NAME = _entry_query(_FILE_BY_NAME)
# A folder's children (ORM entities: many rows load faster this way than built one by one).
_SUBFOLDERS = select(Folder).where(Folder.parent_id == bindparam("folder_id")).order_by(
    Folder.name)
_FOLDER_FILES = select(File, FileName.name).join(FileName, FileName.file_id == File.id).where(
    FileName.folder_id == bindparam("folder_id")).order_by(FileName.name)
_LIVE_SUBFOLDERS = _SUBFOLDERS.where(Folder.deleted_at.is_(None))
_LIVE_FOLDER_FILES = _FOLDER_FILES.where(FileName.deleted_at.is_(None))
# Files by id, each with its oldest name first (the name a lookup by id shows).
_FILES_NAMED = select(File, FileName.folder_id, FileName.name).outerjoin(
    FileName, FileName.file_id == File.id).order_by(FileName.created_at, FileName.id)


def now_ns() -> int:
    return time.time_ns()


def named(f: File, folder_id: str, name: str) -> File:
    """A detached copy of ``f`` showing one of its other names (for replies only)."""
    copy = File(**{c.key: getattr(f, c.key) for c in _FILES.c})
    copy.folder_id, copy.name = folder_id, name
    return copy


def shown(f: File, folder_id: str, name: str) -> File:
    """``f`` showing the name it was reached by: the object itself the first time (the
    name is a plain attribute, not a column), a detached copy when a session reaches one
    file by a second name (a listing of a folder holding two of its names)."""
    if not f.name or (f.folder_id, f.name) == (folder_id, name):
        f.folder_id, f.name = folder_id, name
        return f
    return named(f, folder_id, name)


def _name_row(f: File) -> dict[str, object]:
    """The name row of a new file (``f`` carries the name it is created under)."""
    return {"id": new_id(), "file_id": f.id, "owner_id": f.owner_id, "folder_id": f.folder_id,
            "name": f.name, "created_at": utcnow(), "deleted_at": None}


def _file_row(row: Row) -> tuple[File, str]:
    """A file (detached) from a ``_FILE_NAMED`` row, showing that name, and the name's id."""
    values = dict(row._mapping)
    name_id = values.pop("name_id")
    return File(**values), str(name_id)


def _client_id(value: str) -> str:
    """A client-chosen entry id: a UUID, in the canonical form the gateway's own ids have."""
    try:
        canonical = str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument(f"not a valid folder id: {value!r}") from None
    if canonical != value:
        raise InvalidArgument(f"not a valid folder id: {value!r} (want {canonical})")
    return canonical


# C0 controls, DEL and C1 controls: a name holding one could drive the terminal of whoever
# lists it (ESC and OSC sequences, CSI as 0x9b), so no name may hold one.
def check_name(name: str, field: str = "name") -> str:
    """The one check every entry name passes (files, folders, symlinks, renames, restores,
    batch uploads, lookups): the error names the field it came in."""
    if not name or name in (".", "..") or "/" in name:
        raise InvalidArgument(f"{field}: not a valid name: {name!r}")
    check_printable(name, field)
    if len(name.encode("utf-8", "surrogatepass")) > NAME_MAX:
        raise InvalidArgument(f"{field}: name longer than {NAME_MAX} bytes")
    return name


@dataclass(frozen=True)
class Ancestry:
    """A folder (as a detached row object) and the ids, names and trash marks above it."""

    rows: Sequence[Row]  # the folder first, then its parent, ... up to the root

    @property
    def id(self) -> str:
        return str(self.rows[0].id)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.rows]

    @property
    def live(self) -> bool:
        """Not in the trash: neither it nor a folder above it (the trash marks only the top).

        The walk must also have reached the root: a chain cut short by the depth guard is
        a cycle, never live.
        """
        return self.rows[-1].parent_id is None and all(r.deleted_at is None for r in self.rows)

    @property
    def path(self) -> str:
        return "/" + "/".join(r.name for r in reversed(self.rows) if r.parent_id is not None)

    def folder(self) -> Folder:
        """The folder as a detached object: for replies, not for changing (not in a session)."""
        values = dict(self.rows[0]._mapping)
        values.pop("depth", None)
        return Folder(**values)


@dataclass
class Listing:
    folder: Folder
    folders: list[Folder]
    files: list[File]
    paths: dict[str, str] = field(default_factory=dict)
    subfolders: dict[str, int] = field(default_factory=dict)  # live folders each one holds


@dataclass(frozen=True)
class ChunkSpan:
    sha256: str
    size: int


S_IFMT = 0o170000  # the file-type bits of a mode (the stat module's S_IFMT is a function)


def stored_mode(mode: int, default: int) -> int:
    """The mode column's value for a new entry.

    Clients that send permission bits alone mean 0 as "the default" (the seed's contract);
    a client that sends the file-type bits too (S_IFREG, S_IFDIR, ...) means the permission
    bits as given, 0 included (``open(O_CREAT)`` with mode 0), and those are kept with the
    type so 0 stays 0 when read back."""
    if mode & S_IFMT:
        return mode & (S_IFMT | 0o7777)
    return (mode & 0o7777) or default


SPECIAL_TYPES = (0o010000, 0o140000, 0o020000, 0o060000)  # S_IFIFO S_IFSOCK S_IFCHR S_IFBLK


def check_file_type(mode: int, size: int) -> bool:
    """An upload's file type from its mode: True for a fifo, socket or device entry (no
    content), False for a regular file; anything else (a folder, a symlink) is refused."""
    kind = mode & S_IFMT
    if kind in (0, S_IFREG):
        return False
    if kind not in SPECIAL_TYPES:
        raise InvalidArgument("an upload makes a regular file, fifo, socket or device")
    if size:
        raise InvalidArgument("a fifo, socket or device entry has no content")
    return True


def changed_mode(current: int, mode: int, type_bits: int) -> int:
    """chmod: new permission bits. The row's type bits are kept; a client that sends type
    bits (a mount) gets them added to a row without, so a chmod to 0 reads back as 0."""
    kept = current & S_IFMT or (type_bits if mode & S_IFMT else 0)
    return kept | (mode & 0o7777)


@dataclass(frozen=True)
class SmallCommit:
    """One file of a batch of small uploads: where it goes and its one chunk ("" = empty)."""

    name: str
    size: int
    sha256: str
    parent_id: str = ""
    overwrite_file_id: str = ""
    replace_existing: bool = False
    mime_type: str = ""
    mode: int = 0
    uid: int = 0
    gid: int = 0
    mtime_ns: int = 0
    expected_version: int = 0
    parent_mtime_ns: int = 0  # the folder's mtime as the client shows it (0 = now)
    rdev: int = 0  # a device entry's number


@dataclass
class FileAccess:
    file: File
    permission: str  # "owner", "read", "write"
    owner_email: str


class Namespace:
    def __init__(self, db: Database, events: EventBus, changes: ChangeFeed,
                 reservations: Reservations | None = None) -> None:
        self.db = db
        self.events = events
        self.changes = changes
        self.reservations = reservations

    def _held(self, s: DbSession, user_id: str, parked: bool = True) -> int:
        """Quota held by the user's uploads in progress (and parked chunks)."""
        if self.reservations is None:
            return 0
        return self.reservations.held(s, user_id, parked=parked)

    # --- lookups ----------------------------------------------------------------------

    def _root(self, s: DbSession, caller: Caller) -> Folder:
        root = s.get(Folder, caller.root_folder_id)
        if root is None:
            raise NotFound("account has no root folder")
        return root

    def _folder(self, s: DbSession, caller: Caller, folder_id: str, *, lock: bool = False,
                live: bool = True) -> Folder:
        if not folder_id or folder_id in ("/", "root"):
            folder_id = caller.root_folder_id
        folder = s.get(Folder, folder_id, with_for_update=lock and self.db.is_postgres)
        if folder is None or folder.owner_id != caller.user_id:
            raise NotFound(f"no such folder: {folder_id}")
        if live and not self._is_live_folder(s, folder):
            raise NotFound(f"folder is in the trash: {folder.name}")
        return folder

    def _is_live_folder(self, s: DbSession, folder: Folder) -> bool:
        if folder.deleted_at is not None:
            return False
        if folder.parent_id is None:
            return True
        rows = self._ancestor_rows(s, folder.parent_id)
        return bool(rows) and Ancestry(rows).live

    def _ancestor_rows(self, s: DbSession, folder_id: str) -> Sequence[Row]:
        """The folder's row and every ancestor's, nearest first, in one statement."""
        s.flush()  # Core statements do not autoflush: let them see this session's changes
        return s.execute(_ANCESTRY, {"folder_id": folder_id}).all()

    def _ancestry(self, s: DbSession, caller: Caller, folder_id: str, *, lock: bool = False,
                  live: bool = True) -> Ancestry:
        """Like ``_folder`` (same checks and errors) but one statement whatever the depth.

        The folder comes back as rows, not as a session object: callers change it with Core
        statements. ``lock`` takes the row lock first on PostgreSQL, as ``_folder`` does.
        """
        if not folder_id or folder_id in ("/", "root"):
            folder_id = caller.root_folder_id
        if lock and self.db.is_postgres:
            s.execute(_LOCK_FOLDER, {"folder_id": folder_id, "owner_id": caller.user_id})
        found = Ancestry(self._ancestor_rows(s, folder_id))
        if not found.rows or found.rows[0].owner_id != caller.user_id:
            raise NotFound(f"no such folder: {folder_id}")
        if live and not found.live:
            raise NotFound(f"folder is in the trash: {found.rows[0].name}")
        return found

    def _file(self, s: DbSession, caller: Caller, file_id: str, *, lock: bool = False
              ) -> File:
        f = self._load_file(s, file_id, lock=lock)
        if f is None or f.owner_id != caller.user_id:
            raise NotFound(f"no such file: {file_id}")
        return f

    def _load_file(self, s: DbSession, file_id: str, *, lock: bool = False) -> File | None:
        """The file (in the session) showing its oldest name, in one statement; ``lock``
        takes its row lock on PostgreSQL and reads it afresh."""
        q = _FILES_NAMED.where(File.id == file_id).limit(1)
        if lock and self.db.is_postgres:
            q = q.with_for_update(of=File).execution_options(populate_existing=True)
        row = s.execute(q).first()
        if row is None:
            return None
        f, folder_id, name = row
        f.folder_id, f.name = folder_id or "", name or ""
        return f

    def _load_files(self, s: DbSession, file_ids: Sequence[str]) -> dict[str, File]:
        """``_load_file`` for many ids (each file showing its oldest name)."""
        found: dict[str, File] = {}
        for part in _parts(list(dict.fromkeys(file_ids))):
            for f, folder_id, name in s.execute(_FILES_NAMED.where(File.id.in_(part))):
                if f.id not in found:
                    f.folder_id, f.name = folder_id or "", name or ""
                    found[f.id] = f
        return found

    def _folder_id(self, caller: Caller, folder_id: str) -> str:
        """A folder id as clients send it ("" or "/" for the root), without a query: for a
        name of the caller's file, whose name row already says whose folder it is."""
        return caller.root_folder_id if folder_id in ("", "/", "root") else folder_id

    def _name_taken(self, s: DbSession, parent_id: str, name: str) -> tuple[str, str] | None:
        """("folder" | "file", id) of the live entry called ``name`` in the folder, or
        None; for a file the id is the file's (whichever of its names this is)."""
        s.flush()
        rows = s.execute(_NAME_TAKEN, {"parent_id": parent_id, "name": name}).all()
        if not rows:
            return None
        row = min(rows, key=lambda r: r.kind != "folder")  # a folder first, as in _child
        return str(row.kind), str(row.id)

    def _child(self, s: DbSession, parent_id: str, name: str) -> File | Folder | None:
        """The live entry called ``name`` in the folder (a file showing that name), or
        None: one statement for a name that is free, the common case of a lookup."""
        taken = self._name_taken(s, parent_id, name)
        if taken is None:
            return None
        kind, entry_id = taken
        if kind == "folder":
            return s.get(Folder, entry_id)
        f = s.get(File, entry_id)
        return None if f is None else shown(f, parent_id, name)

    def _first_name(self, s: DbSession, file_id: str) -> tuple[str, str]:
        """(folder id, name) of the file's oldest name, ("", "") if it has none."""
        row = s.execute(select(FileName.folder_id, FileName.name).where(
            FileName.file_id == file_id).order_by(FileName.created_at, FileName.id).limit(1)
        ).first()
        return (row.folder_id, row.name) if row is not None else ("", "")

    def _drop_name(self, s: DbSession, f: File, folder_id: str, name: str, t: int) -> None:
        """Remove one name of a file that has several (``f`` in this session or a copy):
        its name row goes, the file counts one name less and its ctime changes."""
        gone = s.execute(delete(_NAMES).where(
            _NAMES.c.file_id == f.id, _NAMES.c.folder_id == folder_id, _NAMES.c.name == name,
            _NAMES.c.deleted_at.is_(None))).rowcount
        if not gone:
            raise NotFound(f"no such name of the file: {name}")
        s.execute(update(_FILES).where(_FILES.c.id == f.id).values(
            nlink=_FILES.c.nlink - 1, ctime_ns=t))
        s.execute(_TOUCH_FOLDERS, {"a": folder_id, "b": folder_id, "t": t})
        f.nlink, f.ctime_ns = max(f.nlink - 1, 1), t

    def path_of(self, s: DbSession, folder: Folder) -> str:
        if folder.parent_id is None:
            return "/"
        return Ancestry(self._ancestor_rows(s, folder.id)).path

    def _resolve(self, s: DbSession, caller: Caller, path: str) -> File | Folder:
        norm = posixpath.normpath("/" + (path or "").lstrip("/"))
        cur: File | Folder = self._root(s, caller)
        for part in [p for p in norm.split("/") if p]:
            check_name(part, "path")  # no name holds a control character: none to look up
            if not isinstance(cur, Folder):
                raise NotFound(f"not a folder on the way to {path}")
            nxt = self._child(s, cur.id, part)
            if nxt is None:
                raise NotFound(f"no such file or folder: {path}")
            cur = nxt
        return cur

    def stat(self, caller: Caller, entry_id: str = "", path: str = "",
             parent_folder_id: str = "", name: str = "") -> tuple[File | Folder, str, str]:
        """An entry by id, by path or by name in a folder: (entry, permission, path)."""
        with self.db.read() as s:
            if entry_id:
                rows = self._ancestor_rows(s, entry_id)
                if rows and rows[0].owner_id == caller.user_id:
                    found = Ancestry(rows)
                    return found.folder(), "owner", found.path
                f = self._load_file(s, entry_id)
                if f is not None:
                    access = self._access(s, caller, f)
                    base = "/Shared"
                    if access.permission == "owner":
                        above = self._ancestor_rows(s, f.folder_id)
                        base = Ancestry(above).path if above else base
                    return f, access.permission, posixpath.join(base, f.name)
                raise NotFound(f"no such file or folder: {entry_id}")
            if name:
                check_name(name)
                parent = self._ancestry(s, caller, parent_folder_id)
                entry = self._child(s, parent.id, name)
                if entry is None:
                    raise NotFound(f"no such file or folder: {name}")
                return entry, "owner", posixpath.join(parent.path, name)
            entry = self._resolve(s, caller, path)
            norm = posixpath.normpath("/" + (path or "").lstrip("/"))
            return entry, "owner", norm

    def list_folder(self, caller: Caller, folder_id: str = "", path: str = "",
                    include_deleted: bool = False) -> Listing:
        with self.db.read() as s:
            if not folder_id and path:
                entry = self._resolve(s, caller, path)
                if not isinstance(entry, Folder):
                    raise InvalidArgument(f"not a folder: {path}")
                folder = entry
                path = self.path_of(s, folder)
            else:
                found = self._ancestry(s, caller, folder_id)
                folder, path = found.folder(), found.path
            fq, files_q = (_SUBFOLDERS, _FOLDER_FILES) if include_deleted else (
                _LIVE_SUBFOLDERS, _LIVE_FOLDER_FILES)
            params = {"folder_id": folder.id}
            files = [shown(f, folder.id, name) for f, name in s.execute(files_q, params)]
            listing = Listing(folder, list(s.scalars(fq, params)), files)
            listing.paths[folder.id] = path
            listing.subfolders = self.subfolder_counts(
                s, [folder.id, *(d.id for d in listing.folders)])
            return listing

    def count_subfolders(self, folder_id: str) -> int:
        """Live folders in one folder (StatEntry's FolderEntry.subfolders)."""
        with self.db.read() as s:
            return self.subfolder_counts(s, [folder_id]).get(folder_id, 0)

    @staticmethod
    def subfolder_counts(s: DbSession, folder_ids: list[str]) -> dict[str, int]:
        """Live folders in each of ``folder_ids`` (a mount shows 2 + this as st_nlink)."""
        counts: dict[str, int] = {}
        for part in _parts(folder_ids):
            rows = s.execute(select(Folder.parent_id, func.count()).where(
                Folder.parent_id.in_(part), Folder.deleted_at.is_(None))
                .group_by(Folder.parent_id))
            counts.update({parent_id: int(n) for parent_id, n in rows})
        return counts

    # --- access to files (owner or share) -----------------------------------------------

    def _access(self, s: DbSession, caller: Caller, f: File) -> FileAccess:
        if f.owner_id == caller.user_id:
            return FileAccess(f, "owner", caller.email)
        share = s.scalars(select(Share).where(
            Share.file_id == f.id, Share.shared_with_id == caller.user_id)).first()
        if share is None or not self._file_is_live(s, f):
            raise NotFound(f"no such file: {f.id}")
        owner = s.get(User, f.owner_id)
        return FileAccess(f, share.permission, owner.email if owner else "")

    def _file_is_live(self, s: DbSession, f: File) -> bool:
        """The file is not in the trash and one of its names is in a folder that is not
        either: what the owner threw away is no longer anyone else's to read or write
        (restoring it brings it back)."""
        if f.deleted_at is not None:
            return False
        folders = [f.folder_id] if f.folder_id else []
        if f.nlink > 1 or not folders:
            folders += [fid for fid in s.scalars(select(FileName.folder_id).where(
                FileName.file_id == f.id, FileName.deleted_at.is_(None))) if fid not in folders]
        for folder_id in folders:
            rows = self._ancestor_rows(s, folder_id)
            if rows and Ancestry(rows).live:
                return True
        return False

    def readable_file(self, caller: Caller, file_id: str) -> tuple[FileAccess, list[ChunkSpan]]:
        with self.db.read() as s:
            f = self._load_file(s, file_id)
            if f is None:
                raise NotFound(f"no such file: {file_id}")
            access = self._access(s, caller, f)
            spans = [ChunkSpan(c.chunk_sha256, c.size) for c in s.scalars(
                select(FileChunk).where(FileChunk.file_id == f.id).order_by(FileChunk.seq))]
            s.expunge(f)
            return access, spans

    def readable_files(self, caller: Caller, file_ids: Sequence[str]
                       ) -> dict[str, tuple[FileAccess, list[ChunkSpan]] | str]:
        """Many files at once, in one transaction: (access, chunks), or why not."""
        out: dict[str, tuple[FileAccess, list[ChunkSpan]] | str] = {}
        with self.db.read() as s:
            ids = list(dict.fromkeys(file_ids))
            files = self._load_files(s, ids)
            spans: dict[str, list[ChunkSpan]] = {}
            for i in range(0, len(ids), 500):
                for c in s.scalars(select(FileChunk).where(
                        FileChunk.file_id.in_(ids[i:i + 500])).order_by(FileChunk.seq)):
                    spans.setdefault(c.file_id, []).append(ChunkSpan(c.chunk_sha256, c.size))
            for fid in ids:
                f = files.get(fid)
                if f is None:
                    out[fid] = f"no such file: {fid}"
                    continue
                try:
                    access = self._access(s, caller, f)
                except NotFound as exc:
                    out[fid] = exc.message
                    continue
                s.expunge(f)
                out[fid] = (access, spans.get(fid, []))
        return out

    def writable_file(self, caller: Caller, file_id: str) -> FileAccess:
        with self.db.read() as s:
            f = self._load_file(s, file_id)
            if f is None:
                raise NotFound(f"no such file: {file_id}")
            access = self._access(s, caller, f)
            if access.permission == "read":
                raise PermissionDenied("this file is shared with you read-only")
            if f.deleted_at is not None:
                raise NotFound("file is in the trash")
            if f.symlink_target is not None:
                raise InvalidArgument("cannot write to a symbolic link")
            return access

    def visible_chunks(self, caller: Caller, hashes: Sequence[str]) -> dict[str, int]:
        """Hashes (with sizes) the caller has proven to hold: they may send these as refs."""
        wanted = list(dict.fromkeys(hashes))
        found: dict[str, int] = {}
        with self.db.read() as s:
            for i in range(0, len(wanted), 500):
                part = wanted[i:i + 500]
                for sha, size in s.execute(
                        select(Chunk.sha256, Chunk.size)
                        .join(UserChunk, UserChunk.chunk_sha256 == Chunk.sha256)
                        .where(UserChunk.user_id == caller.user_id,
                               UserChunk.chunk_sha256.in_(part))):
                    found[sha] = size
        return {h: found[h] for h in wanted if h in found}

    def file_chunks(self, caller: Caller, file_id: str) -> tuple[File, list[ChunkSpan]]:
        access, spans = self.readable_file(caller, file_id)
        return access.file, spans

    # --- folders ------------------------------------------------------------------------

    def create_folder(self, caller: Caller, parent_id: str, name: str, mode: int = 0o755,
                      uid: int = 0, gid: int = 0, exist_ok: bool = False,
                      folder_id: str = "") -> Folder:
        """Create ``name`` in ``parent_id``; ``folder_id`` is an id the client chose.

        A client-chosen id lets a mount answer ``mkdir`` before the gateway has the folder
        and name it in the calls it queues after. The id must be a UUID; if the caller
        already has a folder with it (a replay after a lost reply or a crashed mount), that
        folder is the answer, wherever later calls have moved it since.
        """
        check_name(name)
        if folder_id:
            folder_id = _client_id(folder_id)
        with self.db.write() as s:
            if folder_id:
                existing = s.get(Folder, folder_id)
                if existing is not None:
                    if existing.owner_id != caller.user_id:
                        raise AlreadyExists("that folder id is taken")
                    return existing
            parent = self._ancestry(s, caller, parent_id, lock=True)
            taken = self._name_taken(s, parent.id, name)
            if taken is not None:
                if exist_ok and taken[0] == "folder":
                    existing = s.get(Folder, taken[1])
                    assert existing is not None
                    return existing
                raise AlreadyExists(f"{name} already exists")
            t = now_ns()
            values = dict(id=folder_id or new_id(), owner_id=caller.user_id,
                          parent_id=parent.id, name=name,
                          mode=stored_mode(mode, 0o755), uid=uid, gid=gid, atime_ns=t,
                          mtime_ns=t, ctime_ns=t, created_at=utcnow(), deleted_at=None,
                          original_parent_id=None)
            s.execute(_INSERT_FOLDER, values)
            s.execute(_TOUCH_FOLDERS, {"a": parent.id, "b": parent.id, "t": t})
            folder = Folder(**values)
        self.changes.publish(Change("created", caller.user_id, folder.id, parent.id, name,
                                    is_folder=True))
        return folder

    def _subtree(self, s: DbSession, folder: Folder) -> tuple[list[str], list[File]]:
        """Ids of ``folder`` and every folder below it, and every file with a name below
        it (live or in the trash), each once."""
        ids = [folder.id]
        frontier = [folder.id]
        while frontier:
            kids = list(s.scalars(select(Folder.id).where(Folder.parent_id.in_(frontier))))
            ids.extend(kids)
            frontier = kids
        files: dict[str, File] = {}
        for part in _parts(ids):
            for f, folder_id, name in s.execute(select(File, FileName.folder_id, FileName.name)
                                                .join(FileName, FileName.file_id == File.id)
                                                .where(FileName.folder_id.in_(part))):
                if f.id not in files:
                    files[f.id] = shown(f, folder_id, name)
        return ids, list(files.values())

    def delete_folder(self, caller: Caller, folder_id: str, recursive: bool,
                      permanent: bool) -> None:
        with self.db.write() as s:
            folder = self._folder(s, caller, folder_id, live=not permanent)
            if folder.parent_id is None:
                raise PermissionDenied("the root folder cannot be deleted")
            has_children = s.scalar(select(exists().where(
                Folder.parent_id == folder.id, Folder.deleted_at.is_(None)))) or s.scalar(
                select(exists().where(FileName.folder_id == folder.id,
                                      FileName.deleted_at.is_(None))))
            if has_children and not recursive:
                raise FailedPrecondition(f"folder not empty: {folder.name}")
            parent_id = folder.parent_id
            if permanent:
                self._purge_folder(s, caller, folder)
            else:
                folder.deleted_at = utcnow()
                folder.original_parent_id = folder.parent_id
            parent = s.get(Folder, parent_id)
            if parent is not None:
                parent.mtime_ns = parent.ctime_ns = now_ns()
            name = folder.name
        self.changes.publish(Change("deleted", caller.user_id, folder_id, parent_id or "", name,
                                    is_folder=True))
        self.events.emit("delete", f"folder {name} {'deleted' if permanent else 'trashed'}",
                         caller.user_id, folder_id=folder_id, permanent=permanent)

    def _purge_folder(self, s: DbSession, caller: Caller, folder: Folder) -> int:
        """``folder`` and everything below it go for good: every name in them goes, and
        so does every file left without a name; a file named outside them stays, with
        one name less for each one that went. The bytes freed."""
        ids, files = self._subtree(s, folder)
        for part in _parts(ids):
            s.execute(delete(FileName).where(FileName.folder_id.in_(part))
                      .execution_options(synchronize_session=False))
        left: dict[str, int] = {}
        if any(f.nlink > 1 for f in files):
            for part in _parts([f.id for f in files if f.nlink > 1]):
                left.update((fid, int(n)) for fid, n in s.execute(
                    select(FileName.file_id, func.count()).where(
                        FileName.file_id.in_(part), FileName.deleted_at.is_(None))
                    .group_by(FileName.file_id)))
        t = now_ns()
        going = [f for f in files if not left.get(f.id)]
        for f in files:
            if left.get(f.id):
                f.nlink, f.ctime_ns = left[f.id], t
        freed = sum(f.size for f in going)
        for f in going:
            s.delete(f)
        s.flush()
        for fid in reversed(ids):
            s.execute(delete(Folder).where(Folder.id == fid))
        self._release(s, caller.user_id, freed)
        return freed

    def _release(self, s: DbSession, user_id: str, nbytes: int) -> None:
        if nbytes:
            s.execute(update(User).where(User.id == user_id)
                      .values(storage_used=func.max(User.storage_used - nbytes, 0)
                              if self.db.is_sqlite else
                              func.greatest(User.storage_used - nbytes, 0)))

    # --- moves, attributes, symlinks ------------------------------------------------------

    def move(self, caller: Caller, entry_id: str, new_parent_id: str, new_name: str,
             replace_existing: bool, old_parent_id: str = "", old_name: str = ""
             ) -> tuple[File | Folder, str]:
        """Rename or move an entry; ``old_parent_id``/``old_name`` pick which name of a file
        with several moves (default: its oldest). As rename(2): onto another name of the
        same file, nothing happens; onto a file with other names, only that name goes."""
        with self.db.write() as s:
            # A detached copy of the row: the Core UPDATE below changes the row, the copy
            # follows it for the reply.
            # (one statement whichever it is; a file with the name it moves by)
            if old_name:
                rows = s.execute(_ENTRY_BY_NAME, {
                    "entry_id": entry_id, "name": old_name,
                    "folder_id": self._folder_id(caller, old_parent_id)}).all()
            else:
                rows = s.execute(_ENTRY_FIRST_NAME, {"entry_id": entry_id}).all()
            found = _entry_of(rows, caller.user_id)
            if found is None or found[0].owner_id != caller.user_id:
                if old_name and s.execute(_FILE_ROW, {"entry_id": entry_id}).first():
                    raise NotFound(f"no such name of the file: {old_name}")
                raise NotFound(f"no such file: {entry_id}")
            entry, name_id = found
            if isinstance(entry, Folder) and entry.parent_id is None:
                raise PermissionDenied("the root folder cannot be moved")
            if entry.deleted_at is not None:
                raise NotFound("entry is in the trash: restore it instead")
            old_parent = entry.parent_id if isinstance(entry, Folder) else entry.folder_id
            dest_id = new_parent_id or old_parent
            dest = self._ancestry(s, caller, dest_id or "", lock=True)
            name = check_name(new_name or entry.name, "new_name")
            if isinstance(entry, Folder) and entry.id in dest.ids:
                raise InvalidArgument("cannot move a folder into itself")
            taken = self._name_taken(s, dest.id, name)
            if taken is not None and taken[1] == entry.id and (dest.id, name) != (
                    old_parent, entry.name):
                # another name of the same file: rename(2) does nothing
                return entry, posixpath.join(dest.path, name)
            if taken is not None and taken[1] != entry.id:
                existing = s.get(Folder, taken[1]) if taken[0] == "folder" else \
                    self._load_file(s, taken[1], lock=True)
                assert existing is not None
                if not replace_existing:
                    raise AlreadyExists(f"{name} already exists")
                if isinstance(existing, Folder):
                    if not isinstance(entry, Folder):
                        raise AlreadyExists(f"{name} is a folder")
                    if s.scalar(select(exists().where(
                            Folder.parent_id == existing.id))) or s.scalar(select(exists().where(
                            FileName.folder_id == existing.id, FileName.deleted_at.is_(None)))):
                        raise FailedPrecondition(f"folder not empty: {name}")
                    self._purge_folder(s, caller, existing)
                elif existing.nlink > 1:  # a file with other names: only this one goes
                    if isinstance(entry, Folder):
                        raise AlreadyExists(f"{name} is a file")
                    self._drop_name(s, existing, dest.id, name, now_ns())
                    self.changes.publish(Change("deleted", caller.user_id, existing.id,
                                                dest.id, name))
                else:
                    if isinstance(entry, Folder):
                        raise AlreadyExists(f"{name} is a file")
                    self._release(s, caller.user_id, existing.size)
                    replaced_id = existing.id
                    s.delete(existing)
                    s.flush()
                    self.changes.publish(Change("deleted", caller.user_id, replaced_id, dest.id,
                                                name))
            old_name = entry.name
            t = now_ns()
            s.flush()
            if isinstance(entry, Folder):
                s.execute(_MOVE_FOLDER, {"entry_id": entry.id, "new_name": name,
                                         "dest_id": dest.id, "t": t})
            else:
                if not s.execute(_MOVE_NAME, {"name_id": name_id, "new_name": name,
                                              "dest_id": dest.id}).rowcount:
                    # removed since it was read (an unlink that just committed)
                    raise NotFound(f"no such name of the file: {entry.name}")
                s.execute(_TOUCH_FILE, {"entry_id": entry.id, "t": t})
            s.execute(_TOUCH_FOLDERS, {"a": dest.id, "b": old_parent or dest.id, "t": t})
            entry.name = name
            if isinstance(entry, Folder):
                entry.parent_id = dest.id
            else:
                entry.folder_id = dest.id
            entry.ctime_ns = t
            path = posixpath.join(dest.path, name)
        self.changes.publish(Change("moved", caller.user_id, entry.id, dest.id, name,
                                    old_parent_folder_id=old_parent or "", old_name=old_name,
                                    is_folder=isinstance(entry, Folder)))
        return entry, path

    def set_attributes(self, caller: Caller, entry_id: str, *, mode: int | None = None,
                       uid: int | None = None, gid: int | None = None,
                       atime_ns: int | None = None, mtime_ns: int | None = None,
                       size: int | None = None) -> File | Folder:
        with self.db.write() as s:
            entry: File | Folder | None = s.get(Folder, entry_id)
            if entry is None or entry.owner_id != caller.user_id:
                f = self._load_file(s, entry_id)
                if f is None:
                    raise NotFound(f"no such file or folder: {entry_id}")
                access = self._access(s, caller, f)
                if access.permission == "read":
                    raise PermissionDenied("this file is shared with you read-only")
                if access.permission == "write" and (mode is not None or uid is not None
                                                     or gid is not None):
                    raise PermissionDenied("only the owner changes ownership and mode")
                entry = f
            if mode is not None:
                if isinstance(entry, Folder):
                    kind = S_IFDIR
                else:
                    kind = 0 if entry.symlink_target else S_IFREG
                entry.mode = changed_mode(entry.mode, mode, kind)
            if uid is not None:
                entry.uid = uid
            if gid is not None:
                entry.gid = gid
            if atime_ns is not None:
                entry.atime_ns = atime_ns
            if mtime_ns is not None:
                entry.mtime_ns = mtime_ns
            if size is not None:
                if not isinstance(entry, File):
                    raise InvalidArgument("only a file has a size to set")
                if size != 0 and size != entry.size:
                    raise InvalidArgument("only truncation to zero is done in place; "
                                          "upload the new content instead")
                if size == 0 and entry.size:
                    self._release(s, entry.owner_id, entry.size)
                    s.execute(delete(FileChunk).where(FileChunk.file_id == entry.id))
                    entry.size = 0
                    entry.version += 1
                    entry.modified_at = utcnow()
                    entry.mtime_ns = now_ns()
            entry.ctime_ns = now_ns()
            s.flush()
            parent = entry.parent_id if isinstance(entry, Folder) else entry.folder_id
        self.changes.publish(Change("updated", caller.user_id, entry.id, parent or "",
                                    entry.name, is_folder=isinstance(entry, Folder)))
        return entry

    def create_symlink(self, caller: Caller, parent_id: str, name: str, target: str,
                       uid: int = 0, gid: int = 0) -> File:
        check_name(name)
        if not target or len(target.encode()) > 4095:
            raise InvalidArgument("a symbolic link needs a target of at most 4095 bytes")
        with self.db.write() as s:
            parent = self._ancestry(s, caller, parent_id, lock=True)
            if self._name_taken(s, parent.id, name) is not None:
                raise AlreadyExists(f"{name} already exists")
            t = now_ns()
            link = File(id=new_id(), owner_id=caller.user_id, folder_id=parent.id, name=name,
                        size=len(target.encode()), mime_type="inode/symlink",
                        symlink_target=target, mode=0o777, uid=uid, gid=gid, atime_ns=t,
                        mtime_ns=t, ctime_ns=t)
            s.add(link)
            s.flush()
            s.execute(_INSERT_NAME, _name_row(link))
            s.execute(_TOUCH_FOLDERS, {"a": parent.id, "b": parent.id, "t": t})
            # The target is stored bytes like any other: counted now, released on delete.
            s.execute(update(User).where(User.id == caller.user_id)
                      .values(storage_used=User.storage_used + link.size))
            s.flush()
        self.changes.publish(Change("created", caller.user_id, link.id, parent.id, name))
        return link

    def link_file(self, caller: Caller, file_id: str, parent_id: str, name: str
                  ) -> tuple[File, str]:
        """A further name for one of the caller's own live files in one of their folders
        (a hard link): (the file as that name shows it, its path). Both names share the
        content and attributes; the file's ctime changes, as on Linux."""
        check_name(name)
        with self.db.write() as s:
            folder = s.get(Folder, file_id)
            if folder is not None and folder.owner_id == caller.user_id:
                raise PermissionDenied("a folder cannot be linked")
            f = self._load_file(s, file_id, lock=True)
            if f is None:
                raise NotFound(f"no such file: {file_id}")
            if f.owner_id != caller.user_id:
                self._access(s, caller, f)  # NotFound unless it is shared with the caller
                raise PermissionDenied("a file of another account cannot be linked")
            if f.deleted_at is not None:
                raise NotFound("file is in the trash")
            if f.nlink >= MAX_LINKS:
                raise FailedPrecondition(f"the file has {f.nlink} names already")
            parent = self._ancestry(s, caller, parent_id, lock=True)
            if self._name_taken(s, parent.id, name) is not None:
                raise AlreadyExists(f"{name} already exists")
            t = now_ns()
            s.add(FileName(file_id=f.id, owner_id=caller.user_id, folder_id=parent.id,
                           name=name))
            f.nlink += 1
            f.ctime_ns = t
            s.execute(_TOUCH_FOLDERS, {"a": parent.id, "b": parent.id, "t": t})
            s.flush()
            reply = named(f, parent.id, name)
            path = posixpath.join(parent.path, name)
        self.changes.publish(Change("created", caller.user_id, f.id, parent.id, name))
        return reply, path

    # --- deletes, trash -----------------------------------------------------------------

    def delete_file(self, caller: Caller, file_id: str, permanent: bool,
                    parent_id: str = "", name: str = "") -> File:
        """A file to the trash (or away for good). With ``name`` (in ``parent_id``) only
        that name of the file goes while it has others: as a local ``rm`` of one hard link
        frees nothing, nothing goes to the trash until the last name goes. Without one,
        the file goes with every name it has (the trash keeps its oldest)."""
        if name:
            check_name(name)
        with self.db.write() as s:
            # The file with its oldest name, locked (PostgreSQL): an unlink or link of
            # another name of it waits, so its name count is the one read here.
            row = s.execute(_FILE_FIRST_NAME_LOCKED if self.db.is_postgres
                            else _FILE_FIRST_NAME, {"entry_id": file_id}).first()
            if row is None or row.owner_id != caller.user_id:
                raise NotFound(f"no such file: {file_id}")
            f, _ = _file_row(row)
            if not permanent and f.deleted_at is not None:
                raise NotFound("file is already in the trash")
            t = now_ns()
            if name and f.deleted_at is None:
                folder_id = self._folder_id(caller, parent_id)
                if f.nlink > 1:
                    self._drop_name(s, f, folder_id, name, t)
                    shows = (f.folder_id, f.name) if (f.folder_id, f.name) != (
                        folder_id, name) else self._first_name(s, f.id)
                    self.changes.publish(Change("deleted", caller.user_id, f.id, folder_id,
                                                name))
                    self.changes.publish(Change("updated", caller.user_id, f.id, *shows))
                    gone = named(f, folder_id, name)
                    gone.name_only = True
                    return gone
                if (folder_id, name) != (f.folder_id, f.name):
                    # read again: on PostgreSQL the row lock waited for an unlink of another
                    # name, and the name read with the row predates it
                    f.folder_id, f.name = self._first_name(s, f.id)
                    if (folder_id, name) != (f.folder_id, f.name):
                        raise NotFound(f"no such name of the file: {name}")
            further: list[tuple[str, str]] = []
            if permanent:
                if f.nlink > 1:
                    further = [(r.folder_id, r.name) for r in s.execute(
                        select(_NAMES.c.folder_id, _NAMES.c.name).where(
                            _NAMES.c.file_id == f.id))]
                self._release(s, caller.user_id, f.size)
                s.execute(_DELETE_FILE, {"entry_id": f.id})  # its names go with it
            else:
                f.deleted_at = utcnow()
                f.ctime_ns = t
                params = {"entry_id": f.id, "now": f.deleted_at, "t": t}
                nlink = s.execute(_TRASH_FILE, params).scalar_one()
                kept = s.execute(_TRASH_FIRST_NAME, params).first()
                if kept is not None:
                    f.folder_id, f.name = kept.folder_id, kept.name
                if nlink > 1:  # (a link made since the read above included)
                    further = [(r.folder_id, r.name) for r in s.execute(_DROP_LIVE_NAMES, params)]
                    s.execute(update(_FILES).where(_FILES.c.id == f.id).values(nlink=1))
                f.nlink = 1
            further = [n for n in further if n != (f.folder_id, f.name)]
            for folder_id in {f.folder_id} | {folder_id for folder_id, _ in further}:
                s.execute(_TOUCH_FOLDERS, {"a": folder_id, "b": folder_id, "t": t})
        for folder_id, other in further:
            self.changes.publish(Change("deleted", caller.user_id, f.id, folder_id, other))
        self.changes.publish(Change("deleted", caller.user_id, f.id, f.folder_id, f.name))
        self.events.emit("delete", f"{f.name} {'deleted' if permanent else 'moved to trash'}",
                         caller.user_id, file_id=f.id, size=f.size, permanent=permanent)
        return f

    def delete_files(self, caller: Caller, file_ids: Sequence[str], permanent: bool
                     ) -> list[tuple[str, CloudError | None]]:
        """Many files to the trash (or gone for good) in one transaction: (id, error) each.

        A mount queues ``rm -r``'s unlinks and sends them together, so this does in a
        handful of statements what ``delete_file`` does per file: one SELECT of the
        caller's files among the ids with their names (locked on PostgreSQL), one UPDATE
        of the files and one of the names each keeps in the trash (or one DELETE plus one
        quota release), one UPDATE of the parents' times. An id that is unknown, someone
        else's or already in the trash gets its own NotFound and the others go ahead.
        """
        ids = list(dict.fromkeys(file_ids))
        if len(ids) > MAX_DELETE_BATCH:
            raise InvalidArgument(f"at most {MAX_DELETE_BATCH} files per call")
        found: dict[str, tuple[str, str, int, bool]] = {}  # id: (folder, name, size, trashed)
        first: dict[str, str] = {}  # file id: its oldest name's id (the one the trash keeps)
        others: list[tuple[str, str, str]] = []  # (file id, folder, name) of the other names
        names = select(_FILES.c.id, _FILES.c.size, _FILES.c.deleted_at, _NAMES.c.id.label(
            "name_id"), _NAMES.c.folder_id, _NAMES.c.name).join(
            _NAMES, _NAMES.c.file_id == _FILES.c.id).where(
            _FILES.c.owner_id == caller.user_id).order_by(_NAMES.c.created_at, _NAMES.c.id)
        t = now_ns()
        now = utcnow()
        with self.db.write() as s:
            trashed: set[str] = set()
            if permanent:
                if self.db.is_postgres:
                    names = names.with_for_update(of=_FILES)
            else:
                # Marked first, which takes the rows' locks (PostgreSQL): the names read
                # next are the ones they have, a link or unlink that just committed included.
                for part in _parts(ids):
                    trashed.update(s.scalars(update(_FILES).where(
                        _FILES.c.id.in_(part), _FILES.c.owner_id == caller.user_id,
                        _FILES.c.deleted_at.is_(None)).values(deleted_at=now, ctime_ns=t)
                        .returning(_FILES.c.id)))
            for part in _parts(ids):
                for r in s.execute(names.where(_FILES.c.id.in_(part))):
                    if r.id in found:
                        others.append((r.id, r.folder_id, r.name))
                        continue
                    found[r.id] = (r.folder_id, r.name, r.size,
                                   r.deleted_at is not None and r.id not in trashed)
                    first[r.id] = r.name_id
            doomed = [fid for fid in found if (permanent or fid in trashed)]
            doomed_set = set(doomed)
            further = [o for o in others if o[0] in doomed_set]
            for part in _parts(doomed):
                if permanent:  # their names go with them
                    s.execute(delete(_FILES).where(_FILES.c.id.in_(part)))
                else:
                    s.execute(update(_NAMES).where(_NAMES.c.id.in_([first[fid] for fid in part]))
                              .values(deleted_at=now))
            if further and not permanent:
                for part in _parts(sorted({fid for fid, _, _ in further})):
                    s.execute(delete(_NAMES).where(_NAMES.c.file_id.in_(part),
                                                   _NAMES.c.deleted_at.is_(None)))
                    s.execute(update(_FILES).where(_FILES.c.id.in_(part)).values(nlink=1))
            if permanent:
                self._release(s, caller.user_id, sum(found[fid][2] for fid in doomed))
            parents = sorted({found[fid][0] for fid in doomed} | {f for _, f, _ in further})
            for part in _parts(parents):
                s.execute(update(_FOLDERS).where(_FOLDERS.c.id.in_(part))
                          .values(mtime_ns=t, ctime_ns=t))
        for fid, folder_id, name in further:
            self.changes.publish(Change("deleted", caller.user_id, fid, folder_id, name))
        out: list[tuple[str, CloudError | None]] = []
        for fid in ids:
            if fid in doomed_set:
                folder_id, name, size, _ = found[fid]
                self.changes.publish(Change("deleted", caller.user_id, fid, folder_id, name))
                self.events.emit("delete",
                                 f"{name} {'deleted' if permanent else 'moved to trash'}",
                                 caller.user_id, file_id=fid, size=size, permanent=permanent)
                out.append((fid, None))
            elif fid in found:
                out.append((fid, NotFound("file is already in the trash")))
            else:
                out.append((fid, NotFound(f"no such file: {fid}")))
        return out

    def restore(self, caller: Caller, entry_id: str, new_parent_id: str = "",
                new_name: str = "") -> tuple[File | Folder, str]:
        """An entry back from the trash: a folder where it was, a file under the name the
        trash kept for it (the last name it had), or where and as the caller says."""
        with self.db.write() as s:
            entry: File | Folder | None = s.get(Folder, entry_id)
            if entry is None or entry.owner_id != caller.user_id:
                entry = self._file(s, caller, entry_id, lock=True)
            if entry.deleted_at is None:
                raise FailedPrecondition("not in the trash")
            if isinstance(entry, Folder):
                origin = entry.original_parent_id or entry.parent_id or caller.root_folder_id
            else:
                origin = entry.folder_id or caller.root_folder_id
            dest_id = new_parent_id or origin
            try:
                dest = self._folder(s, caller, dest_id, lock=True)
            except NotFound:
                if new_parent_id:
                    raise
                dest = self._folder(s, caller, caller.root_folder_id, lock=True)
            name = check_name(new_name or entry.name, "new_name")
            if self._child(s, dest.id, name) is not None:
                raise AlreadyExists(f"{name} already exists in the destination: pick a new name")
            entry.deleted_at = None
            entry.name = name
            entry.ctime_ns = now_ns()
            dest.mtime_ns = dest.ctime_ns = now_ns()
            if isinstance(entry, Folder):
                entry.parent_id = dest.id
                entry.original_parent_id = None
            else:
                entry.folder_id = dest.id
                entry.nlink = 1
                restored = s.execute(update(_NAMES).where(_NAMES.c.file_id == entry.id).values(
                    folder_id=dest.id, name=name, deleted_at=None)).rowcount
                if not restored:  # (a trashed file always keeps a name; should it not)
                    s.add(FileName(file_id=entry.id, owner_id=entry.owner_id,
                                   folder_id=dest.id, name=name))
            s.flush()
            path = posixpath.join(self.path_of(s, dest), name)
        self.changes.publish(Change("restored", caller.user_id, entry.id, dest.id, name,
                                    is_folder=isinstance(entry, Folder)))
        self.events.emit("restore", f"{name} restored from trash", caller.user_id,
                         entry_id=entry.id)
        return entry, path

    def list_trash(self, caller: Caller) -> tuple[list[Folder], list[File], dict[str, str]]:
        """Top-level trashed entries (what is inside a trashed folder goes with it): files
        under the name the trash keeps for each."""
        with self.db.read() as s:
            folders = [f for f in s.scalars(select(Folder).where(
                Folder.owner_id == caller.user_id, Folder.deleted_at.is_not(None)))
                if f.parent_id and self._is_live_folder(s, s.get(Folder, f.parent_id))]
            files = []
            for f, folder_id, name in s.execute(
                    select(File, FileName.folder_id, FileName.name)
                    .join(FileName, FileName.file_id == File.id)
                    .where(File.owner_id == caller.user_id, File.deleted_at.is_not(None))):
                parent = s.get(Folder, folder_id)
                if parent is not None and self._is_live_folder(s, parent):
                    files.append(shown(f, folder_id, name))
            paths: dict[str, str] = {}
            for folder in folders:
                parent = s.get(Folder, folder.parent_id)
                paths[folder.id] = posixpath.join(self.path_of(s, parent), folder.name)
            for f in files:
                parent = s.get(Folder, f.folder_id)
                paths[f.id] = posixpath.join(self.path_of(s, parent), f.name)
            return folders, files, paths

    def empty_trash(self, caller: Caller, entry_ids: Sequence[str] = ()) -> tuple[int, int]:
        folders, files, _ = self.list_trash(caller)
        wanted = set(entry_ids)
        removed = freed = 0
        with self.db.write() as s:
            for folder in folders:
                if wanted and folder.id not in wanted:
                    continue
                row = s.get(Folder, folder.id)
                if row is not None:
                    _, inner = self._subtree(s, row)
                    removed += len(inner)
                    freed += self._purge_folder(s, caller, row)
            for f in files:
                if wanted and f.id not in wanted:
                    continue
                row = s.get(File, f.id)
                if row is not None:
                    freed += row.size
                    removed += 1
                    self._release(s, caller.user_id, row.size)
                    s.delete(row)
        if removed:
            self.events.emit("delete", f"trash emptied: {removed} files", caller.user_id,
                             files=removed, bytes=freed, permanent=True)
        return removed, freed

    # --- uploads --------------------------------------------------------------------------

    def prepare_upload(self, caller: Caller, parent_id: str, name: str, size: int,
                       overwrite_file_id: str, replace_existing: bool
                       ) -> tuple[str, int, str, int]:
        """Check an upload before any byte is stored: (owner id, bytes free for it, id of
        the file it replaces, that file's size).

        The free bytes count what an overwrite gives back, less what the owner's other
        uploads hold; the real bytes are reserved as they arrive and checked at commit.
        """
        with self.db.read() as s:
            if overwrite_file_id:
                f = self._load_file(s, overwrite_file_id)
                if f is None:
                    raise NotFound(f"no such file: {overwrite_file_id}")
                access = self._access(s, caller, f)
                if access.permission == "read":
                    raise PermissionDenied("this file is shared with you read-only")
                owner_id, frees, file_id = f.owner_id, f.size, f.id
            else:
                check_name(name, "filename")
                parent = self._folder(s, caller, parent_id)
                existing = self._child(s, parent.id, name)
                owner_id, frees, file_id = caller.user_id, 0, ""
                if existing is not None:
                    if isinstance(existing, Folder) or not replace_existing:
                        raise AlreadyExists(f"{name} already exists")
                    frees, file_id = existing.size, existing.id
            owner = s.get(User, owner_id)
            assert owner is not None
            free = (owner.storage_allocated - owner.storage_used
                    - self._held(s, owner_id, parked=False) + frees)
            if size > 0 and size > free:
                raise QuotaExceeded(
                    f"not enough space: the file needs {size} bytes, {max(free, 0)} are free")
            return owner_id, free, file_id, frees

    def replaced_sizes(self, caller: Caller,
                       items: Sequence[tuple[str, str, str, bool]]) -> list[int]:
        """For a batch about to reserve its chunks: the size of the caller's own live file
        each item (overwrite id, parent id, name, replace_existing) overwrites, 0 for none.

        An edit then reserves only what it grows by, as ``prepare_upload``'s credit does for
        a stream; each file is credited once. One read for the whole batch; the commit
        still decides for real.
        """
        def parent_of(parent_id: str) -> str:
            return caller.root_folder_id if parent_id in ("", "/", "root") else parent_id

        ids = {fid for fid, _, _, _ in items if fid}
        named = {(parent_of(pid), name) for fid, pid, name, replace in items
                 if not fid and replace}
        by_id: dict[str, int] = {}
        by_name: dict[tuple[str, str], tuple[str, int]] = {}
        with self.db.read() as s:
            live = (File.owner_id == caller.user_id, File.deleted_at.is_(None))
            for part in _parts(sorted(ids)):
                for fid, size in s.execute(select(File.id, File.size).where(
                        File.id.in_(part), *live)):
                    by_id[fid] = int(size)
            if named:
                parents = sorted({pid for pid, _ in named})
                names = sorted({name for _, name in named})
                for fid, pid, name, size in s.execute(
                        select(File.id, FileName.folder_id, FileName.name, File.size)
                        .join(FileName, FileName.file_id == File.id).where(
                            FileName.folder_id.in_(parents), FileName.name.in_(names),
                            FileName.deleted_at.is_(None), *live)):
                    by_name[(pid, name)] = (fid, int(size))
        credited: set[str] = set()
        sizes: list[int] = []
        for fid, pid, name, replace in items:
            if fid:
                target = (fid, by_id[fid]) if fid in by_id else None
            else:
                target = by_name.get((parent_of(pid), name)) if replace else None
            if target is None or target[0] in credited:
                sizes.append(0)
                continue
            credited.add(target[0])
            sizes.append(target[1])
        return sizes

    def commit_upload(self, caller: Caller, *, parent_id: str, name: str, mime_type: str,
                      spans: Sequence[ChunkSpan], size: int, overwrite_file_id: str,
                      replace_existing: bool, mode: int, uid: int, gid: int, mtime_ns: int,
                      expected_version: int, reservation_id: str = "",
                      parent_mtime_ns: int = 0, rdev: int = 0) -> File:
        """Make an upload visible: file row and chunk list swap in one transaction, and the
        upload's reservation gives way to the file's size in the same one."""
        special = check_file_type(mode, size)
        with self.db.write() as s:
            target: File | None = None
            if overwrite_file_id:
                target = self._load_file(s, overwrite_file_id, lock=True)
                if target is None:
                    raise NotFound(f"file disappeared during the upload: {overwrite_file_id}")
                access = self._access(s, caller, target)
                if access.permission == "read":
                    raise PermissionDenied("this file is shared with you read-only")
                if expected_version and target.version != expected_version:
                    raise Conflict("the file changed during the upload")
                parent = None  # new content in place: the folder does not change
            else:
                check_name(name, "filename")
                parent = self._folder(s, caller, parent_id, lock=True)
                existing = self._child(s, parent.id, name)
                if existing is not None:
                    if isinstance(existing, Folder) or not replace_existing:
                        raise AlreadyExists(f"{name} already exists")
                    target = existing
            owner_id = target.owner_id if target is not None else caller.user_id
            owner = s.get(User, owner_id, with_for_update=self.db.is_postgres)
            assert owner is not None
            frees = target.size if target is not None else 0
            if owner.storage_used - frees + size > owner.storage_allocated:
                raise QuotaExceeded(
                    f"not enough space: the file holds {size} bytes, "
                    f"{max(owner.storage_allocated - owner.storage_used + frees, 0)} are free")
            t = now_ns()
            mime = mime_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
            if target is None:
                assert parent is not None
                target = File(id=new_id(), owner_id=owner_id, folder_id=parent.id, name=name,
                              size=size, mime_type=mime, mode=stored_mode(mode, 0o644),
                              uid=uid, gid=gid, atime_ns=t, mtime_ns=mtime_ns or t, ctime_ns=t,
                              version=1, rdev=rdev if special else 0)
                s.add(target)
                s.flush()
                s.execute(_INSERT_NAME, _name_row(target))
                kind = "created"
            else:
                s.execute(delete(FileChunk).where(FileChunk.file_id == target.id))
                target.size = size
                if mime_type:
                    target.mime_type = mime_type
                if special or target.mode & S_IFMT in SPECIAL_TYPES:
                    raise InvalidArgument("a fifo, socket or device is made, not rewritten")
                if mode and target.owner_id == caller.user_id:
                    target.mode = changed_mode(target.mode, mode, S_IFREG)
                target.mtime_ns = mtime_ns or t
                target.ctime_ns = t
                target.version += 1
                target.modified_at = utcnow()
                kind = "updated"
            offset = 0
            rows = []
            for seq, span in enumerate(spans):
                rows.append({"file_id": target.id, "seq": seq, "chunk_sha256": span.sha256,
                             "offset": offset, "size": span.size})
                offset += span.size
            _insert_chunk_rows(s, rows)
            owner.storage_used = owner.storage_used - frees + size
            if self.reservations is not None:
                self.reservations.release(s, reservation_id)
            if parent is not None and not overwrite_file_id:
                # a new name (or a name replaced) changes the folder; new content in place
                # does not, as on Linux
                parent.mtime_ns = parent_mtime_ns or t
                parent.ctime_ns = t
            s.flush()
            s.expunge(target)
            recipients = [] if kind == "created" else list(s.scalars(  # a new file: no shares
                select(Share.shared_with_id).where(Share.file_id == target.id)))
        change = Change(kind, owner_id, target.id, target.folder_id, target.name)
        self.changes.publish(change)
        for rid in recipients:
            self.changes.publish(Change(kind, rid, target.id, "", target.name, shared=True))
        return target

    def commit_small_uploads(self, caller: Caller, items: Sequence[SmallCommit],
                             reservation_id: str = "") -> list[File | CloudError]:
        """``commit_upload`` for a batch of one-chunk files, in one transaction.

        Every item is checked (names, access, versions, quota, counting the batch's own
        earlier items) before anything is written, and one that fails gets its error in
        its place while the others commit. Parents, overwrite targets, name clashes and
        owners are each read with one query for the whole batch.
        """
        out: list[File | CloudError] = []
        with self.db.write() as s:
            wanted = list(dict.fromkeys(it.overwrite_file_id for it in items
                                        if it.overwrite_file_id))
            targets = self._load_files(s, wanted)
            pids = [it.parent_id if it.parent_id not in ("", "/", "root")
                    else caller.root_folder_id for it in items]
            parents: dict[str, Folder | CloudError] = {}
            for it, pid in zip(items, pids, strict=True):
                if not it.overwrite_file_id and pid not in parents:
                    try:
                        parents[pid] = self._folder(s, caller, pid, lock=True)
                    except CloudError as exc:
                        parents[pid] = exc
            taken = self._names_taken(s, {pid: [it.name for it in items] for pid, parent
                                          in parents.items() if isinstance(parent, Folder)})
            owners: dict[str, User] = {}
            claimed: set[tuple[str, str]] = set()  # (folder, name) created by this batch
            touched: dict[str, Folder] = {}  # folders whose entries change
            parent_times: dict[str, int] = {}
            fresh: list[File] = []
            chunk_rows: list[dict[str, object]] = []
            replaced: dict[str, File] = {}
            t = now_ns()
            for it, pid in zip(items, pids, strict=True):
                try:
                    target: File | None = None
                    if it.overwrite_file_id:
                        target = targets.get(it.overwrite_file_id)
                        if target is None:
                            raise NotFound(f"no such file: {it.overwrite_file_id}")
                        if self._access(s, caller, target).permission == "read":
                            raise PermissionDenied("this file is shared with you read-only")
                        if target.deleted_at is not None:
                            raise NotFound("file is in the trash")
                        if it.expected_version and target.version != it.expected_version:
                            raise Conflict("the file changed during the upload")
                        parent = None
                    else:
                        check_name(it.name, "filename")
                        found = parents[pid]
                        if isinstance(found, CloudError):
                            raise found
                        parent = found
                        if (parent.id, it.name) in claimed:
                            raise AlreadyExists(f"{it.name} appears twice in one batch")
                        existing = taken.get((parent.id, it.name))
                        if existing is not None:
                            if isinstance(existing, Folder) or not it.replace_existing:
                                raise AlreadyExists(f"{it.name} already exists")
                            target = existing
                    if target is not None and target.id in replaced:
                        raise Conflict(f"{target.name} appears twice in one batch")
                    special = check_file_type(it.mode, it.size)
                    if target is not None and (special or target.mode & S_IFMT in SPECIAL_TYPES):
                        raise InvalidArgument("a fifo, socket or device is made, not rewritten")
                    owner_id = target.owner_id if target is not None else caller.user_id
                    owner = owners.get(owner_id)
                    if owner is None:
                        owner = s.get(User, owner_id, with_for_update=self.db.is_postgres)
                        assert owner is not None
                        owners[owner_id] = owner
                    frees = target.size if target is not None else 0
                    if owner.storage_used - frees + it.size > owner.storage_allocated:
                        free = max(owner.storage_allocated - owner.storage_used + frees, 0)
                        raise QuotaExceeded(f"not enough space: {it.name} holds {it.size} "
                                            f"bytes, {free} are free")
                except CloudError as exc:
                    out.append(exc)
                    continue
                mime = it.mime_type or mimetypes.guess_type(it.name)[0] or \
                    "application/octet-stream"
                if target is None:
                    assert parent is not None
                    target = File(id=new_id(), owner_id=owner_id, folder_id=parent.id,
                                  name=it.name, size=it.size, mime_type=mime,
                                  mode=stored_mode(it.mode, 0o644), uid=it.uid, gid=it.gid,
                                  atime_ns=t, mtime_ns=it.mtime_ns or t, ctime_ns=t, version=1,
                                  rdev=it.rdev if special else 0)
                    fresh.append(target)
                    claimed.add((parent.id, it.name))
                    touched[parent.id] = parent
                    parent_times[parent.id] = it.parent_mtime_ns or t
                else:
                    replaced[target.id] = target
                    if parent is not None:  # a name replaced (not content overwritten)
                        touched[parent.id] = parent
                        parent_times[parent.id] = it.parent_mtime_ns or t
                    target.size = it.size
                    if it.mime_type:
                        target.mime_type = it.mime_type
                    if it.mode and target.owner_id == caller.user_id:
                        target.mode = changed_mode(target.mode, it.mode, S_IFREG)
                    target.mtime_ns = it.mtime_ns or t
                    target.ctime_ns = t
                    target.version += 1
                    target.modified_at = utcnow()
                owner.storage_used = owner.storage_used - frees + it.size
                if it.sha256:
                    chunk_rows.append({"file_id": target.id, "seq": 0, "chunk_sha256": it.sha256,
                                       "offset": 0, "size": it.size})
                out.append(target)
            if self.reservations is not None:
                self.reservations.release(s, reservation_id)
            replaced_ids = list(replaced)
            for part in _parts(replaced_ids):
                s.execute(delete(FileChunk).where(FileChunk.file_id.in_(part)))
            s.add_all(fresh)
            s.flush()
            if fresh:
                s.execute(_INSERT_NAME, [_name_row(f) for f in fresh])
            _insert_chunk_rows(s, chunk_rows)
            for parent in touched.values():
                parent.mtime_ns = parent_times.get(parent.id) or t
                parent.ctime_ns = t
            s.flush()
            recipients: dict[str, list[str]] = {}
            for part in _parts(replaced_ids):
                for fid, rid in s.execute(select(Share.file_id, Share.shared_with_id).where(
                        Share.file_id.in_(part))):
                    recipients.setdefault(fid, []).append(rid)
            for f in out:
                if isinstance(f, File):
                    s.expunge(f)
        for f in out:
            if isinstance(f, CloudError):
                continue
            kind = "updated" if f.id in replaced else "created"
            self.changes.publish(Change(kind, f.owner_id, f.id, f.folder_id, f.name))
            for rid in recipients.get(f.id, []):
                self.changes.publish(Change(kind, rid, f.id, "", f.name, shared=True))
        return out

    def _names_taken(self, s: DbSession, names: dict[str, list[str]]
                     ) -> dict[tuple[str, str], File | Folder]:
        """Live entries holding any of ``names`` in their folder, by (folder id, name)."""
        taken: dict[tuple[str, str], File | Folder] = {}
        for folder_id, wanted in names.items():
            for part in _parts(list(dict.fromkeys(wanted))):
                for d in s.scalars(select(Folder).where(
                        Folder.parent_id == folder_id, Folder.name.in_(part),
                        Folder.deleted_at.is_(None))):
                    taken[(folder_id, d.name)] = d
                for f, name in s.execute(select(File, FileName.name).join(
                        FileName, FileName.file_id == File.id).where(
                        FileName.folder_id == folder_id, FileName.name.in_(part),
                        FileName.deleted_at.is_(None))):
                    if not f.name:  # (the session's object: the batch changes it)
                        f.folder_id, f.name = folder_id, name
                    taken.setdefault((folder_id, name), f)
        return taken

    # --- shares ---------------------------------------------------------------------------

    def share(self, caller: Caller, file_id: str, email: str, permission: str) -> Share:
        permission = (permission or "read").lower()
        if permission not in ("read", "write"):
            raise InvalidArgument("permission must be read or write")
        email = normalize_email(email)
        with self.db.write() as s:
            f = self._file(s, caller, file_id)
            if f.deleted_at is not None:
                raise NotFound("file is in the trash")
            if f.mode & S_IFMT in SPECIAL_TYPES:
                # a device entry in someone else's mount could open their hardware
                raise InvalidArgument("a fifo, socket or device entry cannot be shared")
            other = s.scalars(select(User).where(User.email == email)).first()
            if other is None:
                raise NotFound(f"no user with email {email}")
            if other.id == caller.user_id:
                raise InvalidArgument("you cannot share a file with yourself")
            share = s.scalars(select(Share).where(Share.file_id == f.id,
                                                  Share.shared_with_id == other.id)).first()
            if share is None:
                share = Share(file_id=f.id, owner_id=caller.user_id, shared_with_id=other.id,
                              permission=permission, share_token=secrets.token_urlsafe(24))
                s.add(share)
            else:
                share.permission = permission
            s.flush()
            s.expunge(share)
            other_id, fname = other.id, f.name
        self.changes.publish(Change("created", other_id, file_id, "", fname, shared=True))
        self.events.emit("share", f"{fname} shared with {email} ({permission})",
                         caller.user_id, file_id=file_id, with_email=email,
                         permission=permission)
        return share

    def list_shares(self, caller: Caller, file_id: str = "") -> list[tuple[Share, str, str]]:
        with self.db.read() as s:
            first_name = select(FileName.name).where(FileName.file_id == Share.file_id).order_by(
                FileName.created_at, FileName.id).limit(1).scalar_subquery()
            q = (select(Share, first_name, User.email)
                 .join(User, User.id == Share.shared_with_id)
                 .where(Share.owner_id == caller.user_id).order_by(Share.created_at))
            if file_id:
                q = q.where(Share.file_id == file_id)
            return [(sh, name, email) for sh, name, email in s.execute(q)]

    def revoke_share(self, caller: Caller, share_id: str = "", file_id: str = "",
                     email: str = "") -> None:
        with self.db.write() as s:
            if share_id:
                share = s.get(Share, share_id)
            else:
                other = s.scalars(select(User).where(
                    User.email == normalize_email(email))).first()
                share = None if other is None else s.scalars(select(Share).where(
                    Share.file_id == file_id, Share.shared_with_id == other.id)).first()
            # The owner revokes any share of theirs; a recipient removes only their own.
            if share is None or caller.user_id not in (share.owner_id, share.shared_with_id):
                raise NotFound("no such share")
            if file_id and share.file_id != file_id:
                raise NotFound("no such share")
            recipient, fid = share.shared_with_id, share.file_id
            s.delete(share)
        self.changes.publish(Change("deleted", recipient, fid, "", "", shared=True))
        by = "owner" if recipient != caller.user_id else "recipient"
        self.events.emit("share_revoked", f"share removed by its {by}", caller.user_id,
                         file_id=fid)

    def shared_with_me(self, caller: Caller) -> list[tuple[File, str, str]]:
        """Live files shared with the caller, each once (under its oldest name)."""
        with self.db.read() as s:
            rows = s.execute(
                select(File, Share.permission, User.email, FileName.folder_id, FileName.name)
                .join(Share, Share.file_id == File.id)
                .join(User, User.id == File.owner_id)
                .join(FileName, FileName.file_id == File.id)
                .where(Share.shared_with_id == caller.user_id, File.deleted_at.is_(None))
                .order_by(FileName.created_at, FileName.id))
            found: dict[str, tuple[File, str, str]] = {}
            for f, perm, email, folder_id, name in rows:
                if f.id not in found:
                    f.folder_id, f.name = folder_id, name
                    found[f.id] = (f, perm, email)
            return sorted(((f, perm, email) for f, perm, email in found.values()
                           if self._file_is_live(s, f)), key=lambda x: x[0].name)

    # --- accounting -----------------------------------------------------------------------

    def usage(self, caller: Caller) -> tuple[int, int, int, int, int]:
        """(allocated, used, live file count, bytes in the trash, bytes held by uploads in
        progress and by aborted uploads' chunks not yet collected)."""
        with self.db.read() as s:
            user = s.get(User, caller.user_id)
            assert user is not None
            count = s.scalar(select(func.count()).select_from(File).where(
                File.owner_id == user.id, File.deleted_at.is_(None))) or 0
            trash = s.scalar(select(func.coalesce(func.sum(File.size), 0)).where(
                File.owner_id == user.id, File.deleted_at.is_not(None))) or 0
            return (user.storage_allocated, user.storage_used, int(count), int(trash),
                    self._held(s, user.id))


def _insert_chunk_rows(s: DbSession, rows: list[dict[str, object]]) -> None:
    """A file's chunk list; a chunk collected meanwhile makes the whole upload a Conflict."""
    if not rows:
        return
    try:
        s.execute(FileChunk.__table__.insert(), rows)
    except IntegrityError as exc:
        raise Conflict("some of the upload's chunks were collected before it finished: "
                       "upload it again") from exc


def _parts(items: Sequence[str], size: int = 500) -> list[Sequence[str]]:
    """Slices small enough for an IN list on every backend."""
    return [items[i:i + size] for i in range(0, len(items), size)]


def iso(value: dt.datetime | None) -> str:
    return value.replace(tzinfo=dt.UTC).isoformat() if value else ""
