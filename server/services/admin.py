"""AdminService: system status, users, nodes and the live event stream.

Every call is guarded by the admin key, compared in constant time; a wrong key is refused
with PERMISSION_DENIED and recorded as an event.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from cloudgrpc_proto.errors import InvalidArgument, NotFound, PermissionDenied
from sqlalchemy import func, select

from .. import security
from ..db import Database
from ..events import EventBus, EventRecord
from ..grpc_edge import rpc
from ..models import Chunk, File, Folder, Replica, Session, StorageNode, User, utcnow
from ..wire import iso, node_info, user_info


class AdminServicer(pb_grpc.AdminServiceServicer):
    def __init__(self, db: Database, events: EventBus, admin_key: str,
                 replication_factor: int) -> None:
        self.db = db
        self.events = events
        self.admin_key = admin_key
        self.replication_factor = replication_factor

    def _guard(self, key: str, context: grpc.ServicerContext) -> None:
        if not security.same_secret(key or "", self.admin_key):
            self.events.emit("admin_denied", "admin call with a wrong key refused", None,
                             peer=context.peer())
            raise PermissionDenied("wrong admin key")

    @rpc
    def GetSystemStatus(self, request: pb.SystemStatusRequest, context: grpc.ServicerContext
                        ) -> pb.SystemStatusResponse:
        self._guard(request.admin_key, context)
        with self.db.read() as s:
            nodes = list(s.scalars(select(StorageNode)))
            active = [n for n in nodes if n.status != "drained"]
            online = [n for n in nodes if n.status in ("online", "draining")]
            online_ids = {n.id for n in online}
            users = s.scalar(select(func.count()).select_from(User)) or 0
            allocated = s.scalar(select(func.coalesce(func.sum(User.storage_allocated), 0))) or 0
            used = s.scalar(select(func.coalesce(func.sum(User.storage_used), 0))) or 0
            files = s.scalar(select(func.count()).select_from(File).where(
                File.deleted_at.is_(None))) or 0
            chunks = s.scalar(select(func.count()).select_from(Chunk)) or 0
            target = max(1, min(self.replication_factor, len(active) or 1))
            per_chunk = s.execute(select(Replica.chunk_sha256, Replica.node_id)).all()
        live: dict[str, int] = {}
        for sha, node_id in per_chunk:
            live.setdefault(sha, 0)
            if node_id in online_ids:
                live[sha] += 1
        under = sum(1 for n in live.values() if n < target)
        capacity = sum(n.capacity_bytes for n in online)
        node_used = sum(n.used_bytes for n in online)
        node_part = len(online) / len(active) if active else 0.0
        chunk_part = 1.0 - (under / len(live)) if live else 1.0
        health = round(100.0 * node_part * chunk_part, 1) if active else 0.0
        return pb.SystemStatusResponse(
            success=True, global_capacity_bytes=capacity, global_allocated_bytes=int(allocated),
            global_used_bytes=int(used), total_users=int(users), total_nodes=len(active),
            online_nodes=len(online), total_files=int(files), total_chunks=int(chunks),
            system_health=health, under_replicated_chunks=under,
            replication_factor=self.replication_factor, node_used_bytes=node_used)

    @rpc
    def ListAllUsers(self, request: pb.ListUsersRequest, context: grpc.ServicerContext
                     ) -> pb.ListUsersResponse:
        self._guard(request.admin_key, context)
        with self.db.read() as s:
            counts = dict(s.execute(select(File.owner_id, func.count()).where(
                File.deleted_at.is_(None)).group_by(File.owner_id)).all())
            users = list(s.scalars(select(User).order_by(User.created_at)))
            return pb.ListUsersResponse(success=True, users=[
                user_info(u, int(counts.get(u.id, 0))) for u in users])

    @rpc
    def ListNodes(self, request: pb.ListNodesRequest, context: grpc.ServicerContext
                  ) -> pb.ListNodesResponse:
        self._guard(request.admin_key, context)
        with self.db.read() as s:
            nodes = list(s.scalars(select(StorageNode).order_by(StorageNode.name)))
            out = []
            for n in nodes:
                free = 1.0 - (n.used_bytes / n.capacity_bytes if n.capacity_bytes else 1.0)
                health = 0.0 if n.status in ("offline", "drained") else round(
                    100.0 * (0.5 + 0.5 * max(0.0, free)), 1)
                out.append(node_info(n, health))
        return pb.ListNodesResponse(success=True, nodes=out)

    @rpc
    def GetUserDetails(self, request: pb.GetUserDetailsRequest,
                       context: grpc.ServicerContext) -> pb.GetUserDetailsResponse:
        self._guard(request.admin_key, context)
        with self.db.read() as s:
            u = s.scalars(select(User).where(User.email == request.email.strip().lower())).first()
            if u is None:
                raise NotFound(f"no user with email {request.email}")
            files = s.scalar(select(func.count()).select_from(File).where(
                File.owner_id == u.id, File.deleted_at.is_(None))) or 0
            folders = s.scalar(select(func.count()).select_from(Folder).where(
                Folder.owner_id == u.id, Folder.parent_id.is_not(None),
                Folder.deleted_at.is_(None))) or 0
            trash = s.scalar(select(func.coalesce(func.sum(File.size), 0)).where(
                File.owner_id == u.id, File.deleted_at.is_not(None))) or 0
            sessions = s.scalar(select(func.count()).select_from(Session).where(
                Session.user_id == u.id, Session.revoked_at.is_(None),
                Session.expires_at > utcnow())) or 0
            return pb.GetUserDetailsResponse(
                success=True, user=user_info(u, int(files)), active_sessions=int(sessions),
                trash_bytes=int(trash), folder_count=int(folders))

    @rpc
    def SetUserQuota(self, request: pb.SetUserQuotaRequest, context: grpc.ServicerContext
                     ) -> pb.SetUserQuotaResponse:
        self._guard(request.admin_key, context)
        if request.storage_bytes < 0:
            raise InvalidArgument("a quota cannot be negative")
        with self.db.write() as s:
            u = s.scalars(select(User).where(User.email == request.email.strip().lower())).first()
            if u is None:
                raise NotFound(f"no user with email {request.email}")
            u.storage_allocated = request.storage_bytes
            uid = u.id
        self.events.emit("quota_changed", f"quota of {request.email} set to "
                         f"{request.storage_bytes} bytes", uid, storage_bytes=request.storage_bytes)
        return pb.SetUserQuotaResponse(success=True, message="quota updated",
                                       storage_allocated=request.storage_bytes)

    @rpc
    def StreamSystemEvents(self, request: pb.StreamEventsRequest,
                           context: grpc.ServicerContext) -> Iterator[pb.SystemEvent]:
        self._guard(request.admin_key, context)
        types = set(request.event_types) or None
        sub = self.events.subscribe(types)
        try:
            history = 20 if request.history == 0 else max(0, request.history)
            last_id = 0
            for record in self.events.recent(history, types) if history else []:
                last_id = max(last_id, record.event_id)
                yield _event(record)
            heartbeat_at = time.monotonic()
            while context.is_active():
                record = sub.get(timeout=1.0)
                if record is None:
                    if time.monotonic() - heartbeat_at > 15:
                        heartbeat_at = time.monotonic()
                    continue
                if record.event_id and record.event_id <= last_id:
                    continue
                yield _event(record)
        finally:
            sub.close()


def _event(record: EventRecord) -> pb.SystemEvent:
    return pb.SystemEvent(event_type=record.event_type, timestamp=iso(record.timestamp),
                          message=record.message, user_id=record.user_id,
                          details=record.details, event_id=record.event_id)
