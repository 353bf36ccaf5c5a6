"""The gateway's view of storage nodes: registration, heartbeats and liveness.

Nodes join only with the cluster secret. A node silent for ``NODE_TIMEOUT_S`` is marked
offline (and an event says so); its next heartbeat brings it back. Placement reads a
snapshot of the online nodes that is refreshed at most once a second, so the hot path
does not query the database for every chunk.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence

from sqlalchemy import delete, select

from cloudgrpc_proto.errors import InvalidArgument, NotFound, PermissionDenied

from . import security
from .config import Settings
from .db import Database
from .events import EventBus
from .models import Replica, StorageNode, utcnow
from .placement import NodeView

log = logging.getLogger(__name__)

ACTIVE_STATES = ("online", "draining")
# A draining node that stops answering keeps its intent: it is "drain-offline", and comes
# back as "draining", never as a plain "online" node that would take new chunks again.
DRAIN_OFFLINE = "drain-offline"


class NodeRegistry:
    def __init__(self, settings: Settings, db: Database, events: EventBus) -> None:
        self.settings = settings
        self.db = db
        self.events = events
        self._lock = threading.Lock()
        self._snapshot: list[NodeView] = []
        self._all: dict[str, NodeView] = {}
        self._snapshot_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        # Called with a node's address when it comes (back) online.
        self.on_node_up: Callable[[str], None] = lambda address: None

    # --- calls from nodes -----------------------------------------------------------

    def _check_secret(self, given: str) -> None:
        if self.settings.cluster_secret and not security.same_secret(
                given, self.settings.cluster_secret):
            raise PermissionDenied("wrong cluster secret")

    def register(self, name: str, host: str, port: int, capacity: int, used: int,
                 chunk_count: int, cpu_cores: int, secret: str) -> str:
        self._check_secret(secret)
        if not name or not host or port <= 0 or capacity <= 0:
            raise InvalidArgument("a node needs a name, host, port and a positive capacity")
        now = utcnow()
        with self.db.write() as s:
            node = s.scalars(select(StorageNode).where(StorageNode.name == name)).first()
            was = node.status if node else None
            if node is None:
                node = StorageNode(name=name, registered_at=now)
                s.add(node)
            node.host, node.port = host, port
            node.capacity_bytes, node.used_bytes, node.chunk_count = capacity, used, chunk_count
            node.cpu_cores = cpu_cores or 1
            node.last_heartbeat = now
            node.offline_since = None
            if node.status == DRAIN_OFFLINE:
                node.status = "draining"
            elif node.status not in ("draining", "drained"):
                node.status = "online"
            s.flush()
            node_id = node.id
        self.on_node_up(f"{host}:{port}")  # a (re)started node: any old channel is stale
        self.invalidate()
        if was != "online":
            self.events.emit("node_up", f"node {name} online at {host}:{port}", None,
                             node=name, node_id=node_id, capacity_bytes=capacity)
        return node_id

    def heartbeat(self, node_id: str, used: int, chunk_count: int, capacity: int,
                  secret: str, corrupt: Sequence[str] = ()) -> None:
        self._check_secret(secret)
        came_back = False
        with self.db.write() as s:
            if corrupt:
                # The node's scrubber quarantined these: that replica is gone, and repair
                # will copy a good one back.
                s.execute(delete(Replica).where(Replica.node_id == node_id,
                                                Replica.chunk_sha256.in_(list(corrupt))))
            node = s.get(StorageNode, node_id)
            if node is None:
                raise NotFound("unknown node: register again")
            node.last_heartbeat = utcnow()
            node.used_bytes, node.chunk_count = used, chunk_count
            if capacity > 0:
                node.capacity_bytes = capacity
            if node.status in ("offline", DRAIN_OFFLINE):
                node.status = "online" if node.status == "offline" else "draining"
                node.offline_since = None
                came_back = True
            name, address = node.name, node.address
        for sha in corrupt:
            self.events.emit("replica_corrupt", f"node {name} found chunk {sha[:12]} corrupt "
                             "and quarantined it", None, node=name, chunk=sha)
        if came_back:
            self.on_node_up(address)
            self.invalidate()
            self.events.emit("node_up", f"node {name} back online at {address}", None,
                             node=name, node_id=node_id)

    def deregister(self, node_id: str, secret: str) -> None:
        self._check_secret(secret)
        with self.db.write() as s:
            node = s.get(StorageNode, node_id)
            if node is None:
                raise NotFound("unknown node")
            if node.status in ACTIVE_STATES:
                node.status = "offline" if node.status == "online" else DRAIN_OFFLINE
                node.offline_since = utcnow()
            name = node.name
        self.invalidate()
        self.events.emit("node_down", f"node {name} shut down", None, node=name,
                         node_id=node_id, reason="deregistered")

    # --- liveness -------------------------------------------------------------------

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._watch, name="node-liveness", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        period = max(0.2, min(self.settings.node_timeout_s / 4, 5.0))
        while not self._stop.wait(period):
            try:
                self.mark_silent_nodes()
            except Exception:  # noqa: BLE001 - keep watching whatever one round hit
                log.exception("node liveness check failed")

    def mark_silent_nodes(self) -> None:
        # Right after a start, silence only means this gateway was down: give every node
        # one timeout to be heard from before calling it offline.
        if time.monotonic() - self._started < self.settings.node_timeout_s:
            return
        now = utcnow()
        limit = now - dt.timedelta(seconds=self.settings.node_timeout_s)
        gone: list[tuple[str, str]] = []
        with self.db.write() as s:
            for node in s.scalars(select(StorageNode).where(
                    StorageNode.status.in_(ACTIVE_STATES))):
                if node.last_heartbeat is None or node.last_heartbeat < limit:
                    node.status = "offline" if node.status == "online" else DRAIN_OFFLINE
                    node.offline_since = now
                    gone.append((node.id, node.name))
        if gone:
            self.invalidate()
        for node_id, name in gone:
            self.events.emit("node_down", f"node {name} missed heartbeats: offline", None,
                             node=name, node_id=node_id, reason="heartbeat timeout")

    # --- views for placement and reads ------------------------------------------------

    def invalidate(self) -> None:
        with self._lock:
            self._snapshot_at = 0.0

    def _refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._snapshot_at < 1.0:
                return
        with self.db.read() as s:
            nodes = list(s.scalars(select(StorageNode)))
        online = [NodeView(n.id, n.name, n.address, max(0, n.capacity_bytes - n.used_bytes))
                  for n in nodes if n.status == "online"]
        every = {n.id: NodeView(n.id, n.name, n.address, max(0, n.capacity_bytes - n.used_bytes))
                 for n in nodes}
        with self._lock:
            self._snapshot = online
            self._all = every
            self._snapshot_at = time.monotonic()

    def writable_nodes(self) -> list[NodeView]:
        """Online nodes that accept new chunks (not draining)."""
        self._refresh()
        with self._lock:
            return list(self._snapshot)

    def node(self, node_id: str) -> NodeView | None:
        self._refresh()
        with self._lock:
            return self._all.get(node_id)

    def is_online(self, node_id: str) -> bool:
        self._refresh()
        with self._lock:
            return any(n.node_id == node_id for n in self._snapshot)

    def registered_count(self) -> int:
        self._refresh()
        with self._lock:
            return len(self._all)

    def note_used(self, node_id: str, delta: int) -> None:
        """Account bytes just written so placement sees them before the next heartbeat."""
        with self._lock:
            self._snapshot = [
                NodeView(n.node_id, n.name, n.address, n.free_bytes - delta)
                if n.node_id == node_id else n for n in self._snapshot
            ]
