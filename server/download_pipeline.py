"""From a (file, offset, length) request to a stream of verified bytes.

Only the chunks that overlap the range are fetched, a few ahead of the one being sent so
the network to the nodes and the stream to the client overlap; each chunk is checked
against its SHA-256 and, if a replica fails or lies, read from the next one.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from cloudgrpc_proto.errors import CloudError, InvalidArgument

from .accounts import Caller
from .namespace import FileAccess, Namespace
from .replicated_store import ReplicatedStore

log = logging.getLogger(__name__)

MESSAGE_BYTES = 1024 * 1024
READ_AHEAD = 3


@dataclass
class DownloadPlan:
    access: FileAccess
    offset: int
    length: int
    pieces: list[tuple[str, int, int, list[str]]]  # (sha, start in chunk, end in chunk, nodes)


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
            wanted.append((fid, access.file.version, [s.sha256 for s in spans]))
        replicas = self.store.replicas_of(h for _, _, hashes in wanted for h in hashes)

        def read_all(item: tuple[str, int, list[str]]) -> tuple[str, int, bytes, str]:
            fid, version, hashes = item
            try:
                return fid, version, b"".join(
                    self.store.read(h, replicas.get(h, [])) for h in hashes), ""
            except CloudError as exc:
                return fid, version, b"", exc.message

        yield from self.workers.map(read_all, wanted)
