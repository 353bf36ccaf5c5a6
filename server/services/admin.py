"""AdminService: system status, users, nodes, tiers, payment analytics, the event stream
and the metadata backup.

Every call is guarded by the admin key, compared in constant time; a wrong key is refused
with PERMISSION_DENIED and recorded as an event (``admin_denied``), and nothing else is
read or returned.

Units: ``system_health``, ``health_score`` and ``success_rate`` are percentages (0-100).
A payment's success rate is completed / (completed + failed): payments still pending (or
processing) are counted but do not lower it; with nothing settled it is 0 in the
analytics, and -1 ("n/a") in the system status's ``payment_success_rate``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Sequence

import grpc
from sqlalchemy import func, select

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from cloudgrpc_proto.errors import (
    InvalidArgument,
    NotFound,
    NotImplementedYet,
    PermissionDenied,
)

from .. import security
from ..accounts import active_sessions
from ..db import Database
from ..events import EventBus, EventRecord
from ..fsck import Fsck
from ..grpc_edge import rpc
from ..metadata_backup import MetadataBackup
from ..models import (
    Chunk,
    File,
    Folder,
    Payment,
    Replica,
    Session,
    StorageNode,
    StorageTier,
    User,
    utcnow,
)
from ..node_registry import NodeRegistry
from ..shortfall import count_short
from ..snapshot_format import FORMAT_LABEL
from ..traffic import TrafficMeter
from ..wire import iso, logical_size, node_info, user_info

log = logging.getLogger(__name__)

DEFAULT_HISTORY = 20
MAX_HISTORY = 1000
USER_PAYMENTS = 50  # payments shown in user details, newest first


class AdminServicer(pb_grpc.AdminServiceServicer):
    def __init__(self, db: Database, events: EventBus, admin_key: str,
                 replication_factor: int, node_timeout_s: float = 30.0,
                 registry: NodeRegistry | None = None,
                 security_warnings: Sequence[str] = (),
                 traffic: TrafficMeter | None = None, speed_window_s: float = 300.0,
                 payment_window_s: float = 86400.0, fsck: Fsck | None = None,
                 backup: MetadataBackup | None = None) -> None:
        self.db = db
        self.fsck = fsck
        self.backup = backup
        # The status's speeds (every gateway's traffic) and payment success rate windows.
        self.traffic = traffic
        self.speed_window_s = speed_window_s
        self.payment_window_s = payment_window_s
        # Insecure modes the gateway runs with: shown by ``cloudgrpc-admin --status``.
        self.security_warnings = list(security_warnings)
        self.registry = registry
        self.events = events
        self.admin_key = admin_key
        self.replication_factor = replication_factor
        self.node_timeout_s = node_timeout_s

    def _guard(self, key: str, context: grpc.ServicerContext) -> None:
        if not security.same_secret(key or "", self.admin_key):
            self.events.emit("admin_denied", "admin call with a wrong key refused", None,
                             peer=context.peer())
            raise PermissionDenied("wrong admin key")

    # --- status -----------------------------------------------------------------------

    @rpc
    def GetSystemStatus(self, request: pb.SystemStatusRequest, context: grpc.ServicerContext
                        ) -> pb.SystemStatusResponse:
        self._guard(request.admin_key, context)
        settle_drained_nodes(self.db, self.events)
        with self.db.read() as s:
            nodes = list(s.scalars(select(StorageNode)))
            active = [n for n in nodes if n.status != "drained"]
            online = [n for n in nodes if n.status in ("online", "draining")]
            users = s.scalar(select(func.count()).select_from(User)) or 0
            allocated = s.scalar(select(func.coalesce(func.sum(User.storage_allocated), 0))) or 0
            used = s.scalar(select(func.coalesce(func.sum(User.storage_used), 0))) or 0
            files = s.scalar(select(func.count()).select_from(File).where(
                File.deleted_at.is_(None))) or 0
            chunks = s.scalar(select(func.count()).select_from(Chunk)) or 0
            short, referenced = count_short(s, nodes, self.replication_factor)
            garbage = max(0, int(chunks) - referenced)
            sessions = active_sessions(s)
            paid_rate = payment_success_rate(s, utcnow() - dt.timedelta(
                seconds=self.payment_window_s))
        speeds = self.traffic.speeds(self.speed_window_s) if self.traffic is not None else None
        capacity = sum(n.capacity_bytes for n in online)
        node_used = sum(n.used_bytes for n in online)
        node_logical = sum(logical_size(n) for n in online)
        node_part = len(online) / len(active) if active else 0.0
        # Missing copies, not short chunks: 2 of 3 copies is not a lost chunk.
        wanted = referenced * self.replication_factor
        chunk_part = 1.0 - short.missing_copies / wanted if wanted else 1.0
        health = round(100.0 * node_part * chunk_part, 1) if active else 0.0
        return pb.SystemStatusResponse(
            success=True, global_capacity_bytes=capacity, global_allocated_bytes=int(allocated),
            global_used_bytes=int(used), total_users=int(users), total_nodes=len(active),
            online_nodes=len(online), total_files=int(files), total_chunks=int(chunks),
            system_health=health, under_replicated_chunks=short.short,
            replication_factor=self.replication_factor, node_used_bytes=node_used,
            security_warnings=self.security_warnings, chunks_short_no_room=short.no_room,
            chunks_short_too_few_nodes=short.too_few_nodes, garbage_chunks=garbage,
            upload_bytes_per_s=speeds.upload_bytes_per_s if speeds else 0.0,
            download_bytes_per_s=speeds.download_bytes_per_s if speeds else 0.0,
            speed_window_s=round(speeds.window_s) if speeds else 0,
            active_sessions=sessions, payment_success_rate=paid_rate,
            payment_window_s=int(self.payment_window_s),
            stored_bytes=node_used, logical_bytes=node_logical)

    # --- users ------------------------------------------------------------------------

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
    def GetUserDetails(self, request: pb.GetUserDetailsRequest,
                       context: grpc.ServicerContext) -> pb.GetUserDetailsResponse:
        self._guard(request.admin_key, context)
        with self.db.read() as s:
            u = _user_by_email(s, request.email)
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
            payments = s.execute(
                select(Payment, StorageTier.name)
                .outerjoin(StorageTier, StorageTier.id == Payment.tier_id)
                .where(Payment.user_id == u.id)
                .order_by(Payment.created_at.desc()).limit(USER_PAYMENTS)).all()
            return pb.GetUserDetailsResponse(
                success=True, user=user_info(u, int(files)), active_sessions=int(sessions),
                payments=[_payment_record(p, tier or "") for p, tier in payments],
                trash_bytes=int(trash), folder_count=int(folders))

    @rpc
    def SetUserQuota(self, request: pb.SetUserQuotaRequest, context: grpc.ServicerContext
                     ) -> pb.SetUserQuotaResponse:
        self._guard(request.admin_key, context)
        if request.storage_bytes < 0:
            raise InvalidArgument("a quota cannot be negative")
        with self.db.write() as s:
            u = _user_by_email(s, request.email)
            before = u.storage_allocated
            u.storage_allocated = request.storage_bytes
            uid, email, used = u.id, u.email, u.storage_used
        self.events.emit("quota_changed", f"quota of {email} set to "
                         f"{request.storage_bytes} bytes", uid,
                         storage_bytes=request.storage_bytes, previous_bytes=before)
        message = "quota updated"
        if request.storage_bytes < used:
            message += f" (below the {used} bytes in use: new uploads are refused)"
        return pb.SetUserQuotaResponse(success=True, message=message,
                                       storage_allocated=request.storage_bytes)

    # --- tiers and payments -----------------------------------------------------------

    @rpc
    def UpsertTier(self, request: pb.UpsertTierRequest, context: grpc.ServicerContext
                   ) -> pb.UpsertTierResponse:
        """Create or update the tier of that name.

        Text and numbers left empty or zero keep the stored value on an update; ``active``
        is always applied (send ``active=false`` to retire a tier from sale).
        """
        self._guard(request.admin_key, context)
        t = request.tier
        name = t.name.strip()
        if not name or len(name) > 50:
            raise InvalidArgument("a tier needs a name of at most 50 characters")
        if t.storage_bytes < 0 or t.price_xaf < 0:
            raise InvalidArgument("a tier's storage and price cannot be negative")
        with self.db.write() as s:
            tier = s.scalars(select(StorageTier).where(
                func.lower(StorageTier.name) == name.lower()).with_for_update()).first()
            created = tier is None
            if tier is None:
                if t.storage_bytes <= 0 or t.price_xaf <= 0:
                    raise InvalidArgument("a new tier needs a storage size and a price")
                order = s.scalar(select(func.coalesce(func.max(StorageTier.sort_order), 0)))
                tier = StorageTier(name=name, display_name=t.display_name or name.title(),
                                   storage_bytes=t.storage_bytes, price_xaf=t.price_xaf,
                                   description=t.description, active=t.active,
                                   sort_order=int(order or 0) + 1)
                s.add(tier)
            else:
                tier.display_name = t.display_name or tier.display_name
                tier.storage_bytes = t.storage_bytes or tier.storage_bytes
                tier.price_xaf = t.price_xaf or tier.price_xaf
                tier.description = t.description or tier.description
                tier.active = t.active
            s.flush()
            name = tier.name
            out = pb.StorageTier(tier_id=tier.id, name=tier.name, display_name=tier.display_name,
                                 storage_bytes=tier.storage_bytes, price_xaf=tier.price_xaf,
                                 description=tier.description, active=tier.active)
        self.events.emit("tier_changed", f"tier {name} {'created' if created else 'updated'}: "
                         f"{out.storage_bytes} bytes for {out.price_xaf} XAF"
                         + ("" if out.active else " (inactive)"), None, tier=name,
                         storage_bytes=out.storage_bytes, price_xaf=out.price_xaf,
                         active=out.active, created=created)
        return pb.UpsertTierResponse(success=True, message="tier created" if created
                                     else "tier updated", tier=out)

    @rpc
    def GetPaymentAnalytics(self, request: pb.PaymentAnalyticsRequest,
                            context: grpc.ServicerContext) -> pb.PaymentAnalyticsResponse:
        self._guard(request.admin_key, context)
        if request.since < 0 or request.until < 0:
            raise InvalidArgument("since and until are unix seconds")
        if request.since and request.until and request.until < request.since:
            raise InvalidArgument("until is before since")
        query = (select(func.coalesce(StorageTier.name, Payment.tier_id), Payment.provider,
                        Payment.status, func.count(),
                        func.coalesce(func.sum(Payment.amount_xaf), 0),
                        func.coalesce(func.sum(Payment.storage_bytes), 0))
                 .outerjoin(StorageTier, StorageTier.id == Payment.tier_id)
                 .group_by(func.coalesce(StorageTier.name, Payment.tier_id), Payment.provider,
                           Payment.status))
        if request.since:
            query = query.where(Payment.created_at >= _naive_utc(request.since))
        if request.until:
            query = query.where(Payment.created_at < _naive_utc(request.until))
        with self.db.read() as s:
            rows = s.execute(query).all()
        total = _Tally("")
        by_tier: dict[str, _Tally] = {}
        by_provider: dict[str, _Tally] = {}
        for tier, provider, status, count, amount, storage in rows:
            for tally in (total, by_tier.setdefault(tier, _Tally(tier)),
                          by_provider.setdefault(provider, _Tally(provider))):
                tally.add(status, int(count), int(amount), int(storage))
        return pb.PaymentAnalyticsResponse(
            success=True, total_payments=total.count, completed=total.completed,
            failed=total.failed, pending=total.pending, revenue_xaf=total.revenue,
            success_rate=total.success_rate,
            by_tier=[t.message() for t in _ranked(by_tier)],
            by_provider=[t.message() for t in _ranked(by_provider)])

    # --- nodes ------------------------------------------------------------------------

    @rpc
    def ListNodes(self, request: pb.ListNodesRequest, context: grpc.ServicerContext
                  ) -> pb.ListNodesResponse:
        self._guard(request.admin_key, context)
        settle_drained_nodes(self.db, self.events)
        now = utcnow()
        with self.db.read() as s:
            nodes = list(s.scalars(select(StorageNode).order_by(StorageNode.name)))
            out = [node_info(n, node_health(n, now, self.node_timeout_s)) for n in nodes]
        return pb.ListNodesResponse(success=True, nodes=out)

    @rpc
    def DrainNode(self, request: pb.DrainNodeRequest, context: grpc.ServicerContext
                  ) -> pb.DrainNodeResponse:
        """Stop placing new chunks on a node; it is "drained" once it holds no replicas.

        Moving its replicas elsewhere is the repair loop's work; this only changes the
        status (placement uses "online" nodes only) and says so in an event.
        """
        self._guard(request.admin_key, context)
        name = request.node_name.strip()
        if not name:
            raise InvalidArgument("name the node to drain")
        with self.db.write() as s:
            node = s.scalars(select(StorageNode).where(StorageNode.name == name)
                             .with_for_update()).first()
            if node is None:
                raise NotFound(f"no node named {name}")
            before = node.status
            replicas = s.scalar(select(func.count()).select_from(Replica).where(
                Replica.node_id == node.id)) or 0
            if before == "drained":
                return pb.DrainNodeResponse(success=True, message=f"node {name} is drained")
            if replicas == 0:
                node.status = "drained"
            elif before in ("offline", "drain-offline"):
                node.status = "drain-offline"  # stays leaving, even while it is away
            else:
                node.status = "draining"
            status, node_id = node.status, node.id
        if self.registry is not None:
            self.registry.invalidate()  # placement here stops using it at once
        if before not in ("draining", "drain-offline"):
            self.events.emit("node_draining", f"node {name} draining: no new chunks go to it",
                             None, node=name, node_id=node_id, replicas=int(replicas),
                             previous_status=before)
        if status == "drained":
            self.events.emit("node_drained", f"node {name} drained: it holds no chunks",
                             None, node=name, node_id=node_id)
            return pb.DrainNodeResponse(success=True, message=f"node {name} drained "
                                        "(it holds no chunks)")
        return pb.DrainNodeResponse(success=True, message=f"node {name} draining: "
                                    f"{replicas} replicas to move")

    # --- fsck -------------------------------------------------------------------------

    @rpc
    def Fsck(self, request: pb.FsckRequest, context: grpc.ServicerContext
             ) -> Iterator[pb.FsckMessage]:
        """Metadata checked against the nodes (server/fsck.py); findings stream as found,
        then one summary. One at a time per gateway; bounded by FSCK_MAX_S."""
        self._guard(request.admin_key, context)
        if self.fsck is None:
            raise NotImplementedYet("this gateway was built without fsck")
        log.info("fsck started by %s (repair=%s, presence_only=%s)", context.peer(),
                 request.repair, request.presence_only)
        yield from self.fsck.run(request.repair, not request.presence_only, context.is_active)

    # --- events -----------------------------------------------------------------------

    @rpc
    def StreamSystemEvents(self, request: pb.StreamEventsRequest,
                           context: grpc.ServicerContext) -> Iterator[pb.SystemEvent]:
        self._guard(request.admin_key, context)
        types = {t for t in request.event_types if t} or None
        history = DEFAULT_HISTORY if request.history == 0 else min(
            max(0, request.history), MAX_HISTORY)
        if history:
            # Events already emitted may still wait in the writer's batch: store them
            # before subscribing, so "the last N" means the last N emitted and the older
            # ones of that batch are not published to this stream as if they were new.
            self.events.flush(timeout=2.0)
        # Subscribe before reading the history: an event stored in between is then either
        # in the history or in the subscription (both, at worst: skipped by id below).
        sub = self.events.subscribe(types)
        try:
            replayed: set[int] = set()
            for record in self.events.recent(history, types) if history else []:
                replayed.add(record.event_id)
                yield _event(record)
            while context.is_active() and not self.events.closing.is_set():
                record = sub.get(timeout=0.5)
                if record is None:
                    continue
                if record.event_id and record.event_id in replayed:
                    replayed.discard(record.event_id)
                    continue
                yield _event(record)
        finally:
            sub.close()

    # --- backup -----------------------------------------------------------------------

    @rpc
    def BackupMetadata(self, request: pb.BackupRequest, context: grpc.ServicerContext
                       ) -> Iterator[pb.BackupPiece]:
        """A consistent snapshot of the metadata and the cluster's keys, in pieces; the
        last piece carries the file's size and SHA-256 for the client to check.

        The stream holds one read transaction open while it lasts; the edge cancels it
        when the client stops reading (STREAM_IDLE_S), and one backup runs at a time.
        """
        self._guard(request.admin_key, context)
        if self.backup is None:
            raise NotImplementedYet("this gateway was started without metadata backups")
        with self.backup.take() as snapshot:
            first = True
            for data in snapshot.pieces():
                yield pb.BackupPiece(data=data, format=FORMAT_LABEL if first else "")
                first = False
            done = snapshot.summary
            assert done is not None
        self.events.emit("metadata_backup", f"metadata backup taken: {done.rows} rows in "
                         f"{done.tables} tables, {done.size} bytes (schema {done.revision})",
                         None, rows=done.rows, tables=done.tables, bytes=done.size,
                         sha256=done.sha256, revision=done.revision, peer=context.peer())
        yield pb.BackupPiece(total_bytes=done.size, sha256=done.sha256, tables=done.tables,
                             rows=done.rows, revision=done.revision,
                             created_at=done.created_at)


# --- helpers ----------------------------------------------------------------------------


def node_health(n: StorageNode, now: dt.datetime, timeout_s: float) -> float:
    """0-100: zero when offline or drained; else free space and heartbeat freshness."""
    if n.status in ("offline", "drained"):
        return 0.0
    free = 1.0 - (n.used_bytes / n.capacity_bytes if n.capacity_bytes else 1.0)
    score = 0.5 + 0.5 * max(0.0, min(1.0, free))
    if n.last_heartbeat is not None and timeout_s > 0:
        age = max(0.0, (now - n.last_heartbeat).total_seconds())
        if age > timeout_s / 2:  # late heartbeats: on its way to being marked offline
            score *= max(0.25, 1.0 - (age - timeout_s / 2) / timeout_s)
    if n.status == "draining":
        score *= 0.5
    return round(100.0 * score, 1)


def settle_drained_nodes(db: Database, events: EventBus) -> list[str]:
    """Mark draining nodes that hold no replicas any more as "drained" (with an event).

    Called on the admin reads; the repair loop that moves a draining node's chunks may call
    it too once it has emptied a node.
    """
    with db.read() as s:
        candidates = list(s.scalars(select(StorageNode.id).where(
            StorageNode.status.in_(("draining", "drain-offline")),
            ~select(Replica.node_id).where(Replica.node_id == StorageNode.id).exists())))
    if not candidates:
        return []
    done: list[tuple[str, str]] = []
    with db.write() as s:
        for node in s.scalars(select(StorageNode).where(StorageNode.id.in_(candidates))
                              .with_for_update()):
            holds = s.scalar(select(func.count()).select_from(Replica).where(
                Replica.node_id == node.id)) or 0
            if node.status in ("draining", "drain-offline") and not holds:
                node.status = "drained"
                done.append((node.id, node.name))
    for node_id, name in done:
        events.emit("node_drained", f"node {name} drained: it holds no chunks", None,
                    node=name, node_id=node_id)
    return [name for _, name in done]


def payment_success_rate(s: object, since: dt.datetime) -> float:
    """Completed / (completed + failed) in percent, of the payments started since ``since``;
    -1 ("n/a") when none of them has settled. Pending ones do not count either way."""
    settled = (select(Payment.status, func.count())
               .where(Payment.created_at >= since,
                      Payment.status.in_(("completed", "failed")))
               .group_by(Payment.status))
    rows = dict(s.execute(settled).all())  # type: ignore[attr-defined]
    completed, failed = int(rows.get("completed", 0)), int(rows.get("failed", 0))
    if not completed + failed:
        return -1.0
    return round(100.0 * completed / (completed + failed), 2)


def _user_by_email(s: object, email: str) -> User:
    wanted = email.strip().lower()
    if not wanted:
        raise InvalidArgument("give the user's email")
    u = s.scalars(select(User).where(User.email == wanted)).first()  # type: ignore[attr-defined]
    if u is None:
        raise NotFound(f"no user with email {email}")
    return u


def _naive_utc(unix_s: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(unix_s, dt.UTC).replace(tzinfo=None)


class _Tally:
    def __init__(self, key: str) -> None:
        self.key = key
        self.count = self.completed = self.failed = self.pending = 0
        self.revenue = self.storage = 0

    def add(self, status: str, count: int, amount: int, storage: int) -> None:
        self.count += count
        if status == "completed":
            self.completed += count
            self.revenue += amount
            self.storage += storage
        elif status == "failed":
            self.failed += count
        else:  # pending, processing
            self.pending += count

    @property
    def success_rate(self) -> float:
        settled = self.completed + self.failed
        return round(100.0 * self.completed / settled, 2) if settled else 0.0

    def message(self) -> pb.PaymentBreakdown:
        return pb.PaymentBreakdown(key=self.key, count=self.count, completed=self.completed,
                                   failed=self.failed, pending=self.pending,
                                   revenue_xaf=self.revenue, success_rate=self.success_rate,
                                   storage_sold_bytes=self.storage)


def _ranked(tallies: dict[str, _Tally]) -> list[_Tally]:
    return sorted(tallies.values(), key=lambda t: (-t.revenue, -t.count, t.key))


def _payment_record(p: Payment, tier_name: str) -> pb.PaymentRecord:
    return pb.PaymentRecord(
        payment_id=p.id, tier_id=p.tier_id, tier_name=tier_name, provider=p.provider,
        phone_number=p.phone_number, amount_xaf=p.amount_xaf, status=p.status,
        transaction_ref=p.transaction_ref or "", storage_bytes=p.storage_bytes,
        created_at=iso(p.created_at), completed_at=iso(p.completed_at),
        operator=p.operator or "")


def _event(record: EventRecord) -> pb.SystemEvent:
    return pb.SystemEvent(event_type=record.event_type, timestamp=iso(record.timestamp),
                          message=record.message, user_id=record.user_id,
                          details=record.details, event_id=record.event_id)
