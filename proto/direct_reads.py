"""Reading chunks straight from the storage nodes, with the gateway's read tokens.

The gateway's ``GetFileChunks(with_sources=True)`` says where each chunk of a file lives
and signs a read token per chunk; ``NodeReads.fetch`` then asks a node for the chunk
(``ChunkService.GetChunk`` with the token) and checks the bytes against the chunk's
SHA-256 itself, so the gateway's CPU is not in the data path (JuiceFS and SeaweedFS
clients read the same way). Whatever fails here — a node this client cannot reach (nodes
on a private network), a refused or expired token, a replica that lies — makes
``fetch`` return None and the caller reads through the gateway instead. A node that
cannot be reached is not tried again for ``down_for`` seconds, so a client outside the
nodes' network pays the connect timeout once, not per chunk.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import grpc

from . import cloud_storage_pb2 as pb
from . import cloud_storage_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

_OPTIONS = [
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),  # direct writes send chunks
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]

IN_FLIGHT = 4  # chunks a whole-file read fetches at once (4 MiB each: 16 MiB in memory)
CONNECT_TIMEOUT_S = 2.0
CALL_TIMEOUT_S = 30.0
DOWN_FOR_S = 30.0


class NodeReads:
    """Cached channels to nodes, the nodes found unreachable, and verified chunk fetches.

    Thread-safe: several read-ahead fetches run at once.
    """

    def __init__(self, connect_timeout: float = CONNECT_TIMEOUT_S,
                 call_timeout: float = CALL_TIMEOUT_S, down_for: float = DOWN_FOR_S) -> None:
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        self.down_for = down_for
        self._lock = threading.Lock()
        self._stubs: dict[tuple[str, bytes], tuple[grpc.Channel, pb_grpc.ChunkServiceStub]] = {}
        self._connecting: dict[tuple[str, bytes], threading.Lock] = {}
        self._down: dict[str, float] = {}  # address -> monotonic time it may be tried again
        self.fetched = 0  # chunks read from a node
        self.failed = 0  # attempts that fell through to the next replica or the gateway

    def stub(self, address: str, ca_pem: bytes) -> pb_grpc.ChunkServiceStub | None:
        """A ready stub for ``address``, or None when it cannot be reached (marked down)."""
        key = (address, ca_pem)
        with self._lock:
            entry = self._stubs.get(key)
            connecting = self._connecting.setdefault(key, threading.Lock())
        if entry is not None:
            return entry[1]
        # One thread connects, the others wait for it: a second channel to the same
        # address waiting for readiness at the same time sees it only at grpc's next
        # connectivity poll, 200 ms later (the first parallel read-ahead stalled on it).
        with connecting:
            with self._lock:
                entry = self._stubs.get(key)
            if entry is not None:
                return entry[1]
            return self._connect(key, address, ca_pem)

    def _connect(self, key: tuple[str, bytes], address: str, ca_pem: bytes
                 ) -> pb_grpc.ChunkServiceStub | None:
        if ca_pem:
            channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(ca_pem),
                                          options=_OPTIONS)
        else:
            channel = grpc.insecure_channel(address, options=_OPTIONS)
        try:
            grpc.channel_ready_future(channel).result(timeout=self.connect_timeout)
        except grpc.FutureTimeoutError:
            channel.close()
            self.mark_down(address, "not reachable")
            return None
        stub = pb_grpc.ChunkServiceStub(channel)
        with self._lock:
            self._stubs[key] = (channel, stub)
        return stub

    def mark_down(self, address: str, why: str) -> None:
        with self._lock:
            self._down[address] = time.monotonic() + self.down_for
            entry = None
            for key in [k for k in self._stubs if k[0] == address]:
                entry = self._stubs.pop(key)
        if entry is not None:
            entry[0].close()
        log.info("storage node %s: %s; reading through the gateway for %.0f s",
                 address, why, self.down_for)

    def usable(self, addresses: list[str]) -> list[str]:
        """``addresses`` minus the nodes marked down."""
        now = time.monotonic()
        with self._lock:
            return [a for a in addresses if self._down.get(a, 0.0) <= now]

    def fetch(self, sha256: str, size: int, addresses: list[str], token: str,
              ca_pem: bytes = b"") -> bytes | None:
        """Chunk ``sha256`` (``size`` bytes) from one of ``addresses``, verified; else None.

        Replicas are tried starting at one picked by the hash, so a sequential read
        spreads its chunks over the nodes that hold them.
        """
        usable = self.usable(addresses)
        if not usable:
            return None
        first = int(sha256[:8], 16) % len(usable)
        for address in usable[first:] + usable[:first]:
            stub = self.stub(address, ca_pem)
            if stub is None:
                self.failed += 1
                continue
            try:
                reply = stub.GetChunk(pb.GetChunkRequest(sha256=sha256, read_token=token),
                                      timeout=self.call_timeout)
            except grpc.RpcError as exc:
                self.failed += 1
                code = exc.code()
                if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    self.mark_down(address, code.name)
                else:
                    log.debug("chunk %s from %s: %s", sha256[:12], address, code.name)
                continue
            data = reply.data
            if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
                self.failed += 1
                log.warning("chunk %s from node %s does not match its hash", sha256[:12],
                            address)
                continue
            self.fetched += 1
            return data
        return None

    def close(self) -> None:
        with self._lock:
            entries = list(self._stubs.values())
            self._stubs.clear()
        for channel, _ in entries:
            channel.close()


def read_in_order(reads: NodeReads, plan: pb.GetFileChunksResponse, in_flight: int = IN_FLIGHT
                  ) -> Iterator[tuple[int, pb.ChunkRef, bytes | None]]:
    """Every chunk of a read plan in file order, ``in_flight`` fetched at once from the
    nodes: (offset, chunk, verified bytes), or None as the bytes of a chunk no node gave
    (the caller reads that one through the gateway). At most ``in_flight`` chunks are
    held, so memory stays bounded whatever the file's size."""
    sources = {s.sha256: s for s in plan.sources}

    def fetch(chunk: pb.ChunkRef) -> bytes | None:
        source = sources.get(chunk.sha256)
        if source is None:
            return None
        return reads.fetch(chunk.sha256, int(chunk.size), list(source.addresses),
                           source.read_token, plan.node_ca_pem)

    offset = 0
    with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="read-in-order") as pool:
        pending: deque[tuple[int, pb.ChunkRef, Future[bytes | None]]] = deque()
        chunks = iter(plan.chunks)
        try:
            while True:
                while len(pending) < in_flight:
                    chunk = next(chunks, None)
                    if chunk is None:
                        break
                    pending.append((offset, chunk, pool.submit(fetch, chunk)))
                    offset += int(chunk.size)
                if not pending:
                    return
                at, chunk, future = pending.popleft()
                yield at, chunk, future.result()
        finally:
            for _, _, future in pending:
                future.cancel()
