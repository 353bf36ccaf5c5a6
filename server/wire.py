"""Model rows to protobuf messages (the only place that knows both shapes)."""

from __future__ import annotations

import datetime as dt

from cloudgrpc_proto import cloud_storage_pb2 as pb

from .models import File, Folder, StorageNode, User


def iso(value: dt.datetime | None) -> str:
    return value.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z") if value else ""


def file_entry(f: File, *, permission: str = "owner", owner_email: str = "",
               path: str = "") -> pb.FileEntry:
    return pb.FileEntry(
        file_id=f.id, filename=f.name, file_size=f.size, mime_type=f.mime_type,
        created_at=iso(f.created_at), modified_at=iso(f.modified_at),
        is_deleted=f.deleted_at is not None, parent_folder_id=f.folder_id,
        owner_email=owner_email, permission=permission, mode=f.mode, uid=f.uid, gid=f.gid,
        atime_ns=f.atime_ns, mtime_ns=f.mtime_ns, ctime_ns=f.ctime_ns,
        symlink_target=f.symlink_target or "", version=f.version, rdev=f.rdev or 0,
        deleted_at=iso(f.deleted_at), path=path, nlink=f.nlink or 1,
    )


def folder_entry(d: Folder, *, path: str = "", owner_email: str = "",
                 subfolders: int = 0) -> pb.FolderEntry:
    return pb.FolderEntry(
        folder_id=d.id, name=d.name, parent_folder_id=d.parent_id or "",
        created_at=iso(d.created_at), is_deleted=d.deleted_at is not None, mode=d.mode,
        uid=d.uid, gid=d.gid, atime_ns=d.atime_ns, mtime_ns=d.mtime_ns, ctime_ns=d.ctime_ns,
        path=path, owner_email=owner_email, permission="owner", subfolders=subfolders,
    )


def entry_response(entry: File | Folder, *, permission: str = "owner", path: str = "",
                   owner_email: str = "") -> pb.EntryResponse:
    if isinstance(entry, Folder):
        return pb.EntryResponse(success=True, folder=folder_entry(entry, path=path,
                                                                  owner_email=owner_email))
    return pb.EntryResponse(success=True, file=file_entry(entry, permission=permission,
                                                          path=path, owner_email=owner_email))


def user_info(u: User, file_count: int = 0) -> pb.UserInfo:
    return pb.UserInfo(
        user_id=u.id, email=u.email, full_name=u.full_name,
        storage_allocated=u.storage_allocated, storage_used=u.storage_used,
        created_at=iso(u.created_at), last_login=iso(u.last_login), file_count=file_count,
        is_active=u.is_active,
    )


def node_info(n: StorageNode, health: float) -> pb.NodeInfo:
    return pb.NodeInfo(
        node_id=n.id, name=n.name, host=n.host, port=n.port, capacity_bytes=n.capacity_bytes,
        used_bytes=n.used_bytes, online=n.status in ("online", "draining"),
        last_heartbeat=iso(n.last_heartbeat), chunk_count=n.chunk_count, health_score=health,
        status=n.status, registered_at=iso(n.registered_at), logical_bytes=logical_size(n),
    )


def logical_size(n: StorageNode) -> int:
    """A node's chunks before compression; until its first heartbeat says (or from a node
    too old to say), what it holds on disk."""
    return n.logical_bytes or n.used_bytes
