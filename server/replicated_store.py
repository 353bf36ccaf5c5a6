"""Chunks over storage nodes: replicated writes and verified, failing-over reads.

This is the gateway's chunk layer (JuiceFS's "chunk store"): the upload and download
pipelines hand it whole chunks by SHA-256 and never see a node. A write lands on
``REPLICATION_FACTOR`` distinct nodes in parallel, moving down the placement ranking when a
node fails; the chunk and its replicas are recorded at once, before the file that uses them
commits, so garbage collection can always find orphans of a failed upload. A read tries the
replicas in turn, checks the hash of what comes back, and rewrites a bad replica from the
good copy.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import logging
import random
from collections.abc import Iterable

import grpc
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from cloudgrpc_proto.errors import CloudError, DataLoss, StorageFull, Unavailable

from .config import Settings
from .db import Database
from .events import EventBus
from .models import Chunk, Replica, UserChunk, utcnow
from .node_pool import NodePool
from .node_registry import NodeRegistry
from .placement import rank

log = logging.getLogger(__name__)

READ_BATCH_BYTES = 8 * 1024 * 1024  # per GetChunks call (a node caps its reply at 16 MiB)
READ_BATCH_CHUNKS = 250


class ChunkUnreadable(DataLoss):
    """No replica of a chunk could be read intact (DATA_LOSS on the wire: the gateway has
    already tried every copy, so a client retry would not help; the user is told the
    file's data is unreadable, not that the gateway is unreachable)."""


class ReplicatedStore:
    def __init__(self, settings: Settings, db: Database, registry: NodeRegistry,
                 pool: NodePool, events: EventBus) -> None:
        self.settings = settings
        self.db = db
        self.registry = registry
        self.pool = pool
        self.events = events
        self.io = cf.ThreadPoolExecutor(max_workers=24, thread_name_prefix="replica-io")

    def _insert(self):  # type: ignore[no-untyped-def]
        return postgresql.insert if self.db.is_postgres else sqlite.insert

    def replication_target(self) -> int:
        """How many replicas a chunk needs: the factor, or every node of a smaller cluster."""
        return max(1, min(self.settings.replication_factor, self.registry.registered_count()))

    # --- writes ---------------------------------------------------------------------

    def store(self, sha256: str, data: bytes, user_id: str, upload_id: str = "") -> bool:
        """Make sure the chunk is held by enough nodes; True when its bytes had to travel."""
        target = self.replication_target()
        with self.db.read() as s:
            known = s.get(Chunk, sha256) is not None
        have: set[str] = set()
        live: set[str] = set()
        if known:
            # An existing chunk is claimed first (fresh last_used_at): garbage collection
            # only drops chunks unclaimed for its grace period, so what this upload is about
            # to rely on stays. A new chunk has no row for the collector to race with.
            # Ownership waits until the chunk is fully stored: a chunk the caller may
            # reference (FindChunks, chunk_ref) must be one with enough live copies.
            self._record(sha256, len(data), "", [])
            with self.db.read() as s:
                have = set(s.scalars(select(Replica.node_id).where(
                    Replica.chunk_sha256 == sha256)))
            live = {n for n in have if self.registry.is_online(n)}
            if len(live) >= target:
                self._record(sha256, len(data), user_id, [])
                return False
        need = target - len(live)
        others = [n for n in self.registry.writable_nodes() if n.node_id not in have]
        candidates = rank(sha256, others, len(data))  # those with room, best first
        written: list[str] = []
        errors: list[str] = []
        pending: dict[cf.Future[object], str] = {}
        queue = list(candidates)

        def launch() -> None:
            node = queue.pop(0)
            fut = self.io.submit(self.pool.put_chunk, node.address, sha256, data, upload_id)
            pending[fut] = node.node_id

        while len(pending) < need and queue:
            launch()
        while pending:
            done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                node_id = pending.pop(fut)
                try:
                    fut.result()
                    written.append(node_id)
                    self.registry.note_used(node_id, len(data))
                except grpc.RpcError as exc:
                    errors.append(f"{node_id}: {exc.code().name} {exc.details()}")
                    log.warning("upload %s: chunk %s to node %s failed: %s", upload_id,
                                sha256[:12], node_id, exc.details())
                    if queue and len(written) + len(pending) < need:
                        launch()
        if len(written) < need:
            # Keep what did land recorded, so garbage collection can find it, but not as
            # the caller's: a short chunk must travel again, never be referenced.
            self._record(sha256, len(data), "", written)
            if len(others) < need:
                raise Unavailable(
                    f"could store the chunk on {len(live) + len(written)} of {target} nodes: "
                    f"only {len(live) + len(others)} storage nodes are online")
            full = len(candidates) < need or (
                errors and all("RESOURCE_EXHAUSTED" in e for e in errors))
            if full:
                raise StorageFull(
                    f"the storage nodes are out of space ({len(live) + len(written)} of "
                    f"{target} copies stored): add a node or free space")
            raise Unavailable(
                f"could store the chunk on {len(live) + len(written)} of {target} nodes"
                f" ({'; '.join(errors[:3])})")
        self._record(sha256, len(data), user_id, written)
        log.debug("upload %s: chunk %s on %s", upload_id, sha256[:12], written)
        return True

    def store_many(self, chunks: dict[str, bytes], user_id: str, upload_id: str = ""
                   ) -> dict[str, bool | CloudError]:
        """``store`` for many small chunks at once: per chunk, True when its bytes travelled,
        False when enough replicas were already there, or the error that stopped it.

        Each node gets one ``PutChunks`` call with every chunk placed on it, and all the
        replicas are recorded in one transaction: a batch of small files costs a few round
        trips instead of a few per file. A chunk whose batched write fell short (a node
        refused or died) goes through ``store`` on its own, which fails over down the
        ranking exactly as a large file's chunk does.
        """
        target = self.replication_target()
        hashes = list(chunks)
        have: dict[str, set[str]] = {h: set() for h in hashes}
        with self.db.read() as s:
            known = {h for i in range(0, len(hashes), 500) for h in s.scalars(
                select(Chunk.sha256).where(Chunk.sha256.in_(hashes[i:i + 500])))}
        if known:
            # Claimed before relying on them, as in ``store`` (see garbage.py).
            self.touch(*known)
            for sha, nodes in self.replicas_of(known).items():
                have[sha] = set(nodes)
        out: dict[str, bool | CloudError] = {}
        plan: dict[str, list[str]] = {}  # node id -> chunks to put there
        short: dict[str, int] = {}  # chunk -> replicas it still needs
        writable = self.registry.writable_nodes()
        addresses = {n.node_id: n.address for n in writable}
        for sha in hashes:
            live = {n for n in have[sha] if self.registry.is_online(n)}
            need = target - len(live)
            if need <= 0:
                out[sha] = False
                continue
            others = [n for n in writable if n.node_id not in have[sha]]
            chosen = rank(sha, others, len(chunks[sha]))[:need]
            short[sha] = need
            for node in chosen:
                plan.setdefault(node.node_id, []).append(sha)
        written: dict[str, list[str]] = {sha: [] for sha in short}
        futures = {
            self.io.submit(self.pool.put_chunks, addresses[node_id],
                           [(sha, chunks[sha]) for sha in shas], upload_id): node_id
            for node_id, shas in plan.items()
        }
        for fut in cf.as_completed(futures):
            node_id = futures[fut]
            try:
                reply = fut.result()
            except grpc.RpcError as exc:
                log.warning("upload %s: %d chunks to node %s failed: %s", upload_id,
                            len(plan[node_id]), node_id, exc.details())
                continue
            for result in reply.results:
                if result.success and result.sha256 in written:
                    written[result.sha256].append(node_id)
                    self.registry.note_used(node_id, len(chunks[result.sha256]))
        full = {sha for sha in hashes if sha not in short or len(written[sha]) >= short[sha]}
        self._record_many(chunks, user_id, written, known, full)
        for sha, need in short.items():
            if len(written[sha]) >= need:
                out[sha] = True
                continue
            try:  # what the batch could not place: one at a time, with failover
                self.store(sha, chunks[sha], user_id, upload_id)
                out[sha] = True
            except CloudError as exc:
                out[sha] = exc
        return out

    def _record_many(self, chunks: dict[str, bytes], user_id: str,
                     written: dict[str, list[str]], known: set[str], owned: set[str]
                     ) -> None:
        """Chunk, replica and ownership rows of a batch, in one transaction; only the
        ``owned`` chunks (fully stored) become the caller's."""
        insert = self._insert()
        now = utcnow()
        hashes = list(chunks)
        new_rows = [{"sha256": h, "size": len(chunks[h]), "created_at": now,
                     "last_used_at": now} for h in hashes if h not in known]
        replica_rows = [{"chunk_sha256": h, "node_id": n, "created_at": now}
                        for h, nodes in written.items() for n in nodes]
        owner_rows = [{"user_id": user_id, "chunk_sha256": h, "created_at": now}
                      for h in hashes if h in owned] if user_id else []
        # One statement each, executed over all rows (executemany): compiled once and
        # cached, where a multi-row VALUES statement would be compiled for every batch size.
        with self.db.write() as s:
            if new_rows:
                s.execute(insert(Chunk).on_conflict_do_update(
                    index_elements=["sha256"], set_={"last_used_at": now}), new_rows)
            if replica_rows:
                s.execute(insert(Replica).on_conflict_do_nothing(), replica_rows)
            if owner_rows:
                s.execute(insert(UserChunk).on_conflict_do_nothing(), owner_rows)

    def record_copies(self, copies: list[tuple[str, int, list[str]]], user_id: str,
                      owned: set[str]) -> None:
        """Copies clients wrote themselves, on the nodes' receipts (``direct_writes``):
        (hash, size, node ids) each, in one transaction, claimed now; the ``owned`` ones
        become ``user_id``'s to reference."""
        if not copies:
            return
        insert = self._insert()
        now = utcnow()
        sizes = {sha: size for sha, size, _ in copies}
        chunk_rows = [{"sha256": sha, "size": size, "created_at": now, "last_used_at": now}
                      for sha, size in sizes.items()]
        replica_rows = [{"chunk_sha256": sha, "node_id": n, "created_at": now}
                        for sha, _, nodes in copies for n in dict.fromkeys(nodes)]
        owner_rows = [{"user_id": user_id, "chunk_sha256": sha, "created_at": now}
                      for sha in sizes if sha in owned]
        with self.db.write() as s:
            s.execute(insert(Chunk).on_conflict_do_update(
                index_elements=["sha256"], set_={"last_used_at": now}), chunk_rows)
            if replica_rows:
                s.execute(insert(Replica).on_conflict_do_nothing(), replica_rows)
            if owner_rows:
                s.execute(insert(UserChunk).on_conflict_do_nothing(), owner_rows)
        for _sha, size, nodes in copies:
            for node_id in nodes:
                self.registry.note_used(node_id, size)

    def _record(self, sha256: str, size: int, user_id: str, node_ids: Iterable[str]) -> None:
        insert = self._insert()
        now = utcnow()
        with self.db.write() as s:
            s.execute(insert(Chunk).values(sha256=sha256, size=size, created_at=now,
                                           last_used_at=now)
                      .on_conflict_do_update(index_elements=["sha256"],
                                             set_={"last_used_at": now}))
            for node_id in node_ids:
                s.execute(insert(Replica).values(chunk_sha256=sha256, node_id=node_id,
                                                 created_at=now)
                          .on_conflict_do_nothing())
            if user_id:
                s.execute(insert(UserChunk).values(user_id=user_id, chunk_sha256=sha256,
                                                   created_at=now)
                          .on_conflict_do_nothing())

    def touch(self, *hashes: str) -> None:
        """Mark existing chunks as in use now (never creates one)."""
        wanted = list(dict.fromkeys(hashes))
        with self.db.write() as s:
            for i in range(0, len(wanted), 500):
                s.execute(update(Chunk).where(Chunk.sha256.in_(wanted[i:i + 500]))
                          .values(last_used_at=utcnow()))

    # --- live copies ----------------------------------------------------------------

    def live_replicas(self, hashes: Iterable[str]) -> dict[str, list[str]]:
        """Per chunk, the nodes holding a recorded replica that are online now."""
        return {sha: [n for n in nodes if self.registry.is_online(n)]
                for sha, nodes in self.replicas_of(hashes).items()}

    def fully_replicated(self, hashes: Iterable[str]) -> set[str]:
        """The chunks with as many live copies as the replication target: the only ones a
        client may reference instead of sending their bytes."""
        target = self.replication_target()
        return {sha for sha, live in self.live_replicas(hashes).items() if len(live) >= target}

    def top_up(self, sha256: str, upload_id: str = "") -> bool:
        """Bring a chunk short of live copies back to the target before a file relies on
        it, copying it from a live copy through the gateway: False when no live copy
        exists (the bytes must come from the client again). Raises what ``store`` raises
        when the cluster cannot place enough copies, or ChunkUnreadable."""
        live = self.live_replicas([sha256])[sha256]
        if len(live) >= self.replication_target():
            return True
        if not live:
            return False
        data = self.read(sha256, live)
        self.store(sha256, data, "", upload_id)  # adds copies only; ownership unchanged
        log.info("upload %s: chunk %s copied up to its replication target", upload_id,
                 sha256[:12])
        return True

    # --- reads ----------------------------------------------------------------------

    def replicas_of(self, hashes: Iterable[str]) -> dict[str, list[str]]:
        wanted = list(set(hashes))
        found: dict[str, list[str]] = {h: [] for h in wanted}
        with self.db.read() as s:
            for i in range(0, len(wanted), 500):
                part = wanted[i:i + 500]
                for sha, node_id in s.execute(
                        select(Replica.chunk_sha256, Replica.node_id)
                        .where(Replica.chunk_sha256.in_(part))):
                    found[sha].append(node_id)
        return found

    def read_many(self, chunks: list[tuple[str, int]], replicas: dict[str, list[str]]
                  ) -> dict[str, bytes | CloudError]:
        """Whole chunks (hash, size) by hash: a ``GetChunks`` call per node and per
        ``READ_BATCH_BYTES`` for the chunks it is picked for (one online replica each, at
        random), the calls to different nodes at once. What a batch does not bring back
        intact (refused, corrupt, a node that went away or predates GetChunks) is read on
        its own with ``read`` and its failover and repair; a chunk no replica gives up maps
        to the error."""
        by_node: dict[str, list[list[tuple[str, int]]]] = {}
        for sha, size in dict(chunks).items():
            online = [n for n in replicas.get(sha, []) if self.registry.is_online(n)]
            if not online:
                continue
            batches = by_node.setdefault(random.choice(online), [[]])
            if batches[-1] and (sum(n for _, n in batches[-1]) + size > READ_BATCH_BYTES
                                or len(batches[-1]) >= READ_BATCH_CHUNKS):
                batches.append([])
            batches[-1].append((sha, size))
        calls = [self.io.submit(self._read_batch, node_id, [sha for sha, _ in batch])
                 for node_id, batches in by_node.items() for batch in batches]
        got: dict[str, bytes | CloudError] = {}
        for call in calls:
            got.update(call.result())

        def one(sha: str) -> tuple[str, bytes | CloudError]:
            try:
                return sha, self.read(sha, replicas.get(sha, []))
            except CloudError as exc:
                return sha, exc

        # the rest at once: a replica that stopped answering costs each of them a timeout
        missing = list(dict.fromkeys(sha for sha, _ in chunks if sha not in got))
        got.update(self.io.map(one, missing))
        return got

    def _read_batch(self, node_id: str, hashes: list[str]) -> dict[str, bytes | CloudError]:
        node = self.registry.node(node_id)
        if node is None:
            return {}
        try:
            reply = self.pool.get_chunks(node.address, hashes)
        except grpc.RpcError as exc:
            log.info("GetChunks of %d chunks on %s: %s (read one by one)", len(hashes),
                     node.name, exc.code().name)
            return {}
        return {r.sha256: r.data for r in reply.results
                if not r.error_code and hashlib.sha256(r.data).hexdigest() == r.sha256}

    def read(self, sha256: str, node_ids: list[str]) -> bytes:
        """The chunk's bytes from the first replica that returns them intact."""
        online = [n for n in node_ids if self.registry.is_online(n)]
        offline = [n for n in node_ids if n not in online]
        random.shuffle(online)  # spread reads over replicas
        bad: list[str] = []
        failures: list[str] = []
        for node_id in online + offline:
            node = self.registry.node(node_id)
            if node is None:
                continue
            try:
                data = self.pool.get_chunk(node.address, sha256)
            except grpc.RpcError as exc:
                failures.append(f"{node.name}: {exc.code().name}")
                if exc.code() in (grpc.StatusCode.DATA_LOSS, grpc.StatusCode.NOT_FOUND):
                    bad.append(node_id)
                continue
            if hashlib.sha256(data).hexdigest() != sha256:
                failures.append(f"{node.name}: bad data")
                bad.append(node_id)
                continue
            if bad:
                self.io.submit(self._repair, sha256, data, bad)
            return data
        # Every replica refused at once: channels to nodes that just came back may still be
        # in reconnect back-off. One more round that waits briefly for them: only for nodes
        # the registry has online, so a file whose copies are all on nodes that are gone
        # fails at once instead of costing every reader a wait per chunk and per copy.
        for node_id in [n for n in online if n not in bad]:
            node = self.registry.node(node_id)
            if node is None:
                continue
            try:
                data = self.pool.get_chunk(node.address, sha256,
                                           wait_s=min(3.0, self.settings.node_call_timeout_s))
            except grpc.RpcError:
                continue
            if hashlib.sha256(data).hexdigest() == sha256:
                if bad:
                    self.io.submit(self._repair, sha256, data, bad)
                return data
        raise ChunkUnreadable(
            f"chunk {sha256[:12]} unreadable on every replica ({', '.join(failures) or 'none'})"
        )

    def _repair(self, sha256: str, data: bytes, node_ids: list[str]) -> None:
        for node_id in node_ids:
            node = self.registry.node(node_id)
            if node is None:
                continue
            try:
                self.pool.put_chunk(node.address, sha256, data, "repair")
                self.events.emit("replica_repaired", f"rewrote a bad replica of chunk "
                                 f"{sha256[:12]} on {node.name}", None, chunk=sha256,
                                 node=node.name)
            except grpc.RpcError as exc:
                log.warning("repair of %s on %s failed: %s", sha256[:12], node.name,
                            exc.details())

    def close(self) -> None:
        self.io.shutdown(wait=False, cancel_futures=True)
