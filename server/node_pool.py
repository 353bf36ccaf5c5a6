"""Stubs for talking to storage nodes, one cached channel per node address.

Every call carries a deadline and the cluster secret; callers get typed errors back so a
node that is down or returns bad data can be skipped in favour of another replica.
"""

from __future__ import annotations

import threading

import grpc

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import cloud_storage_pb2_grpc as pb_grpc

from .config import Settings

_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30000),
    ("grpc.keepalive_timeout_ms", 10000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


class NodePool:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._stubs: dict[str, tuple[grpc.Channel, pb_grpc.ChunkServiceStub]] = {}
        self._creds = None
        if settings.node_tls_ca:
            with open(settings.node_tls_ca, "rb") as f:
                self._creds = grpc.ssl_channel_credentials(f.read())

    def stub(self, address: str) -> pb_grpc.ChunkServiceStub:
        with self._lock:
            entry = self._stubs.get(address)
            if entry is None:
                if self._creds is not None:
                    channel = grpc.secure_channel(address, self._creds, options=_OPTIONS)
                else:
                    channel = grpc.insecure_channel(address, options=_OPTIONS)
                entry = (channel, pb_grpc.ChunkServiceStub(channel))
                self._stubs[address] = entry
            return entry[1]

    def put_chunk(self, address: str, sha256: str, data: bytes, upload_id: str = ""
                  ) -> pb.PutChunkResponse:
        return self.stub(address).PutChunk(
            pb.PutChunkRequest(sha256=sha256, data=data, upload_id=upload_id,
                               cluster_secret=self.settings.cluster_secret),
            timeout=self.settings.node_call_timeout_s,
        )

    def put_chunks(self, address: str, chunks: list[tuple[str, bytes]], upload_id: str = ""
                   ) -> pb.PutChunksResponse:
        """Many chunks in one call (small files); the reply has one result per chunk."""
        secret = self.settings.cluster_secret
        return self.stub(address).PutChunks(
            pb.PutChunksRequest(
                chunks=[pb.PutChunkRequest(sha256=sha, data=data) for sha, data in chunks],
                cluster_secret=secret, upload_id=upload_id),
            timeout=self.settings.node_call_timeout_s,
        )

    def get_chunk(self, address: str, sha256: str, offset: int = 0, length: int = 0,
                  wait_s: float = 0.0) -> bytes:
        """A chunk's bytes; with ``wait_s``, wait that long for a reconnecting channel
        instead of failing at once (a node that has just restarted)."""
        reply = self.stub(address).GetChunk(
            pb.GetChunkRequest(sha256=sha256, offset=offset, length=length,
                               cluster_secret=self.settings.cluster_secret),
            timeout=wait_s or self.settings.node_call_timeout_s,
            wait_for_ready=bool(wait_s),
        )
        return reply.data

    def get_chunks(self, address: str, hashes: list[str]) -> pb.GetChunksResponse:
        """Many whole chunks in one call (small files); one result per hash, in order."""
        return self.stub(address).GetChunks(
            pb.GetChunksRequest(sha256=hashes, cluster_secret=self.settings.cluster_secret),
            timeout=self.settings.node_call_timeout_s,
        )

    def forget(self, address: str) -> None:
        """Drop the channel to a node that came back, so no stale reconnect back-off
        makes the first calls fail."""
        with self._lock:
            entry = self._stubs.pop(address, None)
        if entry is not None:
            entry[0].close()

    def delete_chunks(self, address: str, hashes: list[str]) -> pb.DeleteChunksResponse:
        return self.stub(address).DeleteChunks(
            pb.DeleteChunksRequest(sha256=hashes, cluster_secret=self.settings.cluster_secret),
            timeout=self.settings.node_call_timeout_s,
        )

    def fetch_chunk_from(self, address: str, sha256: str, source: str
                         ) -> pb.PutChunkResponse:
        """Have the node at ``address`` copy a chunk from the node at ``source``."""
        return self.stub(address).FetchChunkFrom(
            pb.FetchChunkFromRequest(sha256=sha256, source_address=source,
                                     cluster_secret=self.settings.cluster_secret),
            timeout=self.settings.node_call_timeout_s * 2,
        )

    def verify_chunk(self, address: str, sha256: str, quarantine_if_corrupt: bool = False
                     ) -> pb.VerifyChunkResponse:
        """Have the node re-hash its copy of a chunk (present? intact?); with
        ``quarantine_if_corrupt`` a damaged copy is moved aside on the node."""
        return self.stub(address).VerifyChunk(
            pb.VerifyChunkRequest(sha256=sha256, cluster_secret=self.settings.cluster_secret,
                                  quarantine_if_corrupt=quarantine_if_corrupt),
            timeout=self.settings.node_call_timeout_s,
        )

    def has_chunks(self, address: str, hashes: list[str]) -> set[str]:
        """Of ``hashes``, those the node holds (presence only, nothing is read)."""
        reply = self.stub(address).HasChunks(
            pb.HasChunksRequest(sha256=hashes, cluster_secret=self.settings.cluster_secret),
            timeout=self.settings.node_call_timeout_s,
        )
        return set(reply.present)

    def delete_chunks_if_idle(self, address: str, hashes: list[str], idle_s: float
                              ) -> pb.DeleteChunksResponse:
        return self.stub(address).DeleteChunks(
            pb.DeleteChunksRequest(sha256=hashes, cluster_secret=self.settings.cluster_secret,
                                   skip_modified_within_s=int(idle_s)),
            timeout=self.settings.node_call_timeout_s,
        )

    def list_chunks(self, address: str) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        for batch in self.stub(address).ListChunks(
                pb.ListChunksRequest(cluster_secret=self.settings.cluster_secret),
                timeout=self.settings.node_call_timeout_s * 4):
            out.extend(zip(batch.sha256, batch.sizes, strict=False))
        return out

    def list_chunk_entries(self, address: str) -> list[tuple[str, int, int]]:
        """``(sha256, size, mtime unix seconds)`` of every chunk file on the node (mtime 0
        from a node too old to send it)."""
        out: list[tuple[str, int, int]] = []
        for batch in self.stub(address).ListChunks(
                pb.ListChunksRequest(cluster_secret=self.settings.cluster_secret),
                timeout=self.settings.node_call_timeout_s * 4):
            times = list(batch.modified_unix) or [0] * len(batch.sha256)
            out.extend(zip(batch.sha256, batch.sizes, times, strict=False))
        return out

    def close(self) -> None:
        with self._lock:
            for channel, _ in self._stubs.values():
                channel.close()
            self._stubs.clear()
