"""Remote paths and ids, as the CLI's commands accept them.

Paths are POSIX paths from the account root ("/docs/report.pdf"); the same tree the mount
shows. Ids keep working wherever a path does, as in the seed: a 36-character uuid that the
gateway finds by id. Resolution asks the gateway (StatEntry takes a path), so the CLI never
walks the tree one folder at a time.
"""

from __future__ import annotations

import posixpath
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import errors
from cloudgrpc_proto.client import CloudClient

UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


def looks_like_id(text: str) -> bool:
    return bool(UUID_RE.match(text.strip()))


def normalize(path: str, cwd: str = "/") -> str:
    """An absolute, normalised remote path ('docs/../a' from '/x' -> '/x/a')."""
    joined = posixpath.join(cwd or "/", path) if path else (cwd or "/")
    norm = posixpath.normpath(joined)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    return norm if norm.startswith("/") else "/" + norm


def _clean(path: str) -> str:
    """A path from the gateway, normalised ('//docs' -> '/docs'); '' stays ''."""
    return normalize(path) if path else ""


@dataclass
class Entry:
    """A file or folder as the CLI shows it, whatever message it came from."""

    id: str
    name: str
    path: str
    is_folder: bool
    size: int = 0
    mime_type: str = ""
    modified: str = ""
    mtime_ns: int = 0
    parent_id: str = ""
    deleted: bool = False
    deleted_at: str = ""
    original_path: str = ""
    permission: str = ""
    owner_email: str = ""
    symlink_target: str = ""
    version: int = 0
    mode: int = 0
    raw: Any = field(default=None, repr=False)

    def renamed(self, name: str, path: str) -> Entry:
        return replace(self, name=name, path=path)

    @property
    def is_root(self) -> bool:
        return self.is_folder and self.path == "/"

    @property
    def move_ref(self) -> str:
        """The id to name this folder as a new parent (MoveEntry: "" means "keep")."""
        return self.id or "root"

    @property
    def names(self) -> int:
        """How many names (hard links) the file has; 1 for folders and older gateways."""
        return max(int(getattr(self.raw, "nlink", 0) or 1), 1) if not self.is_folder else 1

    @property
    def kind(self) -> str:
        if self.is_folder:
            return "folder"
        if self.symlink_target:
            return "symlink"
        return "file"

    @classmethod
    def from_file(cls, f: pb.FileEntry, parent_path: str = "") -> Entry:
        path = _clean(f.path) or (posixpath.join(parent_path, f.filename) if parent_path else "")
        return cls(
            id=f.file_id,
            name=f.filename,
            path=path,
            is_folder=False,
            size=f.file_size,
            mime_type=f.mime_type,
            modified=f.modified_at,
            mtime_ns=f.mtime_ns,
            parent_id=f.parent_folder_id,
            deleted=f.is_deleted,
            deleted_at=f.deleted_at,
            original_path=_clean(f.original_path),
            permission=f.permission,
            owner_email=f.owner_email,
            symlink_target=f.symlink_target,
            version=f.version,
            mode=f.mode,
            raw=f,
        )

    @classmethod
    def from_folder(cls, d: pb.FolderEntry, parent_path: str = "") -> Entry:
        path = _clean(d.path) or (posixpath.join(parent_path, d.name) if parent_path else "")
        return cls(
            id=d.folder_id,
            name=d.name or "/",
            path=path,
            is_folder=True,
            modified=d.created_at,
            mtime_ns=d.mtime_ns,
            parent_id=d.parent_folder_id,
            deleted=d.is_deleted,
            permission=d.permission,
            owner_email=d.owner_email,
            mode=d.mode,
            raw=d,
        )

    @classmethod
    def from_response(cls, response: pb.EntryResponse, path: str = "") -> Entry:
        which = response.WhichOneof("entry")
        if which == "folder":
            entry = cls.from_folder(response.folder)
        elif which == "file":
            entry = cls.from_file(response.file)
        else:
            raise errors.NotFound(response.message or "no such file or folder")
        if path and not entry.path:
            entry.path = normalize(path)
        return entry

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "path": self.path,
            "id": self.id,
            "type": self.kind,
            "size": self.size,
            "mime_type": self.mime_type,
            "modified": self.modified,
            "mtime_ns": self.mtime_ns,
            "parent_id": self.parent_id,
            "deleted": self.deleted,
        }
        if self.deleted_at:
            data["deleted_at"] = self.deleted_at
        if self.original_path:
            data["original_path"] = self.original_path
        if self.symlink_target:
            data["symlink_target"] = self.symlink_target
        if self.version:
            data["version"] = self.version
        if self.permission:
            data["permission"] = self.permission
        if self.owner_email:
            data["owner_email"] = self.owner_email
        if self.mode:
            data["mode"] = oct(self.mode & 0o7777)  # (a mount's entries keep type bits)
        if not self.is_folder:
            data["links"] = self.names  # names of the file (hard links), as ls -l's count
        return data


