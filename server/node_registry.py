"""The gateway's view of storage nodes: registration, heartbeats and liveness.

Nodes join only with the cluster secret, and a node name belongs to the node that first
registered it: the gateway issues it a key then (keeping only its hash) and every later
registration, heartbeat and deregistration must present it. A node silent for
``NODE_TIMEOUT_S`` is marked offline (and an event says so); its next heartbeat brings it
back. Placement reads a snapshot of the online nodes that is refreshed at most once a second,
so the hot path does not query the database for every chunk.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

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
NAME_MAX = 100  # storage_nodes.name
HOST_MAX = 255  # storage_nodes.host
MAX_CORRUPT_REPORTS = 10_000  # corrupt chunks one heartbeat may report; more are ignored


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
        # Called with a node id and the chunks it reported corrupt (that it holds replicas
        # of); the default keeps every row: nothing is forgotten unconfirmed.
        self.on_corrupt_report: Callable[[str, list[str]], None] = lambda node_id, shas: None

    # --- calls from nodes -----------------------------------------------------------

    def _check_secret(self, given: str) -> None:
        """The cluster secret, always; only the explicit insecure opt-in (and no secret at
        all) lets a caller without it in."""
        if not self.settings.cluster_secret and self.settings.insecure_open_cluster:
            return
        if not security.same_secret(given, self.settings.cluster_secret):
            raise PermissionDenied("wrong cluster secret")

    @staticmethod
    def _key_matches(node: StorageNode, given: str) -> bool:
        return node.key_hash is not None and security.same_secret(
            security.token_hash(given), node.key_hash)

    def register(self, name: str, host: str, port: int, capacity: int, used: int,
                 chunk_count: int, cpu_cores: int, secret: str, node_key: str = ""
                 ) -> tuple[str, str]:
        """Record a node; returns its id and, at a name's first registration, its new key.

        A name already known with a key is taken only by a caller presenting that key
        (from any address: a node may move). A name known without a key (registered before
        node keys existed) gets one now: trust on first use.
        """
        self._check_secret(secret)
        if not name or not host or port <= 0 or capacity <= 0:
            raise InvalidArgument("a node needs a name, host, port and a positive capacity")
        if len(name) > NAME_MAX or len(host) > HOST_MAX:
            raise InvalidArgument(f"node name at most {NAME_MAX} and host at most {HOST_MAX} "
                                  "characters")
        now = utcnow()
        issued = ""
        refused = False
        with self.db.write() as s:
            node = s.scalars(select(StorageNode).where(StorageNode.name == name)
                             .with_for_update()).first()
            was = node.status if node else None
            if node is not None and node.key_hash is not None and not self._key_matches(
                    node, node_key):
                refused = True
            else:
                if node is None:
                    node = StorageNode(name=name, registered_at=now)
                    s.add(node)
                elif node.key_hash is None:
                    log.warning("node %s had no key (registered before node keys): issuing "
                                "one now (trust on first use)", name)
                if node.key_hash is None:
                    issued = security.new_token()
                    node.key_hash = security.token_hash(issued)
                node.host, node.port = host, port
                node.capacity_bytes, node.used_bytes = capacity, used
                node.chunk_count = chunk_count
                node.cpu_cores = cpu_cores or 1
                node.last_heartbeat = now
                node.offline_since = None
                if node.status == DRAIN_OFFLINE:
                    node.status = "draining"
                elif node.status not in ("draining", "drained"):
                    node.status = "online"
                s.flush()
            node_id = node.id if node is not None else ""
        if refused:
            log.warning("registration as node %s from %s:%d refused: wrong node key",
                        name, host, port)
            self.events.emit("node_refused", f"registration as node {name} from {host}:{port} "
                             "refused: wrong node key", None, node=name, address=f"{host}:{port}")
            raise PermissionDenied(f"node {name} is registered with another node key: only "
                                   "that node may register under this name")
        self.on_node_up(f"{host}:{port}")  # a (re)started node: any old channel is stale
        self.invalidate()
        if was != "online":
            self.events.emit("node_up", f"node {name} online at {host}:{port}", None,
                             node=name, node_id=node_id, capacity_bytes=capacity)
        return node_id, issued

    def _known_node(self, s: Session, node_id: str, node_key: str) -> StorageNode:
        """The node the caller proves to be, or NotFound (register again) / PermissionDenied."""
        node = s.get(StorageNode, node_id) if node_id else None
        if node is None:
            raise NotFound("unknown node: register again")
        if node.key_hash is None:
            raise NotFound("this node has no node key yet: register again")
        if not self._key_matches(node, node_key):
            raise PermissionDenied("wrong node key")
        return node

    def heartbeat(self, node_id: str, used: int, chunk_count: int, capacity: int,
                  secret: str, corrupt: Sequence[str] = (), node_key: str = "",
                  logical: int = 0) -> None:
        """Liveness and usage from a node that proves its key.

        ``used`` is what the node's disk holds (capacity and placement go by it);
        ``logical`` the same chunks before compression, for the admin's view of the
        saving. A node that does not report it (an older version) compresses nothing, so
        its logical size is its used size.

        Chunks it reports corrupt are not forgotten here: they go to ``on_corrupt_report``,
        which confirms each one on the node before its replica row goes (a report alone
        must never make the system drop a good copy).
        """
        self._check_secret(secret)
        came_back = False
        reported: list[str] = []
        with self.db.write() as s:
            node = self._known_node(s, node_id, node_key)
            if corrupt:
                wanted = [sha for sha in dict.fromkeys(corrupt) if len(sha) == 64][
                    :MAX_CORRUPT_REPORTS]
                reported = list(s.scalars(select(Replica.chunk_sha256).where(
                    Replica.node_id == node_id, Replica.chunk_sha256.in_(wanted))))
            node.last_heartbeat = utcnow()
            node.used_bytes, node.chunk_count = used, chunk_count
            node.logical_bytes = logical if logical > 0 else used
            if capacity > 0:
                node.capacity_bytes = capacity
            if node.status in ("offline", DRAIN_OFFLINE):
                node.status = "online" if node.status == "offline" else "draining"
                node.offline_since = None
                came_back = True
            name, address = node.name, node.address
        if reported:
            log.warning("node %s reports %d chunk(s) corrupt: confirming before any replica "
                        "is forgotten", name, len(reported))
            self.on_corrupt_report(node_id, reported)
        if came_back:
            self.on_node_up(address)
            self.invalidate()
            self.events.emit("node_up", f"node {name} back online at {address}", None,
                             node=name, node_id=node_id)

    def deregister(self, node_id: str, secret: str, node_key: str = "") -> None:
        self._check_secret(secret)
        with self.db.write() as s:
            node = s.get(StorageNode, node_id) if node_id else None
            if node is None:
                raise NotFound("unknown node")
            if node.key_hash is not None and not self._key_matches(node, node_key):
                raise PermissionDenied("wrong node key")
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
            # Locked: with several gateways on one database, the row each one marks is
            # re-read after the other's commit and skipped, so one node_down event each.
            for node in s.scalars(select(StorageNode).where(
                    StorageNode.status.in_(ACTIVE_STATES)).with_for_update()):
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
