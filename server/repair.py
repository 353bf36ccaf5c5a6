"""Self-healing replication: copy lost replicas back, trim extra ones, drain nodes.

Each pass compares, for every chunk a file uses, where its replicas are with where they
should be:

- a replica on a node offline for less than ``REPAIR_GRACE_S`` still counts (a restart
  or a short network cut should not trigger a storm of copies);
- past that, or on a node being drained, it no longer counts, and a healthy node is asked
  to copy the chunk from a good replica (node to node, the gateway moves no bytes);
- when a node comes back and a chunk has more online replicas than it needs, the extra
  ones are deleted;
- a draining node whose every chunk is fully replicated elsewhere becomes "drained".

Copies run a few at a time under a byte-rate cap, so user traffic keeps flowing.

``CorruptionReports`` handles the chunks nodes report corrupt: each is confirmed on the
node before its replica row goes, so no report alone drops a good copy.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import datetime as dt
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from sqlalchemy import delete, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite

from .config import Settings
from .db import Database
from .events import EventBus
from .models import Chunk, FileChunk, Replica, StorageNode, utcnow
from .node_pool import NodePool
from .node_registry import DRAIN_OFFLINE, NodeRegistry
from .placement import NodeView, rank
from .shortfall import PENDING, ShortfallNotice, Tally, reason

log = logging.getLogger(__name__)

# While the chunks repair cannot place stay the same, their event repeats this rarely.
SHORTFALL_EVENT_REPEAT_S = 3600.0


@dataclass
class RepairReport:
    copied: int = 0
    copied_bytes: int = 0
    trimmed: int = 0
    failed: int = 0
    under_replicated: int = 0
    short: Tally = field(default_factory=Tally)  # short of REPLICATION_FACTOR, by cause
    drained: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Node:
    node_id: str
    name: str
    address: str
    status: str
    offline_since: dt.datetime | None
    free: int


class Repairer:
    def __init__(self, settings: Settings, db: Database, registry: NodeRegistry,
                 pool: NodePool, events: EventBus) -> None:
        self.settings = settings
        self.db = db
        self.registry = registry
        self.pool = pool
        self.events = events
        self._notice = ShortfallNotice(SHORTFALL_EVENT_REPEAT_S)

    def _nodes(self) -> dict[str, _Node]:
        with self.db.read() as s:
            return {n.id: _Node(n.id, n.name, n.address, n.status, n.offline_since,
                                max(0, n.capacity_bytes - n.used_bytes))
                    for n in s.scalars(select(StorageNode))}

    def _replica_map(self) -> tuple[dict[str, list[str]], dict[str, int]]:
        used = exists().where(FileChunk.chunk_sha256 == Chunk.sha256)
        where: dict[str, list[str]] = {}
        sizes: dict[str, int] = {}
        with self.db.read() as s:
            for sha, size in s.execute(select(Chunk.sha256, Chunk.size).where(used)):
                where[sha] = []
                sizes[sha] = size
            for sha, node_id in s.execute(select(Replica.chunk_sha256, Replica.node_id)):
                if sha in where:
                    where[sha].append(node_id)
        return where, sizes

    def run_once(self) -> RepairReport:
        report = RepairReport()
        nodes = self._nodes()
        now = utcnow()
        grace = dt.timedelta(seconds=self.settings.repair_grace_s)
        members = [n for n in nodes.values() if n.status != "drained"]
        eligible = [n for n in members if n.status not in ("draining", DRAIN_OFFLINE)]
        target = max(1, min(self.settings.replication_factor, len(eligible) or 1))
        writable = [NodeView(n.node_id, n.name, n.address, n.free)
                    for n in nodes.values() if n.status == "online"]
        where, sizes = self._replica_map()
        copies: list[tuple[str, int, NodeView, _Node]] = []
        trims: list[tuple[str, _Node]] = []
        for sha, holders in where.items():
            online = [nodes[h] for h in holders if h in nodes and nodes[h].status == "online"]
            waiting = [nodes[h] for h in holders if h in nodes and nodes[h].status == "offline"
                       and nodes[h].offline_since is not None
                       and now - nodes[h].offline_since < grace]
            draining = [nodes[h] for h in holders if h in nodes
                        and nodes[h].status == "draining"]
            sources = online + draining
            have = len(online) + len(waiting)
            cause = reason(have, [w.free_bytes for w in writable if w.node_id not in holders],
                           sizes[sha], self.settings.replication_factor)
            if cause is not None and cause != PENDING:
                report.short.add(cause, self.settings.replication_factor - have)
            if have < target:
                report.under_replicated += 1
                if not sources:
                    continue  # nothing readable right now; a returning node may bring it
                picks = [n for n in rank(sha, writable, sizes[sha]) if n.node_id not in holders]
                for dest in picks[: target - have]:
                    copies.append((sha, sizes[sha], dest, sources[len(copies) % len(sources)]))
            elif len(online) > target and not waiting:
                order = {n.node_id: i for i, n in enumerate(rank(sha, [
                    NodeView(o.node_id, o.name, o.address, max(o.free, 1)) for o in online]))}
                for extra in sorted(online, key=lambda o: order.get(o.node_id, 0))[target:]:
                    trims.append((sha, extra))
        self._copy(copies, report)
        self._trim(trims, report)
        self._finish_drains(nodes, target, report)
        if report.copied or report.trimmed or report.failed or report.drained:
            self.events.emit(
                "repair", f"repair pass: {report.copied} chunks copied "
                f"({report.copied_bytes} bytes), {report.trimmed} extra replicas trimmed, "
                f"{report.failed} failed", None, copied=report.copied,
                bytes=report.copied_bytes, trimmed=report.trimmed, failed=report.failed,
                under_replicated=report.under_replicated)
        self._tell_shortfall(report.short, len(writable))
        if report.copied or report.trimmed:
            self.registry.invalidate()
        return report

    def _tell_shortfall(self, short: Tally, online_nodes: int) -> None:
        """One event when chunks repair cannot place change (or clear), never per chunk."""
        if not self._notice.due(short, time.monotonic()):
            return
        factor = self.settings.replication_factor
        if short.unplaceable:
            message = (f"repair cannot place copies of {short.unplaceable} chunks "
                       f"(short of {factor} copies): {short.describe(factor, online_nodes)}")
        else:
            message = f"repair: every chunk can be placed on {factor} nodes again"
        self.events.emit("under_replicated", message, None, chunks=short.unplaceable,
                         no_room=short.no_room, too_few_nodes=short.too_few_nodes,
                         online_nodes=online_nodes, replication_factor=factor)
        if short.unplaceable:
            log.warning("%s", message)

    def copy_now(self, wanted: list[tuple[str, int, str, str]]) -> dict[tuple[str, str], str]:
        """Copy chunks at once, each ``(sha256, size, destination node id, source node
        id)``, through the same throttled path as a repair pass (node to node, relayed by
        the gateway when the nodes cannot reach each other), without waiting for
        ``REPAIR_GRACE_S``: fsck --repair uses it. Returns, per ``(sha256, destination)``,
        "" once the copy is made and recorded, else why not."""
        nodes = self._nodes()
        copies: list[tuple[str, int, NodeView, _Node]] = []
        outcome: dict[tuple[str, str], str] = {}
        for sha, size, dest_id, source_id in wanted:
            dest, source = nodes.get(dest_id), nodes.get(source_id)
            if dest is None or source is None:
                outcome[(sha, dest_id)] = "node no longer registered"
                continue
            copies.append((sha, size, NodeView(dest.node_id, dest.name, dest.address,
                                               dest.free), source))

        def done(sha: str, node_id: str, error: str) -> None:
            outcome[(sha, node_id)] = error

        self._copy(copies, RepairReport(), done)
        if any(not error for error in outcome.values()):
            self.registry.invalidate()
        return outcome

    def _copy(self, copies: list[tuple[str, int, NodeView, _Node]], report: RepairReport,
              on_done: Callable[[str, str, str], None] | None = None) -> None:
        """Run the copies under the byte-rate cap; ``on_done(sha, node id, error)`` hears
        each outcome ("" when the copy is made and its replica recorded)."""
        tell = on_done or (lambda sha, node_id, error: None)
        if not copies:
            return
        rate = max(self.settings.repair_rate_bytes_s, 1.0)
        started = time.monotonic()
        insert = postgresql.insert if self.db.is_postgres else sqlite.insert

        def one(item: tuple[str, int, NodeView, _Node]) -> tuple[str, str, int, str]:
            sha, size, dest, source = item
            try:
                self.pool.fetch_chunk_from(dest.address, sha, source.address)
                return sha, dest.node_id, size, ""
            except grpc.RpcError as exc:
                first = f"{exc.code().name}: {exc.details()}"
            # Nodes that cannot reach each other: relay the bytes through the gateway.
            try:
                data = self.pool.get_chunk(source.address, sha)
                if hashlib.sha256(data).hexdigest() != sha:
                    return sha, dest.node_id, size, f"{first}; relay read bad data"
                self.pool.put_chunk(dest.address, sha, data, "repair")
                return sha, dest.node_id, size, ""
            except grpc.RpcError as exc:
                return sha, dest.node_id, size, f"{first}; relay: {exc.code().name}"

        with cf.ThreadPoolExecutor(max_workers=self.settings.repair_concurrency,
                                   thread_name_prefix="repair") as ex:
            pending: set[cf.Future[tuple[str, str, int, str]]] = set()
            queued = list(copies)
            sent_bytes = 0
            while queued or pending:
                while queued and len(pending) < self.settings.repair_concurrency:
                    # Throttle: never run ahead of the byte-rate cap.
                    ahead = sent_bytes / rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(min(ahead, 1.0))
                        continue
                    item = queued.pop(0)
                    sent_bytes += item[1]
                    pending.add(ex.submit(one, item))
                done, pending = cf.wait(pending, timeout=1.0,
                                        return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    sha, node_id, size, error = fut.result()
                    if error:
                        report.failed += 1
                        log.warning("repair of %s onto %s failed: %s", sha[:12], node_id, error)
                        tell(sha, node_id, error)
                        continue
                    try:
                        with self.db.write() as s:
                            if s.get(Chunk, sha) is None:
                                # collected meanwhile; the node's copy is garbage
                                tell(sha, node_id, "chunk collected meanwhile")
                                continue
                            s.execute(insert(Replica).values(
                                chunk_sha256=sha, node_id=node_id, created_at=utcnow())
                                .on_conflict_do_nothing())
                        report.copied += 1
                        report.copied_bytes += size
                        tell(sha, node_id, "")
                    except Exception:  # noqa: BLE001 - count it and go on with the pass
                        report.failed += 1
                        log.exception("recording repaired replica of %s failed", sha[:12])
                        tell(sha, node_id, "recording the copy failed (see the gateway log)")

    def _trim(self, trims: list[tuple[str, _Node]], report: RepairReport) -> None:
        by_node: dict[str, list[str]] = {}
        for sha, node in trims:
            with self.db.write() as s:
                s.execute(delete(Replica).where(Replica.chunk_sha256 == sha,
                                                Replica.node_id == node.node_id))
            by_node.setdefault(node.node_id, []).append(sha)
            report.trimmed += 1
        nodes = self._nodes()
        for node_id, hashes in by_node.items():
            try:
                self.pool.delete_chunks_if_idle(nodes[node_id].address, hashes, 0)
            except grpc.RpcError as exc:
                log.warning("trim on %s failed (garbage sweep will retry): %s",
                            nodes[node_id].name, exc.details())

    def _finish_drains(self, nodes: dict[str, _Node], target: int,
                       report: RepairReport) -> None:
        draining = [n for n in nodes.values() if n.status in ("draining", DRAIN_OFFLINE)]
        if not draining:
            return
        where, _ = self._replica_map()
        for node in draining:
            held = [sha for sha, holders in where.items() if node.node_id in holders]
            safe = all(
                sum(1 for h in where[sha] if h != node.node_id and h in nodes
                    and nodes[h].status == "online") >= target for sha in held)
            if not safe:
                continue
            with self.db.write() as s:
                s.execute(delete(Replica).where(Replica.node_id == node.node_id))
                row = s.get(StorageNode, node.node_id)
                if row is not None:
                    row.status = "drained"
            report.drained.append(node.name)
            self.registry.invalidate()
            self.events.emit("node_drained", f"node {node.name} drained: it holds no data "
                             "the cluster needs and can be switched off", None,
                             node=node.name, chunks_moved=len(held))


class CorruptionReports:
    """Confirms the chunks a node reports corrupt before their replica rows go.

    A heartbeat's report is only a claim. Each reported replica is re-verified on the
    reporting node itself (``VerifyChunk``): if the node still holds an intact copy the
    report is refuted and the row stays; only a copy the node confirms missing or damaged
    is forgotten (repair then copies a good one back). A report the node cannot be asked
    about right now keeps its row. Runs on its own thread so heartbeats stay quick.
    """

    RETRIES = 3
    RETRY_DELAY_S = 2.0
    QUEUE_MAX = 100_000

    def __init__(self, db: Database, pool: NodePool, events: EventBus) -> None:
        self.db = db
        self.pool = pool
        self.events = events
        self._queue: queue.Queue[tuple[str, str, int]] = queue.Queue(self.QUEUE_MAX)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="corrupt-reports", daemon=True)
        self._started = False
        self._lock = threading.Lock()

    def submit(self, node_id: str, hashes: list[str]) -> None:
        """Queue a node's report (called from the heartbeat; never blocks it)."""
        with self._lock:
            if not self._started:
                self._started = True
                self._thread.start()
        for sha in hashes:
            try:
                self._queue.put_nowait((node_id, sha, 0))
            except queue.Full:
                log.warning("corruption reports queue full: report of %s on %s dropped "
                            "(its replica row stays)", sha[:12], node_id)
                return

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                node_id, sha, tries = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self.confirm(node_id, sha, tries)
            except Exception:  # noqa: BLE001 - one bad report must not stop the others
                log.exception("confirming the corrupt report of %s failed (row kept)", sha[:12])

    def confirm(self, node_id: str, sha: str, tries: int = 0) -> str:
        """Check one report; returns "refuted", "confirmed", "unknown" or "retry"."""
        with self.db.read() as s:
            node = s.get(StorageNode, node_id)
            held = s.get(Replica, (sha, node_id)) is not None
            name, address = (node.name, node.address) if node is not None else ("?", "")
        if node is None or not held:
            return "unknown"  # forgotten meanwhile: nothing to decide
        try:
            verdict = self.pool.verify_chunk(address, sha)
        except grpc.RpcError as exc:
            if tries + 1 < self.RETRIES and not self._stop.is_set():
                log.info("cannot confirm %s on %s yet (%s): will ask again", sha[:12], name,
                         exc.code().name if exc.code() else "error")
                timer = threading.Timer(self.RETRY_DELAY_S, self._requeue,
                                        (node_id, sha, tries + 1))
                timer.daemon = True
                timer.start()
                return "retry"
            log.warning("could not confirm that %s on %s is corrupt: replica kept", sha[:12],
                        name)
            return "unknown"
        if verdict.present and verdict.valid:
            with self.db.write() as s:
                row = s.get(Replica, (sha, node_id))
                if row is not None:
                    row.verified_at = utcnow()
            log.warning("node %s reported chunk %s corrupt, but its copy verifies intact: "
                        "report refuted, replica kept", name, sha[:12])
            self.events.emit("replica_report_refuted", f"node {name} reported chunk "
                             f"{sha[:12]} corrupt but its copy verifies intact: kept", None,
                             node=name, chunk=sha)
            return "refuted"
        with self.db.write() as s:
            s.execute(delete(Replica).where(Replica.node_id == node_id,
                                            Replica.chunk_sha256 == sha))
            left = s.scalar(select(func.count()).select_from(Replica).where(
                Replica.chunk_sha256 == sha)) or 0
        state = "missing" if not verdict.present else "corrupt"
        self.events.emit("replica_corrupt", f"node {name} confirmed chunk {sha[:12]} {state}: "
                         + ("replica forgotten, repair copies a good one back" if left
                            else "it was the last replica known"), None, node=name, chunk=sha,
                         replicas_left=int(left))
        return "confirmed"

    def _requeue(self, node_id: str, sha: str, tries: int) -> None:
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait((node_id, sha, tries))
