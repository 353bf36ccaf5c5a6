"""Garbage collection: chunks no file uses any more leave the nodes after a grace period.

Chunks become garbage when files are deleted for good, overwritten, or when an upload fails
or is interrupted after some of its chunks were stored. Safety against uploads in flight
rests on two rules:

- every upload claims a chunk (``last_used_at`` = now) *before* relying on it, and the
  collector deletes a chunk row only if it is still unreferenced and unclaimed for
  ``GC_GRACE_S`` — checked in the same statement that deletes it;
- nodes are asked to delete only chunk files not written or put again in the last
  ``GC_IDLE_S`` (a minute),
  so an upload that claimed the chunk again just after the decision keeps its bytes.

A second sweep asks each node which chunks it holds and removes files the metadata does not
know (leftovers of a crash between a node write and its record), with the same care.

Neither ever deletes a chunk a file still references (a file in the trash included), even
where no replica row says the node holds it: references are checked again right before each
call that deletes on a node, so no lost or wrong metadata (a node's report, a forgotten
replica row) can turn the last good copy of a user's data into "garbage".
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import grpc
from sqlalchemy import and_, delete, exists, select
from sqlalchemy.dialects import postgresql, sqlite

from .config import Settings
from .db import Database
from .events import EventBus
from .models import Chunk, FileChunk, Replica, StorageNode, utcnow
from .node_pool import NodePool
from .restore_guard import sweep_held_since

log = logging.getLogger(__name__)

BATCH = 500


@dataclass
class GcReport:
    chunks: int = 0
    bytes: int = 0
    node_orphans: int = 0


class GarbageCollector:
    def __init__(self, settings: Settings, db: Database, pool: NodePool,
                 events: EventBus) -> None:
        self.settings = settings
        self.db = db
        self.pool = pool
        self.events = events
        self._held_logged = ""  # the restore the paused sweep was last logged for

    @property
    def _idle_window_s(self) -> float:
        # Never shorter than an upload's node write takes: a chunk written for an upload
        # that has not recorded it yet looks exactly like a stray file.
        return max(self.settings.gc_idle_s, self.settings.node_call_timeout_s + 5.0)

    def run_once(self, sweep_nodes: bool = True) -> GcReport:
        report = GcReport()
        cutoff = utcnow() - dt.timedelta(seconds=self.settings.gc_grace_s)
        unreferenced = ~exists().where(FileChunk.chunk_sha256 == Chunk.sha256)
        while True:
            with self.db.read() as s:
                batch = list(s.execute(select(Chunk.sha256, Chunk.size).where(
                    Chunk.last_used_at < cutoff, unreferenced).limit(BATCH)))
            if not batch:
                break
            doomed: dict[str, list[str]] = {}
            with self.db.write() as s:
                for sha, size in batch:
                    holders = list(s.scalars(select(Replica.node_id).where(
                        Replica.chunk_sha256 == sha)))
                    gone = s.execute(delete(Chunk).where(and_(
                        Chunk.sha256 == sha, Chunk.last_used_at < cutoff,
                        ~exists().where(FileChunk.chunk_sha256 == sha)))).rowcount
                    if gone:
                        report.chunks += 1
                        report.bytes += size
                        for node_id in holders:
                            doomed.setdefault(node_id, []).append(sha)
            self._delete_on_nodes(doomed)
            if len(batch) < BATCH:
                break
        if sweep_nodes:
            report.node_orphans = self._sweep_nodes()
        if report.chunks or report.node_orphans:
            self.events.emit("gc", f"garbage collection: {report.chunks} chunks "
                             f"({report.bytes} bytes) freed, {report.node_orphans} stray "
                             "files removed from nodes", None, chunks=report.chunks,
                             bytes=report.bytes, node_orphans=report.node_orphans)
        return report

    def _addresses(self) -> dict[str, str]:
        with self.db.read() as s:
            return {n.id: n.address for n in s.scalars(
                select(StorageNode).where(StorageNode.status.in_(("online", "draining"))))}

    def still_needed(self, hashes: list[str]) -> set[str]:
        """Of ``hashes``, those a file references or an upload claimed again (a chunk row
        exists): never to be deleted from a node."""
        needed = self._still_needed_by_files(hashes)
        with self.db.read() as s:
            for i in range(0, len(hashes), BATCH):
                part = hashes[i:i + BATCH]
                needed.update(s.scalars(select(Chunk.sha256).where(Chunk.sha256.in_(part))))
        return needed

    def _still_needed_by_files(self, hashes: list[str]) -> set[str]:
        """Of ``hashes``, those some file (live or in the trash) references."""
        needed: set[str] = set()
        with self.db.read() as s:
            for i in range(0, len(hashes), BATCH):
                part = hashes[i:i + BATCH]
                needed.update(s.scalars(select(FileChunk.chunk_sha256).where(
                    FileChunk.chunk_sha256.in_(part)).distinct()))
        return needed

    def adopt(self, node_id: str, hashes: list[str]) -> None:
        insert = postgresql.insert if self.db.is_postgres else sqlite.insert
        with self.db.write() as s:
            for sha in hashes:
                s.execute(insert(Replica).values(chunk_sha256=sha, node_id=node_id,
                                                 created_at=utcnow()).on_conflict_do_nothing())

    def _delete_on_nodes(self, doomed: dict[str, list[str]]) -> None:
        addresses = self._addresses()
        for node_id, listed in doomed.items():
            address = addresses.get(node_id)
            if address is None:
                continue  # offline: the node sweep removes them when it is back
            needed = self.still_needed(listed)
            hashes = [sha for sha in listed if sha not in needed]
            if not hashes:
                continue
            try:
                self.pool.delete_chunks_if_idle(address, hashes, self._idle_window_s)
            except grpc.RpcError as exc:
                log.warning("gc: delete on %s failed (sweep will retry): %s", address,
                            exc.details())

    def _sweep_nodes(self) -> int:
        with self.db.read() as s:
            held_since = sweep_held_since(s)
        if held_since is not None:
            if self._held_logged != held_since:
                self._held_logged = held_since
                log.warning("gc: node sweep paused since the metadata restore of %s: run "
                            "cloudgrpc-admin --fsck to see the chunks the backup did not "
                            "know (files written after it) before they are collected",
                            held_since)
            return 0
        removed = 0
        for node_id, address in self._addresses().items():
            try:
                held = self.pool.list_chunks(address)
            except grpc.RpcError as exc:
                log.warning("gc: cannot list chunks of %s: %s", address, exc.details())
                continue
            names = [sha for sha, _ in held]
            known: set[str] = set()
            with self.db.read() as s:
                for i in range(0, len(names), BATCH):
                    part = names[i:i + BATCH]
                    known.update(s.scalars(select(Replica.chunk_sha256).where(
                        Replica.node_id == node_id, Replica.chunk_sha256.in_(part))))
                    # A chunk claimed but not yet recorded on this node is an upload or a
                    # repair in flight: keep it.
                    known.update(s.scalars(select(Chunk.sha256).where(
                        Chunk.sha256.in_(part),
                        Chunk.last_used_at >= utcnow() - dt.timedelta(
                            seconds=self.settings.gc_grace_s))))
            stray = [sha for sha in names if sha not in known]
            if stray:
                # Right before deleting: anything a file references stays, whatever the
                # replica rows say (they may have been lost or wrongly removed).
                # Such a copy is adopted back as a replica (reads verify it anyway).
                needed = self._still_needed_by_files(stray)
                if needed:
                    self.adopt(node_id, sorted(needed))
                    log.warning("gc: %d chunk(s) on %s that files reference had no replica "
                                "row: kept and recorded", len(needed), address)
                stray = [sha for sha in stray if sha not in needed]
            if not stray:
                continue
            try:
                reply = self.pool.delete_chunks_if_idle(
                    address, stray, self._idle_window_s)
                removed += reply.deleted
            except grpc.RpcError as exc:
                log.warning("gc: sweep delete on %s failed: %s", address, exc.details())
        return removed
