"""From a (file, offset, length) request to a stream of verified bytes.

Only the chunks that overlap the range are fetched, a few ahead of the one being sent so
the network to the nodes and the stream to the client overlap; each chunk is checked
against its SHA-256 and, if a replica fails or lies, read from the next one.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from cloudgrpc_proto import read_tokens
from cloudgrpc_proto.errors import CloudError, InvalidArgument

from .accounts import Caller
from .models import File
from .namespace import ChunkSpan, FileAccess, Namespace
from .replicated_store import ReplicatedStore

log = logging.getLogger(__name__)

MESSAGE_BYTES = 1024 * 1024
READ_AHEAD = 3
SMALL_GROUP_BYTES = 32 * 1024 * 1024  # DownloadSmallFiles reads this much per round of node calls


@dataclass
class DownloadPlan:
    access: FileAccess
    offset: int
    length: int
    pieces: list[tuple[str, int, int, list[str]]]  # (sha, start in chunk, end in chunk, nodes)


@dataclass
class ReadPlan:
    """A file version's chunks and, for direct reads, where each lives and its token."""

    file: File
    spans: list[ChunkSpan]
    sources: list[tuple[str, list[str], str]] = field(default_factory=list)
    expires_at: int = 0  # (sha, node addresses, read token) above are good until then
    node_ca_pem: bytes = b""


class DownloadPipeline:
    def __init__(self, namespace: Namespace, store: ReplicatedStore) -> None:
        self.namespace = namespace
        self.store = store
        self.workers = cf.ThreadPoolExecutor(max_workers=12, thread_name_prefix="download")

    def plan(self, caller: Caller, file_id: str, offset: int, length: int) -> DownloadPlan:
        if offset < 0 or length < 0:
            raise InvalidArgument("offset and length cannot be negative")
        access, spans = self.namespace.readable_file(caller, file_id)
        size = access.file.size
        if access.file.symlink_target is not None:
            raise InvalidArgument("a symbolic link has no content to download")
        start = min(offset, size)
        end = size if length == 0 else min(size, offset + length)
        replicas = self.store.replicas_of(s.sha256 for s in spans)
        pieces = []
        pos = 0
        for span in spans:
            c_start, c_end = pos, pos + span.size
            pos = c_end
            if c_end <= start or c_start >= end:
                continue
            pieces.append((span.sha256, max(start, c_start) - c_start,
                           min(end, c_end) - c_start, replicas.get(span.sha256, [])))
        return DownloadPlan(access, start, end - start, pieces)

    def read_plan(self, caller: Caller, file_id: str, with_sources: bool) -> ReadPlan:
        """The file's chunk list; with ``with_sources``, also its replicas and read tokens.

        The caller may read the file (``file_chunks`` checked that), so it may read each
        of its chunks: a token per chunk, signed with the cluster secret, lets a node
        serve exactly that chunk until the expiry without asking anyone.
        """
        f, spans = self.namespace.file_chunks(caller, file_id)
        plan = ReadPlan(f, spans)
        settings = self.store.settings
        if not with_sources or not settings.direct_reads or not spans:
            return plan
        registry = self.store.registry
        plan.expires_at = int(time.time()) + settings.read_token_ttl_s
        replicas = self.store.replicas_of(s.sha256 for s in spans)
        for sha in dict.fromkeys(s.sha256 for s in spans):
            online, offline = [], []
            for node_id in replicas.get(sha, []):
                node = registry.node(node_id)
                if node is not None:
                    (online if registry.is_online(node_id) else offline).append(node.address)
            token = (read_tokens.issue(settings.cluster_secret, sha, plan.expires_at)
                     if settings.cluster_secret else "")
            plan.sources.append((sha, online + offline, token))
        if settings.node_tls_ca:
            with open(settings.node_tls_ca, "rb") as handle:
                plan.node_ca_pem = handle.read()
        return plan

    def stream(self, plan: DownloadPlan) -> Iterator[bytes]:
        ahead: list[cf.Future[bytes]] = []
        queue = list(plan.pieces)

        def fill() -> None:
            while queue and len(ahead) < READ_AHEAD:
                sha, _, _, nodes = queue[0]
                queue.pop(0)
                ahead.append(self.workers.submit(self.store.read, sha, nodes))

        pieces = iter(plan.pieces)
        try:
            fill()
            for _sha, lo, hi, _nodes in pieces:
                data = ahead.pop(0).result()
                fill()
                view = memoryview(data)[lo:hi]
                for i in range(0, len(view), MESSAGE_BYTES):
                    yield bytes(view[i:i + MESSAGE_BYTES])
        finally:
            for fut in ahead:
                fut.cancel()

    def close(self) -> None:
        self.workers.shutdown(wait=False, cancel_futures=True)

    def small_files(self, caller: Caller, file_ids: list[str], max_size: int
                    ) -> Iterator[tuple[str, int, bytes, str]]:
        """(file id, version, content, error) for each small file, read in parallel."""
        found = self.namespace.readable_files(caller, file_ids)
        wanted: list[tuple[str, int, list[str]]] = []
        for fid in file_ids:
            entry = found.get(fid)
            if isinstance(entry, str) or entry is None:
                yield fid, 0, b"", entry or "not found"
                continue
            access, spans = entry
            if access.file.symlink_target is not None:
                yield fid, access.file.version, b"", "a symbolic link has no content"
                continue
            if access.file.size > max_size:
                yield fid, access.file.version, b"", "larger than max_file_size"
                continue
            wanted.append((fid, access.file.version, [(s.sha256, s.size) for s in spans]))
        replicas = self.store.replicas_of(h for _, _, spans in wanted for h, _ in spans)
        group: list[tuple[str, int, list[tuple[str, int]]]] = []
        size = 0
        for item in wanted:  # in groups, so a long list is never all in memory at once
            group.append(item)
            size += sum(n for _, n in item[2])
            if size >= SMALL_GROUP_BYTES or item is wanted[-1]:
                yield from self._small_group(group, replicas)
                group, size = [], 0

    def _small_group(self, group: list[tuple[str, int, list[tuple[str, int]]]],
                     replicas: dict[str, list[str]]) -> Iterator[tuple[str, int, bytes, str]]:
        """A group's chunks in a few node calls (``read_many``), then each file in turn."""
        got = self.store.read_many([span for _, _, spans in group for span in spans],
                                   replicas)
        for fid, version, spans in group:
            parts = [got[sha] for sha, _ in spans]
            failed = next((p for p in parts if isinstance(p, CloudError)), None)
            if failed is not None:
                yield fid, version, b"", failed.message
            else:
                yield fid, version, b"".join(p for p in parts if isinstance(p, bytes)), ""
