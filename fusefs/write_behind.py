"""Write-behind: a file's chunks go to the storage nodes while it is still being written.

Writes land in the staging copy (``writer.py``). Once a writer going forward from the
start of the file has filled a whole chunk, that chunk is read back from the copy and
hashed; the chunks ready by then are granted in one call and written to their nodes, each
read again as its turn comes, for the upload that will follow (``CloudClient.write_ahead``).
When the file is then flushed, fsynced or closed, its upload
finds those chunks' receipts by hash and sends only the tail and the commit, so fsync and
close wait for the tail, not the whole file (JuiceFS and rclone's write-back do the same
with their object stores). It also takes the hashes of the chunks sent, so it need not
read and hash them again; every write or truncate of the copy drops the hashes of the
chunks it touches (one that lands while its chunk is on its way included), so a chunk
changed after it was sent is hashed anew, has another hash, and that chunk, and only
that one, goes again with the upload.

That rule is the one thing correctness rests on here: the upload is otherwise complete
on its own, the nodes check every chunk they are sent against its hash, and crash safety
stays with the staging copy and its journal. What was written ahead of
an upload that never happens (the file deleted first) stays counted against the quota
until garbage collection could have taken those chunks off the nodes (the grant's
reservation expires then), as the gateway counts every grant never handed in.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from dataclasses import dataclass, field
from typing import NamedTuple

import trio

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import environment, errors
from cloudgrpc_proto.client import CloudClient
from cloudgrpc_proto.direct_writes import StopAhead
from cloudgrpc_proto.transfer import ChunkPlanEntry

from .aio import Blocking

log = logging.getLogger(__name__)

# Chunks hashed and granted per call: a grant call is a gateway transaction, so a fast
# writer's chunks go 16 to a call (4 to a call cost 16 calls per 256 MiB, about as much
# gateway CPU as the rest of the upload). The bytes are read again as each chunk's turn to
# be sent comes (from the page cache: the copy was just written), so memory holds only the
# client's IN_FLIGHT chunks, not a call's.
CHUNKS_PER_CALL = 16
FILES_AT_ONCE = 2    # files whose chunks are being written ahead at the same time


@dataclass
class Ahead:
    """One staging copy's chunks written ahead of its next upload."""

    upload_id: str = field(default_factory=lambda: f"mount-{uuid.uuid4().hex[:10]}")
    receipts: dict[str, list[pb.ChunkReceipt]] = field(default_factory=dict)
    contiguous: int = 0  # bytes written from offset 0 with no gap
    next_chunk: int = 0  # the first chunk not yet written ahead
    sending: trio.Event | None = None  # set when the send in progress ends
    # SHA-256 of the chunks sent, by chunk index, while no write has touched them since:
    # the upload takes them instead of reading and hashing those chunks again
    hashes: dict[int, str] = field(default_factory=dict)
    touched: set[int] = field(default_factory=set)  # chunks written during a send
    ended: bool = False  # the copy is gone, or its upload took these receipts
    stopping: bool = False  # its upload starts: finish the call in progress, no more

    def successor(self, chunk_size: int) -> Ahead:
        """For the copy's next upload: the chunks before ``contiguous`` were this one's."""
        return Ahead(contiguous=self.contiguous,
                     next_chunk=self.contiguous // chunk_size if chunk_size else 0)


class Taken(NamedTuple):
    """What an upload takes over from the write-behind of its copy."""

    upload_id: str
    receipts: dict[str, list[pb.ChunkReceipt]]  # by hash
    hashes: dict[int, str]  # whole chunks' SHA-256 by offset, still true of the copy


class WriteBehind:
    def __init__(self, client: CloudClient, blocking: Blocking, chunk_size: int) -> None:
        self.client = client
        self.blocking = blocking
        self.chunk_size = chunk_size
        self._nursery: trio.Nursery | None = None
        self._files = trio.CapacityLimiter(FILES_AT_ONCE)
        # CLOUDGRPC_WRITE_BEHIND=0: chunks wait for the upload (direct writes still apply)
        self.wanted = environment.get_bool("CLOUDGRPC_WRITE_BEHIND", True)
        self.chunks_ahead = 0  # chunks written ahead (for status)

    @property
    def enabled(self) -> bool:
        return (self.chunk_size > 0 and self._nursery is not None and self.client.direct_writes
                and self.wanted)

    async def run(self) -> None:
        """Hosts the sends; runs until cancelled."""
        try:
            self.chunk_size = await self.blocking(self.client.chunk_size)
        except errors.CloudError as exc:
            log.info("no write-behind (the gateway's chunk size is unknown): %s", exc)
            return
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await trio.sleep_forever()

    def wrote(self, ahead: Ahead, fd: int, offset: int, length: int) -> None:
        """``length`` bytes were written at ``offset`` of the copy open as ``fd``."""
        if offset <= ahead.contiguous:
            ahead.contiguous = max(ahead.contiguous, offset + length)
        if self.chunk_size and length > 0:
            self._changed(ahead, range(offset // self.chunk_size,
                                       (offset + length - 1) // self.chunk_size + 1))
        self._maybe_send(ahead, fd)

    def truncated(self, ahead: Ahead, size: int) -> None:
        if self.chunk_size:
            # every chunk from the one the new end falls in up to the old end changed
            end = max(ahead.contiguous, size)
            self._changed(ahead, range(size // self.chunk_size, end // self.chunk_size + 1))
        ahead.contiguous = min(ahead.contiguous, size)
        ahead.next_chunk = min(ahead.next_chunk, size // self.chunk_size) \
            if self.chunk_size else 0

    @staticmethod
    def _changed(ahead: Ahead, indexes: range | list[int]) -> None:
        """These chunks of the copy changed: a hash taken of them no longer holds."""
        for index in indexes:
            ahead.hashes.pop(index, None)
            if ahead.sending is not None:
                ahead.touched.add(index)  # hashed before this write, recorded after

    def _maybe_send(self, ahead: Ahead, fd: int) -> None:
        if not self.enabled or ahead.sending is not None or ahead.ended:
            return
        if ahead.next_chunk >= ahead.contiguous // self.chunk_size:
            return
        # Our own descriptor: the copy's may be closed (file deleted) while we read.
        ahead.sending = trio.Event()
        assert self._nursery is not None
        self._nursery.start_soon(self._send, ahead, os.dup(fd))

    async def _send(self, ahead: Ahead, fd: int) -> None:
        size = self.chunk_size

        def read(entry: ChunkPlanEntry) -> bytes:
            if ahead.ended or ahead.stopping:
                raise StopAhead  # the copy is gone, or its upload sends the rest now
            return os.pread(fd, entry.size, entry.offset)

        try:
            async with self._files:
                while not ahead.ended and not ahead.stopping and \
                        ahead.next_chunk < ahead.contiguous // size:
                    first = ahead.next_chunk
                    last = min(ahead.contiguous // size, first + CHUNKS_PER_CALL)
                    ahead.touched.clear()
                    entries = await self.blocking(_hash_chunks, fd, first, last, size)
                    if ahead.ended:
                        return
                    got = await self.blocking(self.client.write_ahead, ahead.upload_id,
                                              entries, read)
                    ahead.receipts.update(got)
                    for entry in entries:
                        index = entry.offset // size
                        if entry.sha256 in got and index not in ahead.touched:
                            ahead.hashes[index] = entry.sha256
                    self.chunks_ahead += len(got)
                    # next_chunk moves on even for chunks that failed: the upload sends them
                    ahead.next_chunk = max(ahead.next_chunk, last)
        except Exception as exc:  # noqa: BLE001 - best effort: the upload sends what is missing
            log.info("write-behind of %s stopped: %s", ahead.upload_id, exc)
        finally:
            os.close(fd)
            event, ahead.sending = ahead.sending, None
            if event is not None:
                event.set()

    async def take(self, ahead: Ahead) -> Taken:
        """For the upload starting now (the copy is frozen): its upload id, the receipts
        written ahead and the hashes of the sent chunks no write has touched since, by
        offset (after the call in progress, if any, ends: the upload sends the rest
        itself, with its own pipeline)."""
        ahead.stopping = True
        if ahead.sending is not None:
            await ahead.sending.wait()
        ahead.ended = True
        return Taken(ahead.upload_id, dict(ahead.receipts),
                     {index * self.chunk_size: sha for index, sha in ahead.hashes.items()})

    def forget(self, ahead: Ahead) -> None:
        """The copy is gone without its upload: send no more of it."""
        ahead.ended = True


def _hash_chunks(fd: int, first: int, last: int, size: int) -> list[ChunkPlanEntry]:
    """Chunks ``first`` to ``last`` (excluded) of the copy, hashed: one chunk's bytes in
    memory at a time (they are read again when sent)."""
    entries = []
    for index in range(first, last):
        data = os.pread(fd, size, index * size)
        if len(data) != size:
            break  # the copy shrank meanwhile: the upload sends the rest
        entries.append(ChunkPlanEntry(index * size, size, hashlib.sha256(data).hexdigest()))
    return entries