ROOT = Entry(id="", name="/", path="/", is_folder=True)
# The view of files others shared with the user (virtual, as in the mount).
SHARED = Entry(id="", name="Shared", path="/Shared", is_folder=True, permission="read")


SHARED_PATH = "/Shared"


def shared_view_names(files: Iterable[pb.FileEntry]) -> dict[str, pb.FileEntry]:
    """Names for files shared with the user, as the mount's ``Shared/`` lists them.

    Two owners may share files of the same name: later ones get the head of their id
    (``report (1a2b3c4d).pdf``), so every name in the view stays unique and stable.
    """
    out: dict[str, pb.FileEntry] = {}
    for f in files:
        name = f.filename
        if name in out:
            stem, dot, ext = name.rpartition(".")
            tag = f.file_id[:8]
            name = f"{stem} ({tag}).{ext}" if dot and stem else f"{name} ({tag})"
        out[name] = f
    return out


def split_listing(listing: pb.ListFilesResponse, parent_path: str = "") -> list[Entry]:
    """Folders first, then files, each by name: what ``ls`` shows."""
    folders = [Entry.from_folder(d, parent_path) for d in listing.folders]
    files = [Entry.from_file(f, parent_path) for f in listing.files]
    return sorted(folders, key=lambda e: e.name) + sorted(files, key=lambda e: e.name)


class Resolver:
    """Turns what a user typed into entries, relative to a working folder (the shell's cd)."""

    def __init__(self, client: CloudClient, cwd: str = "/") -> None:
        self.client = client
        self.cwd = cwd
        self._folders: dict[str, str] = {"/": ""}
        self._lock = threading.Lock()

    def absolute(self, ref: str) -> str:
        return normalize(ref, self.cwd)

    def stat(self, ref: str) -> Entry:
        """The entry a path or id names; NotFound with the name the user typed."""
        ref = ref.strip() or "."
        if looks_like_id(ref):
            try:
                return Entry.from_response(self.client.stat(entry_id=ref))
            except errors.NotFound:
                pass  # perhaps a file whose name merely looks like an id
        path = self.absolute(ref)
        if path == "/":
            return ROOT
        if path == SHARED_PATH or path.startswith(SHARED_PATH + "/"):
            return self._shared(path)
        try:
            return Entry.from_response(self.client.stat(path=path), path)
        except errors.NotFound:
            raise errors.NotFound(f"no such file or folder: {path}") from None
        except errors.InvalidArgument as exc:
            raise errors.NotFound(f"{path}: {exc.message}") from None

    def shared_entries(self) -> list[Entry]:
        """Files others shared with the user, named as the mount's ``Shared/`` shows them."""
        names = shared_view_names(self.client.list_shared_with_me().files)
        return [Entry.from_file(f, SHARED_PATH).renamed(name, f"{SHARED_PATH}/{name}")
                for name, f in names.items()]

    def _shared(self, path: str) -> Entry:
        if path == SHARED_PATH:
            return SHARED
        name = path[len(SHARED_PATH) + 1:]
        for entry in self.shared_entries():
            if entry.name == name:
                return entry
        raise errors.NotFound(f"nothing shared with you is called {name}")

    def try_stat(self, ref: str) -> Entry | None:
        try:
            return self.stat(ref)
        except errors.NotFound:
            return None

    def folder(self, ref: str) -> Entry:
        entry = self.stat(ref)
        if not entry.is_folder:
            raise errors.InvalidArgument(f"not a folder: {entry.path or ref}")
        return entry

    def ensure_folder(self, path: str) -> str:
        """``mkdir -p``: the id of the folder at ``path``, creating what is missing."""
        path = self.absolute(path)
        with self._lock:
            if path in self._folders:
                return self._folders[path]
        parent_path = posixpath.dirname(path)
        parent_id = self.ensure_folder(parent_path)
        name = posixpath.basename(path)
        try:
            response = self.client.create_folder(name, parent_id, exist_ok=True)
        except errors.AlreadyExists:
            raise errors.AlreadyExists(f"{path} exists and is not a folder") from None
        folder_id = Entry.from_response(response).id
        with self._lock:
            self._folders[path] = folder_id
        return folder_id

    def remember_folder(self, path: str, folder_id: str) -> None:
        with self._lock:
            self._folders[self.absolute(path)] = folder_id

    def forget(self) -> None:
        with self._lock:
            self._folders = {"/": ""}
