"""Writing chunks straight to the storage nodes, under the gateway's write grants.

An upload with a chunk plan (every chunk hashed first) asks the gateway for grants
(``PrepareChunkWrites``: quota held, nodes chosen, a token per chunk and node), writes each
chunk to its nodes in parallel (``ChunkService.PutChunk`` with the token) and hands the
nodes' receipts to the gateway in the upload stream as a ``ChunkRef``. The gateway's CPU
then carries metadata only, as in GFS, HDFS and SeaweedFS.

Whatever fails here falls back to the gateway, chunk by chunk: a gateway without direct
writes (UNIMPLEMENTED or FAILED_PRECONDITION: this client stops asking), a node this client
cannot reach (nodes on a private network; marked down for a while, as for direct reads), a
refused token. The chunk's bytes then go in the same upload stream as data messages.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc

from . import cloud_storage_pb2 as pb
from . import errors
from .direct_reads import NodeReads
from .transfer import ChunkPlanEntry

log = logging.getLogger(__name__)

GRANT_BATCH = 16   # chunks per PrepareChunkWrites at first
MAX_GRANT_BATCH = 64  # the gateway's limit per call; reached when writes are fast enough
IN_FLIGHT = 4      # chunks being written to their nodes at once (memory: this many chunks)
PUT_TIMEOUT_S = 60.0
GRANT_MARGIN_S = 10.0  # a grant with less time left than this is asked for again


def receipt_expiry(receipts: list[pb.ChunkReceipt]) -> float:
    """Unix time the gateway stops taking these receipts (inf for none: a plain ref)."""
    times = [int(r.receipt.split(".")[1]) for r in receipts
             if r.receipt.count(".") == 3 and r.receipt.split(".")[1].isdigit()]
    return float(min(times)) if times else float("inf")


class StopAhead(Exception):
    """Raised by a write-ahead's ``read``: send no more (the file is gone, or its upload
    starts and sends the rest itself)."""


@dataclass
class Written:
    """One chunk's outcome: receipts to reference it with, or None to send its bytes."""

    entry: ChunkPlanEntry
    receipts: list[pb.ChunkReceipt] | None


