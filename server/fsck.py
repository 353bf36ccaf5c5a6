"""fsck: the metadata checked against what the storage nodes hold, fixed where it can be.

``cloudgrpc-admin --fsck`` runs this on the gateway behind ``AdminService.Fsck`` (the admin
CLI is a client and never touches the database). JuiceFS's ``fsck`` is the model: list what
the storage really holds, compare it with what the metadata says, report each difference,
and with ``--repair`` fix what can be fixed and name what cannot.

What is checked, per node that answers (``ChunkService.ListChunks``):

- ``missing_on_node``: a replica row says the node holds a copy; the node does not. Checked
  twice (row still there, ``HasChunks`` still says absent) so an upload or a collection
  running meanwhile is not taken for a loss.
- ``corrupt``: the node re-hashes its copy (``VerifyChunk``) and it no longer matches. Content
  verification is the default: corruption is what a check is for, and the nodes' own
  scrubbers pass over each chunk only once a week. It reads every recorded copy, so it runs
  one copy per node at a time under a cluster-wide byte rate (``FSCK_VERIFY_RATE_MBPS``) and
  the whole call under ``FSCK_MAX_S``; ``presence_only`` (``--quick``) skips it.
- ``unknown_to_metadata``: a chunk file no replica row knows, with its age. Younger than
  ``GC_GRACE_S`` it may belong to an upload in flight (uploads write chunks before their
  commit): reported, never deleted, not counted against ``clean``.
- ``under_replicated``: a chunk a file references (trash included) with fewer than
  ``REPLICATION_FACTOR`` good copies (present, and intact when verified).
- ``lost_file``: a file with a chunk that has no good copy anywhere and none on a node that
  did not answer: named by its path in its owner's drive and the owner's email.
- ``node_unreachable``: a node that did not answer; its copies are unknown, not missing.
- ``link_count``: a file whose stored ``nlink`` is not the number of its names (its rows in
  ``file_names``; a trashed file keeps one); ``--repair`` sets it to the names counted, and
  gives a file with no name at all one, ``/lost+found-ID`` in its owner's drive.

``--repair``: drops the replica rows of missing and corrupt copies (a corrupt copy is first
moved to quarantine on its node, as the scrubber does), records unrecorded copies files
reference, copies short chunks at once through repair's copy path (no ``REPAIR_GRACE_S``
wait), and deletes unknown chunk files older than ``GC_GRACE_S`` (the node re-checks the
file's age, and references are checked again right before). It never deletes a copy of a
chunk a file references: lost files are reported and kept.

One fsck runs at a time per gateway; a second call is refused at once.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc
from sqlalchemy import delete, func, select, update

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto.errors import FailedPrecondition

from .config import Settings
from .db import Database
from .events import EventBus
from .garbage import GarbageCollector
from .models import (
    Chunk,
    File,
    FileChunk,
    FileName,
    Folder,
    Replica,
    StorageNode,
    User,
    utcnow,
)
from .node_pool import NodePool
from .node_registry import DRAIN_OFFLINE
from .placement import NodeView, rank
from .repair import Repairer

log = logging.getLogger(__name__)

MISSING = "missing_on_node"
CORRUPT = "corrupt"
UNKNOWN = "unknown_to_metadata"
UNDER_REPLICATED = "under_replicated"
LOST_FILE = "lost_file"
NODE_UNREACHABLE = "node_unreachable"
LINK_COUNT = "link_count"

BATCH = 500
HAS_BATCH = 1000
PROGRESS_EVERY_S = 2.0
MAX_FOLDER_DEPTH = 256


@dataclass(frozen=True)
class _Node:
    node_id: str
    name: str
    address: str
    status: str
    free: int


@dataclass
class _Tally:
    missing: int = 0
    corrupt: int = 0
    unknown: int = 0
    unknown_in_grace: int = 0
    under: int = 0
    lost_files: int = 0
    unreachable: int = 0
    repaired: int = 0
    unrepaired: int = 0
    verified: int = 0
    problems: int = 0


@dataclass
class _Metadata:
    sizes: dict[str, int]                       # every chunk row
    claimed: dict[str, dt.datetime]             # its last_used_at
    referenced: set[str]                        # chunks a file (trash included) uses
    holders: dict[str, set[str]] = field(default_factory=dict)  # sha -> node ids (rows)
    files: int = 0


class Fsck:
    """The check behind ``AdminService.Fsck``; ``run`` yields its messages."""

    def __init__(self, settings: Settings, db: Database, pool: NodePool, repairer: Repairer,
                 collector: GarbageCollector, events: EventBus) -> None:
        self.settings = settings
        self.db = db
        self.pool = pool
        self.repairer = repairer
        self.collector = collector
        self.events = events
        self._lock = threading.Lock()
        self._started_at = 0.0

    def run(self, repair: bool, verify: bool, active: Callable[[], bool]
            ) -> Iterator[pb.FsckMessage]:
        """Check (and with ``repair`` fix); ``active`` says whether the caller still listens.

        Raises ``FailedPrecondition`` at once while another fsck runs on this gateway.
        """
        if not self._lock.acquire(blocking=False):
            running = time.monotonic() - self._started_at
            raise FailedPrecondition(
                f"an fsck is already running on this gateway (for {running:.0f} s): "
                "wait for it to finish")
        try:
            self._started_at = time.monotonic()
            yield from _Run(self, repair, verify, active).messages()
        finally:
            self._lock.release()


class _Run:
    """One fsck pass: its state, and the steps in the order their findings stream."""

    def __init__(self, fsck: Fsck, repair: bool, verify: bool, active: Callable[[], bool]
                 ) -> None:
        self.f = fsck
        self.settings = fsck.settings
        self.repair = repair
        self.verify = verify
        self.active = active
        self.started = time.monotonic()
        self.deadline = self.started + self.settings.fsck_max_s
        self.complete = True
        self.t = _Tally()
        self.nodes: dict[str, _Node] = {}
        self.unreachable: dict[str, str] = {}
        self.held: dict[str, dict[str, tuple[int, int]]] = {}  # node -> sha -> (size, mtime)
        # Copies of chunks found good: recorded and present (and intact when verified), or
        # unrecorded copies of referenced chunks (adopted with repair).
        self.good: dict[str, set[str]] = {}
        self.bad_kept: dict[str, set[str]] = {}  # corrupt copies still on their node
        self.uncertain: dict[str, set[str]] = {}  # copies whose check failed: unknown

    # --- the pass ---------------------------------------------------------------------

    def messages(self) -> Iterator[pb.FsckMessage]:
        self.nodes = self._nodes()
        yield _progress(f"listing the chunks of {len(self.nodes)} nodes")
        self._list_nodes()
        meta = self._metadata()
        yield _progress(f"{meta.files} files, {len(meta.sizes)} chunks in the metadata; "
                        f"{sum(len(h) for h in self.held.values())} chunk files on "
                        f"{len(self.held)} nodes")
        present = yield from self._missing_copies(meta)
        if self._stopped():
            yield self._summary(meta)
            return
        yield from self._check_copies(present)
        yield from self._unknown_copies(meta)
        lost = yield from self._short_chunks(meta)
        yield from self._lost_files(lost)
        yield from self._link_counts()
        yield self._summary(meta)

    def _stopped(self) -> bool:
        if not self.active():
            self.complete = False
            return True
        if time.monotonic() > self.deadline:
            if self.complete:
                log.warning("fsck stopped after FSCK_MAX_S=%g s: incomplete",
                            self.settings.fsck_max_s)
            self.complete = False
            return True
        return False

    def _finding(self, kind: str, *, problem: bool = True, fixed: bool | None = None,
                 **fields: str) -> pb.FsckMessage:
        """One finding; counted as a problem, and with repair as fixed or not."""
        if problem:
            self.t.problems += 1
            if self.repair:
                if fixed:
                    self.t.repaired += 1
                else:
                    self.t.unrepaired += 1
        return pb.FsckMessage(finding=pb.FsckFinding(kind=kind, **fields))

    # --- nodes ------------------------------------------------------------------------

    def _nodes(self) -> dict[str, _Node]:
        with self.f.db.read() as s:
            return {n.id: _Node(n.id, n.name, n.address, n.status,
                                max(0, n.capacity_bytes - n.used_bytes))
                    for n in s.scalars(select(StorageNode).where(
                        StorageNode.status != "drained").order_by(StorageNode.name))}

    def _list_nodes(self) -> None:
        def listing(node: _Node) -> tuple[_Node, list[tuple[str, int, int]] | None, str]:
            try:
                return node, self.f.pool.list_chunk_entries(node.address), ""
            except grpc.RpcError as exc:
                code = exc.code().name if exc.code() else "error"
                return node, None, f"{code}: {exc.details()}"

        if not self.nodes:
            return
        with cf.ThreadPoolExecutor(max_workers=min(8, len(self.nodes)),
                                   thread_name_prefix="fsck-list") as ex:
            results = list(ex.map(listing, self.nodes.values()))
        for node, entries, error in results:
            if entries is None:
                self.unreachable[node.node_id] = error
                continue
            self.held[node.node_id] = {sha: (size, mtime) for sha, size, mtime in entries}

    def _metadata(self) -> _Metadata:
        """Read after the listings: a chunk stored and committed while the nodes were
        listed is then known, not taken for a stray file."""
        with self.f.db.read() as s:
            meta = _Metadata({}, {}, set())
            for sha, size, used in s.execute(select(Chunk.sha256, Chunk.size,
                                                    Chunk.last_used_at)):
                meta.sizes[sha] = int(size)
                meta.claimed[sha] = used
            meta.referenced = set(s.scalars(select(FileChunk.chunk_sha256).distinct()))
            for sha, node_id in s.execute(select(Replica.chunk_sha256, Replica.node_id)):
                if node_id in self.nodes:
                    meta.holders.setdefault(sha, set()).add(node_id)
            meta.files = int(s.scalar(select(func.count()).select_from(File)) or 0)
        return meta

    def _unreachable_findings(self, meta: _Metadata) -> Iterator[pb.FsckMessage]:
        for node_id, error in self.unreachable.items():
            node = self.nodes[node_id]
            recorded = sum(1 for h in meta.holders.values() if node_id in h)
            self.t.unreachable += 1
            yield self._finding(
                NODE_UNREACHABLE, node_name=node.name,
                detail=f"node {node.status}, did not answer ({error}); its {recorded} "
                "recorded copies are unknown, not missing",
                action="cannot be repaired here: bring the node back (or drain it)"
                if self.repair else "")

    # --- recorded copies --------------------------------------------------------------

    def _missing_copies(self, meta: _Metadata
                        ) -> Iterator[pb.FsckMessage]:  # type: ignore[misc]
        """Findings for recorded copies a node lacks; returns the recorded copies that
        are present, by node (to verify next)."""
        yield from self._unreachable_findings(meta)
        candidates: dict[str, list[str]] = {}
        present: dict[str, list[str]] = {}
        for sha, holders in meta.holders.items():
            for node_id in holders:
                files = self.held.get(node_id)
                if files is None:
                    continue  # unreachable: unknown
                if sha in files:
                    present.setdefault(node_id, []).append(sha)
                else:
                    candidates.setdefault(node_id, []).append(sha)
        for node_id, hashes in candidates.items():
            node = self.nodes[node_id]
            confirmed, back = self._confirm_missing(node, hashes)
            present.setdefault(node_id, []).extend(back)
            for sha in confirmed:
                self.t.missing += 1
                action = ""
                if self.repair:
                    self._drop_replica(sha, node_id)
                    action = "replica row dropped (a good copy is copied back if one exists)"
                yield self._finding(MISSING, fixed=True, chunk_sha256=sha, node_name=node.name,
                                    detail="the metadata records a copy the node does not "
                                    "hold", action=action)
        return present

    def _confirm_missing(self, node: _Node, hashes: list[str]) -> tuple[list[str], list[str]]:
        """Of copies the listing lacked: (still recorded and still absent, present now)."""
        still: list[str] = []
        with self.f.db.read() as s:
            for i in range(0, len(hashes), BATCH):
                part = hashes[i:i + BATCH]
                still.extend(s.scalars(select(Replica.chunk_sha256).where(
                    Replica.node_id == node.node_id, Replica.chunk_sha256.in_(part))))
        absent: list[str] = []
        back: list[str] = []
        for i in range(0, len(still), HAS_BATCH):
            part = still[i:i + HAS_BATCH]
            try:
                there = self.f.pool.has_chunks(node.address, part)
            except grpc.RpcError as exc:
                log.warning("fsck: cannot re-check copies on %s: %s", node.name,
                            exc.details())
                for sha in part:  # unknown: neither reported nor dropped
                    self.uncertain.setdefault(sha, set()).add(node.node_id)
                continue
            absent.extend(sha for sha in part if sha not in there)
            back.extend(sha for sha in part if sha in there)
        return absent, back

    def _drop_replica(self, sha: str, node_id: str) -> None:
        with self.f.db.write() as s:
            s.execute(delete(Replica).where(Replica.chunk_sha256 == sha,
                                            Replica.node_id == node_id))

    def _check_copies(self, present: dict[str, list[str]]) -> Iterator[pb.FsckMessage]:
        """Every present recorded copy is good, or (verified) found corrupt."""
        if not self.verify:
            for node_id, hashes in present.items():
                for sha in hashes:
                    self.good.setdefault(sha, set()).add(node_id)
            return
        total = sum(len(h) for h in present.values())
        yield _progress(f"verifying the content of {total} copies "
                        f"(at most {self.settings.fsck_verify_rate_bytes_s / 1e6:g} MB/s)")
        results: queue.Queue[tuple[str, str, str]] = queue.Queue()
        stop = threading.Event()
        pace = _Pace(self.settings.fsck_verify_rate_bytes_s)
        sizes = {sha: size for files in self.held.values() for sha, (size, _) in files.items()}

        def verify_node(node_id: str, hashes: list[str]) -> None:
            node = self.nodes[node_id]
            for sha in hashes:
                if stop.is_set():
                    results.put((node_id, sha, "unchecked"))
                    continue
                pace.wait(sizes.get(sha, 0), stop)
                try:
                    verdict = self.f.pool.verify_chunk(node.address, sha)
                except grpc.RpcError as exc:
                    log.warning("fsck: verify of %s on %s failed: %s", sha[:12], node.name,
                                exc.details())
                    results.put((node_id, sha, "unknown"))
                    continue
                except Exception:  # noqa: BLE001 - every copy must get its answer
                    log.exception("fsck: verify of %s on %s failed", sha[:12], node.name)
                    results.put((node_id, sha, "unknown"))
                    continue
                state = "good" if verdict.present and verdict.valid else (
                    "corrupt" if verdict.present else "vanished")
                results.put((node_id, sha, state))

        threads = [threading.Thread(target=verify_node, args=(node_id, hashes), daemon=True,
                                    name="fsck-verify") for node_id, hashes in present.items()]
        for thread in threads:
            thread.start()
        done = 0
        last = time.monotonic()
        try:
            while done < total:
                try:
                    node_id, sha, state = results.get(timeout=0.5)
                except queue.Empty:
                    node_id, sha, state = "", "", ""
                if self._stopped():
                    stop.set()
                if time.monotonic() - last >= PROGRESS_EVERY_S:
                    last = time.monotonic()
                    yield _progress(f"verified {done} of {total} copies")
                if not sha:
                    continue
                done += 1
                if state == "good":
                    self.t.verified += 1
                    self.good.setdefault(sha, set()).add(node_id)
                elif state == "unchecked":
                    self.good.setdefault(sha, set()).add(node_id)  # present, not verified
                elif state == "corrupt":
                    yield self._corrupt(sha, node_id)
                elif state == "vanished":
                    yield self._vanished(sha, node_id)
                else:
                    self.uncertain.setdefault(sha, set()).add(node_id)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=self.settings.node_call_timeout_s)

    def _corrupt(self, sha: str, node_id: str) -> pb.FsckMessage:
        node = self.nodes[node_id]
        self.t.corrupt += 1
        action = ""
        fixed = False
        if self.repair:
            try:
                verdict = self.f.pool.verify_chunk(node.address, sha, quarantine_if_corrupt=True)
                if verdict.present and verdict.valid:
                    self.good.setdefault(sha, set()).add(node_id)
                    action = "verifies intact on a second read: kept"
                    fixed = True
                else:
                    self._drop_replica(sha, node_id)
                    action = "quarantined on the node, replica row dropped"
                    fixed = True
            except grpc.RpcError as exc:
                action = f"not repaired: the node did not answer ({exc.details()})"
        if not fixed:
            self.bad_kept.setdefault(sha, set()).add(node_id)
        return self._finding(CORRUPT, fixed=fixed, chunk_sha256=sha, node_name=node.name,
                             detail="the node's copy no longer matches its SHA-256",
                             action=action)

    def _vanished(self, sha: str, node_id: str) -> pb.FsckMessage:
        """A copy listed a moment ago and gone at verification: missing, if still recorded."""
        node = self.nodes[node_id]
        self.t.missing += 1
        action = ""
        if self.repair:
            self._drop_replica(sha, node_id)
            action = "replica row dropped (a good copy is copied back if one exists)"
        return self._finding(MISSING, fixed=True, chunk_sha256=sha, node_name=node.name,
                             detail="the metadata records a copy the node does not hold",
                             action=action)

    # --- unrecorded copies ------------------------------------------------------------

    def _unknown_copies(self, meta: _Metadata) -> Iterator[pb.FsckMessage]:
        now = time.time()
        grace = self.settings.gc_grace_s
        recent = utcnow() - dt.timedelta(seconds=grace)
        for node_id, files in self.held.items():
            node = self.nodes[node_id]
            old: list[str] = []
            unrecorded: list[str] = []
            for sha, (_, mtime) in files.items():
                if node_id in meta.holders.get(sha, ()):
                    continue
                if sha in meta.referenced:
                    unrecorded.append(sha)
                    continue
                claimed = meta.claimed.get(sha)
                if claimed is not None and claimed >= recent:
                    continue  # an upload or a copy in flight: recorded any moment now
                age = now - mtime if mtime else -1.0
                if 0 <= age < grace:
                    self.t.unknown_in_grace += 1
                    yield self._finding(
                        UNKNOWN, problem=False, chunk_sha256=sha, node_name=node.name,
                        detail=f"age {age:.0f} s, younger than GC_GRACE_S ({grace:g} s): "
                        "an upload may be in flight",
                        action="kept until it is older than GC_GRACE_S" if self.repair else "")
                    continue
                old.append(sha)
            for sha in self._still_unrecorded(node_id, unrecorded):
                yield self._unrecorded_copy(sha, node)
            yield from self._old_strays(node, old, now, files)

    def _still_unrecorded(self, node_id: str, hashes: list[str]) -> list[str]:
        """Of ``hashes``, those still without a replica row on the node: a copy recorded
        since the metadata was read (an upload or a repair finishing) is not a finding."""
        recorded: set[str] = set()
        with self.f.db.read() as s:
            for i in range(0, len(hashes), BATCH):
                part = hashes[i:i + BATCH]
                recorded.update(s.scalars(select(Replica.chunk_sha256).where(
                    Replica.node_id == node_id, Replica.chunk_sha256.in_(part))))
        for sha in recorded:
            self.good.setdefault(sha, set()).add(node_id)
        return [sha for sha in hashes if sha not in recorded]

    def _unrecorded_copy(self, sha: str, node: _Node) -> pb.FsckMessage:
        """A copy of a referenced chunk no replica row knows: good data the metadata lost."""
        self.t.unknown += 1
        action = ""
        fixed = False
        if self.repair:
            intact = True
            if self.verify:
                try:
                    verdict = self.f.pool.verify_chunk(node.address, sha)
                    intact = verdict.present and verdict.valid
                except grpc.RpcError:
                    intact = False
            if intact:
                self.f.collector.adopt(node.node_id, [sha])
                self.good.setdefault(sha, set()).add(node.node_id)
                action, fixed = "recorded as a replica (a file references it)", True
            else:
                action = "not recorded: it does not verify intact"
        else:
            self.good.setdefault(sha, set()).add(node.node_id)
        return self._finding(UNKNOWN, fixed=fixed, chunk_sha256=sha, node_name=node.name,
                             detail="a copy no replica row records, of a chunk a file "
                             "references", action=action)

    def _old_strays(self, node: _Node, hashes: list[str], now: float,
                    files: dict[str, tuple[int, int]]) -> Iterator[pb.FsckMessage]:
        """Chunk files past the grace that no metadata needs: deleted with repair (the
        node keeps any written within GC_GRACE_S, references are checked right before)."""
        outcome: dict[str, str] = {}
        if self.repair and hashes:
            needed = self.f.collector.still_needed(hashes)
            doomed = [sha for sha in hashes if sha not in needed]
            for sha in needed:
                outcome[sha] = "kept: the metadata knows the chunk again (garbage " \
                    "collection decides)"
            try:
                if doomed:
                    self.f.pool.delete_chunks_if_idle(node.address, doomed,
                                                      self.settings.gc_grace_s)
                    left = self.f.pool.has_chunks(node.address, doomed)
                    for sha in doomed:
                        outcome[sha] = ("kept: the node saw it written within GC_GRACE_S"
                                        if sha in left else "deleted")
            except grpc.RpcError as exc:
                for sha in doomed:
                    outcome.setdefault(sha, f"not deleted: {exc.details()}")
        for sha in hashes:
            mtime = files[sha][1]
            age = f"age {now - mtime:.0f} s" if mtime else "age unknown"
            self.t.unknown += 1
            action = outcome.get(sha, "")
            yield self._finding(UNKNOWN, fixed=action == "deleted", chunk_sha256=sha,
                                node_name=node.name,
                                detail=f"{age}, older than GC_GRACE_S "
                                f"({self.settings.gc_grace_s:g} s): no file or upload uses it",
                                action=action)

    # --- referenced chunks ------------------------------------------------------------

    def _short_chunks(self, meta: _Metadata) -> Iterator[pb.FsckMessage]:  # type: ignore[misc]
        """Under-replicated findings (and copies with repair); returns the lost chunks."""
        factor = self.settings.replication_factor
        eligible = [n for n in self.nodes.values()
                    if n.status not in ("draining", DRAIN_OFFLINE)]
        target = max(1, min(factor, len(eligible) or 1))
        writable = [NodeView(n.node_id, n.name, n.address, n.free) for n in self.nodes.values()
                    if n.status == "online" and n.node_id not in self.unreachable]
        lost: list[str] = []
        short: list[tuple[str, int, int]] = []  # sha, good, unknown
        for sha in sorted(meta.referenced):
            good = self.good.get(sha, set())
            unknown = sum(1 for h in meta.holders.get(sha, ()) if h in self.unreachable) \
                + len(self.uncertain.get(sha, ()))
            if not good and not unknown:
                lost.append(sha)
            elif len(good) < factor:
                short.append((sha, len(good), unknown))
        outcome: dict[str, str] = {}
        if self.repair and short:
            outcome = self._copy_short(short, meta, target, writable)
        for sha, good, unknown in short:
            self.t.under += 1
            detail = f"{good} good {'copy' if good == 1 else 'copies'} of {factor}"
            if unknown:
                detail += f", {unknown} more on nodes that did not answer (unknown)"
            action = outcome.get(sha, "")
            yield self._finding(UNDER_REPLICATED, fixed=action.startswith("copied"),
                                chunk_sha256=sha, detail=detail, action=action)
        return lost

    def _copy_short(self, short: list[tuple[str, int, int]], meta: _Metadata, target: int,
                    writable: list[NodeView]) -> dict[str, str]:
        wanted: list[tuple[str, int, str, str]] = []
        outcome: dict[str, str] = {}
        for sha, good, _ in short:
            sources = sorted(self.good.get(sha, set()))
            if not sources:
                outcome[sha] = "not copied: no good copy on a node that answered"
                continue
            if good >= target:
                outcome[sha] = (f"not copied: {len(self.nodes)} nodes for "
                                f"REPLICATION_FACTOR={self.settings.replication_factor}")
                continue
            taken = set(sources) | self.bad_kept.get(sha, set()) | self.uncertain.get(sha, set())
            picks = [n for n in rank(sha, writable, meta.sizes.get(sha, 0))
                     if n.node_id not in taken][: target - good]
            if len(picks) < target - good:
                outcome[sha] = "not copied: no node that answered has room for another copy"
                if not picks:
                    continue
            for i, dest in enumerate(picks):
                wanted.append((sha, meta.sizes.get(sha, 0), dest.node_id,
                               sources[i % len(sources)]))
        if not wanted:
            return outcome
        done = self.f.repairer.copy_now(wanted)
        names = {n.node_id: n.name for n in self.nodes.values()}
        by_sha: dict[str, list[str]] = {}
        for (sha, node_id), error in done.items():
            by_sha.setdefault(sha, []).append(
                f"to {names.get(node_id, node_id)}" if not error
                else f"to {names.get(node_id, node_id)} failed: {error}")
        for sha, parts in by_sha.items():
            ok = all(not err for (s, _), err in done.items() if s == sha)
            if ok and sha not in outcome:
                outcome[sha] = "copied " + ", ".join(parts)
            else:
                outcome[sha] = "not fully copied: " + "; ".join(
                    [p for p in [outcome.get(sha, "")] if p] + parts)
        return outcome

    def _lost_files(self, lost: list[str]) -> Iterator[pb.FsckMessage]:
        if not lost:
            return
        lost_set = set(lost)
        seen: dict[str, tuple[str, File, str]] = {}
        with self.f.db.read() as s:
            for i in range(0, len(lost), BATCH):
                part = lost[i:i + BATCH]
                rows = s.execute(select(FileChunk.chunk_sha256, File, User.email)
                                 .join(File, File.id == FileChunk.file_id)
                                 .join(User, User.id == File.owner_id)
                                 .where(FileChunk.chunk_sha256.in_(part))
                                 .order_by(FileChunk.seq))
                for sha, f, email in rows:
                    if f.id not in seen and sha in lost_set:
                        seen[f.id] = (sha, f, email)
            found = [(sha, f, email, _path(s, *_first_name(s, f.id)))
                     for sha, f, email in seen.values()]
        for sha, f, email, path in sorted(found, key=lambda x: (x[2], x[3])):
            self.t.lost_files += 1
            where = "in the trash" if f.deleted_at is not None else "live"
            yield self._finding(
                LOST_FILE, fixed=False, chunk_sha256=sha, path=path, owner_email=email,
                file_id=f.id, detail=f"{where} file of {f.size} bytes: no readable copy of "
                f"chunk {sha[:12]} on any node",
                action="cannot be repaired: the file is kept; restore it from a backup or "
                "delete it" if self.repair else "")

    def _link_counts(self) -> Iterator[pb.FsckMessage]:
        """Files whose stored nlink is not their names counted: the mount shows it as
        st_nlink and decides by it whether an rm of one name keeps the file."""
        names = select(FileName.file_id, func.count().label("n")).group_by(
            FileName.file_id).subquery()
        counted = func.coalesce(names.c.n, 0)
        with self.f.db.read() as s:
            rows = s.execute(
                select(File.id, File.nlink, counted, User.email)
                .outerjoin(names, names.c.file_id == File.id)
                .join(User, User.id == File.owner_id)
                .where(File.nlink != counted)).all()
            found = [(fid, stored, int(n), email, _path(s, *_first_name(s, fid)))
                     for fid, stored, n, email in rows]
        for fid, stored, n, email, path in found:
            action = ""
            if self.repair:
                with self.f.db.write() as s:  # counted again in the same transaction
                    if n == 0:
                        action = _name_orphan(s, fid)
                    else:
                        s.execute(update(File).where(File.id == fid).values(
                            nlink=select(func.count()).where(FileName.file_id == fid)
                            .scalar_subquery()))
                        action = "set to the names counted"
            yield self._finding(LINK_COUNT, fixed=self.repair, path=path, owner_email=email,
                                file_id=fid, action=action,
                                detail=f"nlink is {stored}, the file has {n} names")

    # --- the end ----------------------------------------------------------------------

    def _summary(self, meta: _Metadata) -> pb.FsckMessage:
        t = self.t
        elapsed = time.monotonic() - self.started
        remaining = t.unrepaired if self.repair else t.problems
        clean = t.problems == 0 and self.complete
        summary = pb.FsckSummary(
            files_checked=meta.files,
            chunks_checked=len(set(meta.sizes) | {s for h in self.held.values() for s in h}),
            nodes_checked=len(self.held), nodes_unreachable=t.unreachable,
            missing_copies=t.missing, corrupt_copies=t.corrupt, unknown_chunks=t.unknown,
            under_replicated=t.under, lost_files=t.lost_files, repaired=t.repaired,
            unrepaired=t.unrepaired, elapsed_s=round(elapsed, 3), clean=clean,
            complete=self.complete, unknown_in_grace=t.unknown_in_grace,
            verified_copies=t.verified, problems_remaining=remaining,
            content_verified=self.verify)
        word = "clean" if clean else f"{t.problems} problems, {remaining} remaining"
        self.f.events.emit(
            "fsck", f"fsck{' --repair' if self.repair else ''}: {word} "
            f"({t.missing} missing, {t.corrupt} corrupt, {t.unknown} unknown, "
            f"{t.under} under-replicated, {t.lost_files} lost files, {t.unreachable} nodes "
            f"unreachable; {t.repaired} repaired)"
            + ("" if self.complete else ", incomplete"), None,
            repair=self.repair, clean=clean, problems=t.problems, remaining=remaining,
            lost_files=t.lost_files, complete=self.complete)
        return pb.FsckMessage(summary=summary)


class _Pace:
    """A cluster-wide byte rate shared by the verifying threads."""

    def __init__(self, rate_bytes_s: float) -> None:
        self.rate = max(rate_bytes_s, 1.0)
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def wait(self, nbytes: int, stop: threading.Event) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + nbytes / self.rate
        if start > now:
            stop.wait(start - now)


def _progress(text: str) -> pb.FsckMessage:
    return pb.FsckMessage(progress=text)


def _name_orphan(s: object, file_id: str) -> str:
    """A file without any name (no folder shows it, so nothing can read or remove it): one
    name in its owner's root, ``lost+found-ID`` (in the trash if the file is), nlink 1,
    as a filesystem check puts an orphan inode in lost+found. What the repair did."""
    f = s.get(File, file_id)  # type: ignore[attr-defined]
    owner = s.get(User, f.owner_id) if f is not None else None  # type: ignore[attr-defined]
    if f is None or owner is None or not owner.root_folder_id:
        return "not named: the file or its owner's drive is gone"
    name = f"lost+found-{file_id}"
    s.add(FileName(file_id=file_id, owner_id=f.owner_id,  # type: ignore[attr-defined]
                   folder_id=owner.root_folder_id, name=name, deleted_at=f.deleted_at))
    f.nlink = 1
    return f"named /{name} in its owner's drive"


def _first_name(s: object, file_id: str) -> tuple[str, str]:
    """(folder id, name) of a file's oldest name (the one kept in the trash for a trashed
    file); ("", "?") for a file without any."""
    row = s.execute(select(FileName.folder_id, FileName.name).where(  # type: ignore[attr-defined]
        FileName.file_id == file_id).order_by(FileName.created_at, FileName.id).limit(1)).first()
    return (row.folder_id, row.name) if row is not None else ("", "?")


def _path(s: object, folder_id: str, name: str) -> str:
    """A file's path in its owner's drive (the folder it is, or was before the trash, in)."""
    parts = [name]
    current: str | None = folder_id
    for _ in range(MAX_FOLDER_DEPTH):
        folder = s.get(Folder, current) if current else None  # type: ignore[attr-defined]
        if folder is None or folder.parent_id is None:
            break
        parts.append(folder.name)
        current = folder.parent_id
    return "/" + "/".join(reversed(parts))
