"""Direct writes: clients put chunk bytes on the storage nodes; the gateway places, grants
and checks receipts.

Streaming every byte through the gateway makes its CPU the limit of every upload. As in
GFS, HDFS and SeaweedFS, the gateway here only decides: ``prepare`` holds quota for the
chunks a client is about to write, picks their nodes (the same placement rule as the
gateway's own writes) and signs a write token per chunk and node (``write_grants``). The
client writes each chunk to its nodes itself; each node checks its token and answers a
signed receipt. The receipts come back in the upload's ``ChunkRef``; ``accept`` checks them,
records the copies and the caller's ownership and moves the chunk's quota from the grant
to the upload, after which the reference is taken exactly as any other (the pipeline then
makes sure of the replication target before it commits).

Why the grant's lifetime is short (a third of garbage collection's idle window): a chunk written
under a grant is unknown to the metadata until its receipt is accepted, and the collector
spares unknown chunk files only while they are younger than that window.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, select

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import write_grants
from cloudgrpc_proto.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    QuotaExceeded,
    StorageFull,
    Unavailable,
)

from .accounts import Caller
from .config import Settings
from .models import UploadReservation, User
from .namespace import Namespace
from .placement import NodeView, rank
from .replicated_store import ReplicatedStore
from .reservations import Reservation, Reservations

_GRANTS = uuid.UUID("5b0f6a8e-51c4-4f3e-9d0b-6f1f3b7d2a10")  # names grant reservations
MAX_CHUNKS_PER_CALL = 64
MAX_RECEIPTS = 16
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class DirectWrites:
    def __init__(self, settings: Settings, namespace: Namespace, store: ReplicatedStore,
                 reservations: Reservations) -> None:
        self.settings = settings
        self.namespace = namespace
        self.store = store
        self.reservations = reservations

    @staticmethod
    def grant_id(user_id: str, upload_id: str) -> str:
        """The quota reservation of one upload's grants: one per (user, upload), so the
        upload's end releases what its grants still hold (chunks that fell back to the
        stream, grants asked for again)."""
        return str(uuid.uuid5(_GRANTS, f"{user_id}\n{upload_id}"))

    def release(self, user_id: str, upload_id: str) -> None:
        """The upload ended (committed or not). The chunks it handed in count through the
        file (or as parked chunks) already; what its grants still hold is for chunks never
        handed in, which may be on the nodes all the same (a client that wrote them and
        then fell back, or stopped): that stays counted until garbage collection could
        have taken them (the reservation's expiry), so granting, writing and ending in a
        loop cannot put more than the quota on the nodes. An empty grant goes now."""
        with self.store.db.write() as s:
            s.execute(delete(UploadReservation).where(
                UploadReservation.id == self.grant_id(user_id, upload_id),
                UploadReservation.user_id == user_id, UploadReservation.bytes <= 0))

    @property
    def grant_ttl_s(self) -> int:
        # A third of the idle window: the chunk is written within the grant's life, its
        # receipt arrives before the grant ends, and the gateway records it at most one
        # stream idle period (STREAM_IDLE_S, by default half the window) later.
        idle = max(self.settings.gc_idle_s, self.settings.node_call_timeout_s + 5.0)
        return int(max(5.0, min(float(self.settings.write_grant_ttl_s), idle / 3)))

    def _check_chunk(self, sha256: str, size: int) -> None:
        if not _SHA256.match(sha256):
            raise InvalidArgument("a chunk is named by its lowercase hex SHA-256")
        if not 0 < size <= self.settings.chunk_size:
            raise InvalidArgument(f"a chunk is 1 to {self.settings.chunk_size} bytes")

    def prepare(self, caller: Caller, chunks: list[pb.ChunkRef], upload_id: str = ""
                ) -> pb.PrepareChunkWritesResponse:
        """Grants for ``chunks``: quota held, nodes chosen, a token per chunk and node."""
        if not self.settings.direct_writes or not self.settings.cluster_secret:
            raise FailedPrecondition("this gateway takes chunk bytes only through UploadFile")
        if len(chunks) > MAX_CHUNKS_PER_CALL:
            raise InvalidArgument(f"at most {MAX_CHUNKS_PER_CALL} chunks per call")
        for ref in chunks:
            self._check_chunk(ref.sha256, ref.size)
        hashes = [ref.sha256 for ref in chunks]
        visible = self.namespace.visible_chunks(caller, hashes)
        full = self.store.fully_replicated(visible)
        held = {sha for sha, size in visible.items() if sha in full}
        wanted = list({ref.sha256: ref.size for ref in chunks
                       if ref.sha256 not in held or visible[ref.sha256] != ref.size}.items())
        expires = int(time.time()) + self.grant_ttl_s
        reply = pb.PrepareChunkWritesResponse(expires_at=expires)
        targets: dict[str, list[pb.ChunkWriteTarget]] = {}
        if wanted:
            # Places first, then quota: a refusal changes nothing. The quota check comes
            # before the reservation grows, so a refused call holds nothing; the grow
            # checks again (a race with another upload may refuse part of it there, and
            # that part then stays counted until the reservation expires: never less
            # than what may be on the nodes).
            need = self.store.replication_target()
            nodes = self.store.registry.writable_nodes()
            chosen: dict[str, list[NodeView]] = {}
            for sha, size in wanted:
                chosen[sha] = rank(sha, nodes, size)[:need]
                if len(chosen[sha]) < need:
                    if len(nodes) < need:
                        raise Unavailable(f"only {len(nodes)} storage nodes are online; "
                                          f"a chunk needs {need}")
                    raise StorageFull("the storage nodes are out of space: add a node or "
                                      "free space")
            if sum(size for _, size in wanted) > self._room(caller.user_id):
                raise QuotaExceeded("not enough space: the upload outgrew the free space "
                                    "(other uploads in progress count too)")
            reservation = Reservation(self.grant_id(caller.user_id, upload_id or
                                                    uuid.uuid4().hex), caller.user_id)
            accepted = self.reservations.grow(reservation, wanted, holder_id=caller.user_id)
            if not all(grant.accepted for grant in accepted):
                raise QuotaExceeded("not enough space: the upload outgrew the free space "
                                    "(other uploads in progress count too)")
            for sha, size in wanted:
                targets[sha] = [pb.ChunkWriteTarget(
                    node_id=node.node_id, address=node.address,
                    write_token=write_grants.issue_token(
                        self.settings.cluster_secret, sha, size, node.node_id,
                        reservation.id, expires)) for node in chosen[sha]]
        for ref in chunks:
            reply.grants.append(pb.ChunkWriteGrant(
                sha256=ref.sha256, size=ref.size, already_held=ref.sha256 not in targets,
                targets=targets.get(ref.sha256, [])))
        if targets and self.settings.node_tls_ca:
            with open(self.settings.node_tls_ca, "rb") as handle:
                reply.node_ca_pem = handle.read()
        return reply

    def check(self, ref: pb.ChunkRef) -> Receipted:
        """Check a chunk reference's receipts as it arrives (no database): which grant and
        which nodes. Raises PermissionDenied for a receipt that is forged, expired, or for
        another chunk, size or node."""
        self._check_chunk(ref.sha256, ref.size)
        if len(ref.receipts) > MAX_RECEIPTS:
            raise InvalidArgument(f"at most {MAX_RECEIPTS} receipts per chunk")
        grant_ids: set[str] = set()
        node_ids: list[str] = []
        for receipt in ref.receipts:
            signed = write_grants.check_receipt(self.settings.cluster_secret, receipt.receipt,
                                                ref.sha256, ref.size, receipt.node_id[:64])
            if signed is None:
                raise PermissionDenied(f"a receipt for chunk {ref.sha256[:12]} is not valid "
                                       "(forged, expired or for another chunk or node)")
            grant_ids.add(signed.grant_id)
            if receipt.node_id not in node_ids:
                node_ids.append(receipt.node_id)
        if len(grant_ids) != 1:
            raise InvalidArgument("a chunk's receipts must come from one grant")
        return Receipted(ref.sha256, ref.size, grant_ids.pop(), node_ids)

    def _room(self, user_id: str) -> int:
        """Bytes the user may still reserve: quota less what is stored and held."""
        with self.store.db.read() as s:
            user = s.get(User, user_id)
            if user is None:
                return 0
            return int(user.storage_allocated - user.storage_used
                       - self.reservations.held(s, user_id))

    def accept(self, caller: Caller, chunks: list[Receipted]) -> None:
        """Record the copies of checked chunks (``check``) and make them the caller's, in
        a few statements for the whole batch. Raises PermissionDenied when a grant is not
        the caller's (or has ended), and Unavailable when a chunk has fewer live copies
        than the replication target (recorded, but not the caller's to reference)."""
        if not chunks:
            return
        with self.store.db.write() as s:
            grants = {row.id: row for row in s.scalars(select(UploadReservation).where(
                UploadReservation.id.in_({c.grant_id for c in chunks})))}
            for chunk in chunks:
                row = grants.get(chunk.grant_id)
                if row is None or row.user_id != caller.user_id:
                    raise PermissionDenied(f"the grant for chunk {chunk.sha256[:12]} is not "
                                           "yours or has ended: send the chunk again")
                # the upload's own reservation counts the chunk from here on
                row.bytes = max(int(row.bytes) - chunk.size, 0)
        target = self.store.replication_target()
        live_before = self.store.live_replicas([c.sha256 for c in chunks])
        enough: set[str] = set()
        short: list[tuple[str, int]] = []
        for chunk in chunks:
            live = set(live_before.get(chunk.sha256, [])) | {
                n for n in chunk.node_ids if self.store.registry.is_online(n)}
            if len(live) >= target:
                enough.add(chunk.sha256)
            else:
                short.append((chunk.sha256, len(live)))
        self.store.record_copies([(c.sha256, c.size, c.node_ids) for c in chunks],
                                 caller.user_id, enough)
        if short:
            sha, count = short[0]
            raise Unavailable(f"chunk {sha[:12]} is on {count} live nodes of {target}: "
                              "send it again")


@dataclass(frozen=True)
class Receipted:
    """A chunk a client wrote under a grant, its receipts checked."""

    sha256: str
    size: int
    grant_id: str
    node_ids: list[str]
