"""The ``ChunkService`` servicer: the node's chunk store on the wire.

Handlers stay thin: check the cluster secret, call the store, build the reply. Errors are
raised as typed ``cloudgrpc_proto.errors`` classes (or the node's ``ChunkCorrupt``, which is
DATA_LOSS) and turned into a gRPC status in one place, the ``_edge`` decorator, so every RPC
maps them the same way and unexpected exceptions are logged once and reported as INTERNAL.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import hashlib
import hmac
import inspect
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc
from cloudgrpc_proto import errors, read_tokens, write_grants

from .chunk_store import ChunkCorrupt, ChunkStore, check_sha256
from .used_grants import UsedGrants

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
LIST_BATCH = 1000
FETCH_TIMEOUT_S = 60.0
BATCH_WRITERS = 8  # chunks of one PutChunks (or GetChunks) call written (read) at once
GET_CHUNKS_MAX = 1000
GET_CHUNKS_BYTES = 16 * 1024 * 1024  # a GetChunks reply stops taking data past this

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]

# Servers refuse SO_REUSEPORT: otherwise a second node started on a taken port would silently
# share it with the first and requests would land on either.
SERVER_OPTIONS = [*CHANNEL_OPTIONS, ("grpc.so_reuseport", 0)]

F = TypeVar("F", bound=Callable[..., Any])

# host:port for FetchChunkFrom: a DNS name or IPv4 address, or a bracketed IPv6 address.
_PEER_ADDRESS_RE = re.compile(
    r"(?:(?P<name>[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}))|\[(?P<v6>[0-9A-Fa-f:.]{2,45})\])"
    r":(?P<port>[0-9]{1,5})"
)


def _edge(method: F) -> F:
    """Map typed errors to a gRPC status exactly once, for unary and streaming handlers."""

    def fail(context: grpc.ServicerContext, request: Any, name: str, exc: Exception) -> None:
        upload = getattr(request, "upload_id", "")
        where = f"{name} (upload {upload})" if upload else name
        if isinstance(exc, errors.CloudError):
            level = logging.ERROR if isinstance(exc, ChunkCorrupt) else logging.WARNING
            log.log(level, "%s refused: %s: %s", where, type(exc).__name__, exc.message)
            errors.abort_with(context, exc)
        log.exception("%s failed unexpectedly", where)
        errors.abort_with(context, errors.InternalError(f"node error in {name}: {exc}"))

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream(self: ChunkService, request: Any, context: grpc.ServicerContext) -> Iterator:
            try:
                yield from method(self, request, context)
            except Exception as exc:  # the edge maps everything
                fail(context, request, method.__name__, exc)

        return stream  # type: ignore[return-value]

    @functools.wraps(method)
    def unary(self: ChunkService, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as exc:  # the edge maps everything
            fail(context, request, method.__name__, exc)

    return unary  # type: ignore[return-value]


class ChunkService(pb_grpc.ChunkServiceServicer):
    """Serves one ``ChunkStore``; only callers holding the cluster secret get in, except
    ``GetChunk`` with a read token the gateway signed for that chunk.

    A node without a secret refuses every call unless it was started with the explicit
    insecure opt-in (``insecure=True``): an empty secret never means "open" by accident.
    """

    def __init__(
        self,
        store: ChunkStore,
        cluster_secret: str = "",
        *,
        insecure: bool = False,
        peer_credentials: grpc.ChannelCredentials | None = None,
        fetch_timeout_s: float = FETCH_TIMEOUT_S,
        node_id: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.store = store
        self._node_id = node_id  # this node's id at the gateway, once registered
        self._used_grants = UsedGrants()
        self._secret = cluster_secret.encode()
        self._open = insecure and not cluster_secret
        self._peer_credentials = peer_credentials
        self._fetch_timeout_s = fetch_timeout_s
        self._batch_io = cf.ThreadPoolExecutor(max_workers=BATCH_WRITERS,
                                               thread_name_prefix="put-chunks")

    def _authorize(self, presented: str) -> None:
        """Constant-time secret check; only the explicit insecure opt-in lets anyone in."""
        if self._open:
            return
        if not self._secret or not hmac.compare_digest(presented.encode(), self._secret):
            raise errors.PermissionDenied("wrong cluster secret")

    def _authorize_read(self, request: pb.GetChunkRequest) -> None:
        """The cluster secret, or a read token the gateway signed for this very chunk.

        Clients read chunks directly with such a token (scoped to one chunk, expiring):
        checked here with the shared secret alone, no database and no call out. An empty
        token is never a pass: without one the caller must hold the secret itself.
        """
        if self._open or not request.read_token:
            self._authorize(request.cluster_secret)
            return
        if not read_tokens.valid(self._secret.decode(), request.read_token, request.sha256):
            raise errors.PermissionDenied("read token is invalid, expired or not for this chunk")

    def _put_granted(self, request: pb.PutChunkRequest) -> pb.PutChunkResponse:
        """A client's direct write: the gateway's write token for this chunk, its size and
        this node, used once; answered with the receipt the client hands the gateway."""
        node_id = self._node_id() or ""
        data = request.data
        grant = write_grants.check_token(self._secret.decode(), request.write_token,
                                         request.sha256, len(data), node_id)
        if grant is None:
            raise errors.PermissionDenied(
                "write token is invalid, expired, or not for this chunk, size or node")
        if not self._used_grants.claim(grant.mac, grant.expires):
            raise errors.PermissionDenied("write token already used (or too many in use)")
        try:
            result = self.store.put(request.sha256, data)
        except BaseException:
            self._used_grants.give_back(grant.mac)
            raise
        log.debug("put chunk %s (%d bytes, direct write, upload %s, already present %s)",
                  request.sha256, len(data), request.upload_id or "-", result.already_present)
        return pb.PutChunkResponse(
            success=True, message="stored", used_bytes=result.used_bytes,
            already_present=result.already_present, node_id=node_id,
            receipt=write_grants.issue_receipt(self._secret.decode(), request.sha256,
                                               len(data), node_id, grant))

    @_edge
    def PutChunk(self, request: pb.PutChunkRequest, context: grpc.ServicerContext):  # noqa: N802
        if request.write_token and not self._open:
            return self._put_granted(request)
        self._authorize(request.cluster_secret)
        data = request.data  # each access copies out of the message: take it once
        result = self.store.put(request.sha256, data)
        log.debug(
            "put chunk %s (%d bytes, upload %s, already present %s)",
            request.sha256,
            len(data),
            request.upload_id or "-",
            result.already_present,
        )
        return pb.PutChunkResponse(
            success=True,
            message="already present" if result.already_present else "stored",
            used_bytes=result.used_bytes,
            already_present=result.already_present,
        )

    @_edge
    def PutChunks(  # noqa: N802
        self, request: pb.PutChunksRequest, context: grpc.ServicerContext
    ) -> pb.PutChunksResponse:
        """Store many chunks; each one stands alone, so one refusal fails only that chunk.

        Small files arrive this way: one call per batch instead of one per chunk is what
        lets a folder of small files upload at disk speed rather than round-trip speed.
        """
        self._authorize(request.cluster_secret)

        def put(item: pb.PutChunkRequest) -> pb.PutChunkResult:
            try:
                result = self.store.put(item.sha256, item.data)
            except errors.CloudError as exc:
                log.warning("put chunk %s (upload %s) refused: %s", item.sha256[:12],
                            request.upload_id or "-", exc.message)
                return pb.PutChunkResult(sha256=item.sha256, success=False,
                                         error_code=exc.code.name,
                                         message=errors.wire_details(exc))
            return pb.PutChunkResult(sha256=item.sha256, success=True,
                                     already_present=result.already_present)

        # Each chunk waits for its own fsync; several in flight let the file system
        # commit them together.
        results = list(self._batch_io.map(put, request.chunks))
        stored = sum(1 for r in results if r.success and not r.already_present)
        log.debug("put %d chunks (%d new, upload %s)", len(request.chunks), stored,
                  request.upload_id or "-")
        return pb.PutChunksResponse(results=results, used_bytes=self.store.used_bytes)

    @_edge
    def GetChunks(  # noqa: N802
        self, request: pb.GetChunksRequest, context: grpc.ServicerContext
    ) -> pb.GetChunksResponse:
        """Read many whole chunks; each is verified and answered on its own.

        The gateway serves a folder of small files this way: a call per chunk cost more
        in round trips than the reads themselves. Past ``GET_CHUNKS_BYTES`` the rest is
        answered RESOURCE_EXHAUSTED (not read), for the caller to ask again.
        """
        self._authorize(request.cluster_secret)
        if len(request.sha256) > GET_CHUNKS_MAX:
            raise errors.InvalidArgument(f"at most {GET_CHUNKS_MAX} chunks per call")

        def get(sha: str) -> pb.GetChunkResult:
            try:
                data, _ = self.store.read(sha)
            except errors.CloudError as exc:
                return pb.GetChunkResult(sha256=sha, error_code=exc.code.name,
                                         message=errors.wire_details(exc))
            return pb.GetChunkResult(sha256=sha, data=data)

        wanted = list(request.sha256)
        results: list[pb.GetChunkResult] = []
        total = 0
        # a window of reads at a time, so a reply that is full stops the reading too
        for start in range(0, len(wanted), BATCH_WRITERS):
            window = wanted[start:start + BATCH_WRITERS]
            if total > GET_CHUNKS_BYTES:
                results.extend(pb.GetChunkResult(sha256=sha, error_code="RESOURCE_EXHAUSTED",
                                                 message="reply full: ask again")
                               for sha in window)
                continue
            for result in self._batch_io.map(get, window):
                total += len(result.data)
                results.append(result)
        return pb.GetChunksResponse(results=results)

    @_edge
    def GetChunk(self, request: pb.GetChunkRequest, context: grpc.ServicerContext):  # noqa: N802
        self._authorize_read(request)
        data, size = self.store.read(request.sha256, request.offset, request.length)
        return pb.GetChunkResponse(data=data, chunk_size=size)

    @_edge
    def DeleteChunks(  # noqa: N802
        self, request: pb.DeleteChunksRequest, context: grpc.ServicerContext
    ):
        self._authorize(request.cluster_secret)
        deleted = self.store.delete(request.sha256, request.skip_modified_within_s)
        log.info("deleted %d of %d requested chunks", deleted, len(request.sha256))
        return pb.DeleteChunksResponse(deleted=deleted, used_bytes=self.store.used_bytes)

    @_edge
    def HasChunks(self, request: pb.HasChunksRequest, context: grpc.ServicerContext):  # noqa: N802
        self._authorize(request.cluster_secret)
        return pb.HasChunksResponse(present=self.store.has(request.sha256))

    @_edge
    def ListChunks(  # noqa: N802
        self, request: pb.ListChunksRequest, context: grpc.ServicerContext
    ):
        self._authorize(request.cluster_secret)
        shas: list[str] = []
        sizes: list[int] = []
        modified: list[int] = []
        for sha, size, mtime in self.store.iter_chunk_entries():
            shas.append(sha)
            sizes.append(size)
            modified.append(mtime)
            if len(shas) >= LIST_BATCH:
                yield pb.ListChunksResponse(sha256=shas, sizes=sizes, modified_unix=modified)
                shas, sizes, modified = [], [], []
        if shas:
            yield pb.ListChunksResponse(sha256=shas, sizes=sizes, modified_unix=modified)

    @_edge
    def VerifyChunk(  # noqa: N802
        self, request: pb.VerifyChunkRequest, context: grpc.ServicerContext
    ):
        self._authorize(request.cluster_secret)
        result = self.store.verify(request.sha256)
        if result.present and not result.valid:
            log.error("scrub: chunk %s is corrupt", request.sha256)
            if request.quarantine_if_corrupt and self.store.quarantine(request.sha256):
                log.error("chunk %s quarantined at the gateway's request (fsck --repair)",
                          request.sha256)
        return pb.VerifyChunkResponse(present=result.present, valid=result.valid)

    @_edge
    def FetchChunkFrom(  # noqa: N802
        self, request: pb.FetchChunkFromRequest, context: grpc.ServicerContext
    ):
        self._authorize(request.cluster_secret)
        sha = check_sha256(request.sha256)
        source = check_peer_address(request.source_address)
        local = self.store.verify(sha)
        if local.present and local.valid:
            return pb.PutChunkResponse(
                success=True,
                message="already present",
                used_bytes=self.store.used_bytes,
                already_present=True,
            )
        data = self._fetch(sha, source, request.cluster_secret)
        result = self.store.put(sha, data)
        log.info("repair: fetched chunk %s (%d bytes) from %s", sha, len(data), source)
        return pb.PutChunkResponse(
            success=True,
            message="fetched from the source node",
            used_bytes=result.used_bytes,
            already_present=result.already_present,
        )

    def _fetch(self, sha: str, source: str, secret: str) -> bytes:
        """Pull a whole chunk from a peer node and prove it is the right content.

        The caller learns only the kind of failure, never the peer's own words or the
        connection error: this call must not tell anyone what answers at an address.
        """
        if self._peer_credentials is not None:
            channel = grpc.secure_channel(source, self._peer_credentials, options=CHANNEL_OPTIONS)
        else:
            channel = grpc.insecure_channel(source, options=CHANNEL_OPTIONS)
        with channel:
            stub = pb_grpc.ChunkServiceStub(channel)
            try:
                reply = stub.GetChunk(
                    pb.GetChunkRequest(sha256=sha, cluster_secret=secret),
                    timeout=self._fetch_timeout_s,
                )
            except grpc.RpcError as exc:
                code = exc.code()
                log.warning("repair: fetch of %s from %s failed: %s", sha[:12], source,
                            code.name if code else "error")
                if code == grpc.StatusCode.DATA_LOSS:
                    raise ChunkCorrupt("the source node holds a corrupt copy") from None
                if code == grpc.StatusCode.NOT_FOUND:
                    raise errors.NotFound("the source node does not hold this chunk") from None
                raise errors.Unavailable("could not fetch the chunk from the source node") from None
        data = reply.data
        if hashlib.sha256(data).hexdigest() != sha:
            log.warning("repair: %s sent data that does not match %s", source, sha[:12])
            raise ChunkCorrupt("the source node sent data that does not match the chunk")
        return data


def check_peer_address(address: str) -> str:
    """``address`` if it is a plain ``host:port`` (or ``[v6]:port``), else InvalidArgument.

    FetchChunkFrom dials it: no schemes, paths, unix sockets or resolver tricks, and a
    real port, so the call is a chunk copy between nodes and nothing else.
    """
    match = _PEER_ADDRESS_RE.fullmatch(address or "")
    if match is None or not 0 < int(match.group("port")) <= 65535:
        raise errors.InvalidArgument("source_address must be host:port")
    return address


def add_to_server(service: ChunkService, server: grpc.Server) -> None:
    """Register the servicer (kept here so app and tests wire it the same way)."""
    pb_grpc.add_ChunkServiceServicer_to_server(service, server)


SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["ChunkService"].full_name