class NodeWrites:
    """Puts chunks on their granted nodes; shares channels and the down-list with the
    client's direct reads. Thread-safe."""

    def __init__(self, nodes: NodeReads | None = None, workers: int = 16) -> None:
        self.nodes = nodes or NodeReads()
        self._pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="put-direct")
        self.written = 0   # chunks written to their nodes directly
        self.fallbacks = 0  # chunks that went through the gateway instead

    def put(self, grant: pb.ChunkWriteGrant, data: bytes, ca_pem: bytes, upload_id: str
            ) -> list[pb.ChunkReceipt] | None:
        """Write ``data`` to every target of ``grant`` at once: the receipts, or None when
        any target failed (the caller then sends the bytes through the gateway)."""
        targets = list(grant.targets)
        addresses = [t.address for t in targets]
        if not targets or len(self.nodes.usable(addresses)) != len(addresses):
            return None  # a node known to be unreachable: the gateway takes this chunk

        def one(target: pb.ChunkWriteTarget) -> pb.ChunkReceipt | None:
            stub = self.nodes.stub(target.address, ca_pem)
            if stub is None:
                return None
            try:
                reply = stub.PutChunk(pb.PutChunkRequest(
                    sha256=grant.sha256, data=data, write_token=target.write_token,
                    upload_id=upload_id), timeout=PUT_TIMEOUT_S)
            except grpc.RpcError as exc:
                code = exc.code()
                if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    self.nodes.mark_down(target.address, code.name)
                else:
                    log.info("direct write of chunk %s to %s refused: %s %s", grant.sha256[:12],
                             target.address, code.name, exc.details())
                return None
            if not reply.receipt or reply.node_id != target.node_id:
                return None
            return pb.ChunkReceipt(node_id=reply.node_id, receipt=reply.receipt)

        results = list(self._pool.map(one, targets))
        if any(r is None for r in results):
            return None
        return [r for r in results if r is not None]

    def chunks(self, entries: list[ChunkPlanEntry], read: Callable[[ChunkPlanEntry], bytes],
               prepare: Callable[[list[ChunkPlanEntry]], pb.PrepareChunkWritesResponse | None],
               upload_id: str, ready: dict[str, list[pb.ChunkReceipt]] | None = None
               ) -> Iterator[Written]:
        """``entries`` (chunks to send, in file order) written directly where possible,
        yielded in order. ``prepare`` asks the gateway for grants (None: no direct writes,
        the chunks fall back); ``read`` gives a chunk's bytes, or raises ``StopAhead`` to
        send no more (the chunks already on their way are still yielded). At most
        ``IN_FLIGHT`` chunks are read and on their way at once; a grant about to expire is
        asked for again.
        ``ready``: receipts of chunks written ahead (write-behind), used as they are."""
        ready = ready or {}
        todo: deque[ChunkPlanEntry] = deque(entries)
        granted: deque[tuple[ChunkPlanEntry, pb.ChunkWriteGrant | None, bytes, int]] = deque()
        inflight: deque[tuple[ChunkPlanEntry, cf.Future[list[pb.ChunkReceipt] | None] | None]]
        inflight = deque()
        writes: dict[str, cf.Future[list[pb.ChunkReceipt] | None]] = {}  # by hash
        direct = True
        began = time.monotonic()
        done_here = 0  # chunks written under grants so far
        lifetime = 0.0  # seconds a grant lives, from the first reply

        def batch_size() -> int:
            """GRANT_BATCH at first, then as many chunks as this upload writes in half a
            grant's life (at most MAX_GRANT_BATCH): fewer calls (and gateway work) for a
            fast writer, no grant expiring unused for a slow one."""
            elapsed = time.monotonic() - began
            if not done_here or not lifetime or elapsed <= 0:
                return GRANT_BATCH
            fits = int(done_here / elapsed * max(lifetime - GRANT_MARGIN_S, 0) / 2)
            return max(GRANT_BATCH, min(MAX_GRANT_BATCH, fits))

        def grant_more() -> None:
            nonlocal direct, lifetime
            batch: list[ChunkPlanEntry] = []
            size = batch_size()
            while todo and len(batch) < size and todo[0].sha256 not in ready:
                batch.append(todo.popleft())
            reply = prepare(batch) if direct else None
            if reply is None:
                granted.extend((entry, None, b"", 0) for entry in batch)
                return
            lifetime = lifetime or max(float(reply.expires_at) - time.time(), 0.0)
            for entry, grant in zip(batch, reply.grants, strict=True):
                if grant.sha256 != entry.sha256 or grant.size != entry.size:
                    raise errors.InternalError("the gateway granted other chunks than asked")
                granted.append((entry, grant, bytes(reply.node_ca_pem), int(reply.expires_at)))

        while todo or granted or inflight:
            while len(inflight) < IN_FLIGHT and (granted or todo):
                if not granted and todo[0].sha256 in ready:
                    entry = todo.popleft()
                    ahead: cf.Future[list[pb.ChunkReceipt] | None] = cf.Future()
                    ahead.set_result(ready[entry.sha256])
                    inflight.append((entry, ahead))
                    continue
                if not granted:
                    grant_more()
                    continue
                entry, grant, ca_pem, expires = granted.popleft()
                if grant is None:
                    inflight.append((entry, None))
                elif grant.already_held:
                    held: cf.Future[list[pb.ChunkReceipt] | None] = cf.Future()
                    held.set_result([])
                    inflight.append((entry, held))
                elif time.time() > expires - GRANT_MARGIN_S:
                    # too little time left to write and hand in the receipt: ask again
                    todo.extendleft(reversed([entry, *(g[0] for g in granted)]))
                    granted.clear()
                elif entry.sha256 in writes:
                    # the same content again (zeros, repeated blocks): one write, and its
                    # receipts serve every copy (a token is honoured once)
                    inflight.append((entry, writes[entry.sha256]))
                else:
                    try:
                        data = read(entry)
                    except StopAhead:
                        # no more sends; the ones on their way are waited for below, so
                        # their receipts are not lost (a token is honoured only once)
                        todo.clear()
                        granted.clear()
                        break
                    writes[entry.sha256] = self._pool.submit(
                        self.put, grant, data, ca_pem, upload_id)
                    inflight.append((entry, writes[entry.sha256]))
            if not inflight:
                break
            entry, future = inflight.popleft()
            receipts = future.result() if future is not None else None
            if receipts is None:
                self.fallbacks += 1
                if future is not None:
                    # a node failed us: the rest of this upload goes through the gateway
                    # (its grants would only hold quota until the upload ends)
                    direct = False
            elif receipts:
                self.written += 1
                done_here += 1
            yield Written(entry, receipts)

    def ahead(self, entries: list[ChunkPlanEntry], read: Callable[[ChunkPlanEntry], bytes],
              prepare: Callable[[list[ChunkPlanEntry]], pb.PrepareChunkWritesResponse | None],
              upload_id: str) -> dict[str, list[pb.ChunkReceipt]]:
        """Write whole chunks, hashed already, before their upload starts (write-behind):
        the receipts of those that reached all their nodes (an empty list: the gateway
        holds the chunk already), by hash. What failed is simply missing. ``read`` gives
        a chunk's bytes as its turn comes, so only ``IN_FLIGHT`` of them are held at once
        however many one grant call covers; it may raise ``StopAhead`` to end early (what
        was written by then, the sends on their way included, is returned). A chunk
        changed since it was hashed is refused by its nodes (they check every hash) and is
        missing too."""
        done: dict[str, list[pb.ChunkReceipt]] = {}
        for written in self.chunks(entries, read, prepare, upload_id):
            if written.receipts is not None:
                done[written.entry.sha256] = written.receipts
        return done

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
