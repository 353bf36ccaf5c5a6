"""Pieces of the streaming transfers: upload sources, chunk plans, progress watchdogs.

Kept apart from ``client.py`` so the byte-level logic (where chunk boundaries fall, which
chunks travel as references, when a stalled stream is abandoned) can be read and tested on
its own, without a channel.
"""

from __future__ import annotations

import hashlib
import io
import mimetypes
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any, BinaryIO

MESSAGE_BYTES = 1024 * 1024  # one chunk_data message on the wire
SPOOL_IN_MEMORY = 8 * 1024 * 1024
HASH_THREADS = 4  # chunks of a file hashed at once while planning its upload

Progress = Callable[[int], None]


def guess_mime_type(filename: str) -> str:
    mime, _ = mimetypes.guess_type(filename, strict=False)
    return mime or "application/octet-stream"


@dataclass
class UploadSource:
    """A readable, seekable byte source of known size, whatever the caller handed in.

    Seekability matters twice: the chunks are hashed before anything is sent (for the
    FindChunks question) and read again to send the missing ones, and a call refused for an
    expired session can be replayed after the refresh. A pipe is spooled to a temporary file.
    """

    handle: BinaryIO
    start: int
    size: int
    filename: str
    owned: bool = False

    @classmethod
    def open(
        cls, source: BinaryIO | str | os.PathLike[str], filename: str, file_size: int | None
    ) -> UploadSource:
        if isinstance(source, str | os.PathLike):
            path = os.fspath(source)
            handle: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
            size = os.fstat(handle.fileno()).st_size
            return cls(handle, 0, size, filename or os.path.basename(path), owned=True)
        name = filename or os.path.basename(str(getattr(source, "name", "") or "")) or "upload"
        if _seekable(source):
            start = source.tell()
            end = source.seek(0, io.SEEK_END)
            source.seek(start)
            return cls(source, start, end - start, name)
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
        shutil.copyfileobj(source, spool, MESSAGE_BYTES)
        size = spool.tell()
        spool.seek(0)
        if file_size is not None and file_size != size:
            spool.close()
            raise ValueError(f"{name}: announced {file_size} bytes but the stream had {size}")
        return cls(spool, 0, size, name, owned=True)  # type: ignore[arg-type]

    def rewind(self) -> None:
        self.handle.seek(self.start)

    def file_descriptor(self) -> int | None:
        """The descriptor of a file this source opened itself (read with ``os.pread``
        anywhere at once), else None."""
        if not self.owned or not isinstance(self.handle, io.BufferedReader):
            return None
        return self.handle.fileno()

    def read_at(self, offset: int, length: int) -> bytes:
        self.handle.seek(self.start + offset)
        return _read_exactly(self.handle, length)

    def close(self) -> None:
        if self.owned:
            self.handle.close()


def _seekable(stream: IO[bytes]) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _read_exactly(handle: IO[bytes], length: int) -> bytes:
    parts: list[bytes] = []
    left = length
    while left > 0:
        piece = handle.read(left)
        if not piece:
            break
        parts.append(piece)
        left -= len(piece)
    return b"".join(parts)


@dataclass(frozen=True)
class ChunkPlanEntry:
    offset: int
    size: int
    sha256: str
    send_ref: bool = False


@dataclass
class UploadStats:
    """What an upload actually moved: the measure of dedup and resume."""

    bytes_total: int = 0
    bytes_sent: int = 0
    bytes_referenced: int = 0
    chunks_sent: int = 0
    chunks_referenced: int = 0
    chunks_direct: int = 0  # of chunks_sent: written to the nodes directly, not via the gateway
    messages: int = 0
    chunk_size: int = 0
    present: set[str] = field(default_factory=set, repr=False)


def hash_chunks(source: UploadSource, chunk_size: int,
                known: Mapping[int, str] | None = None) -> list[ChunkPlanEntry]:
    """SHA-256 of each ``chunk_size`` piece of the source (the last one may be short).

    ``known``: hashes of whole chunks by offset that the caller vouches for (the mount's
    write-behind hashed them and no write touched them since); those are not read. A file
    the source opened itself has ``HASH_THREADS`` chunks read and hashed at once (the reads
    overlap on the disk and hashlib hashes without the GIL), while the rest of the machine
    waits for the plan; any other source is read in order."""
    vouched = known or {}
    offsets = range(0, source.size, chunk_size)
    fd = source.file_descriptor()
    if fd is None or source.size <= chunk_size:
        plan = [_plan_entry(o, chunk_size, source.size, vouched, source.read_at)
                for o in offsets]
        source.rewind()
        return plan

    def pread(offset: int, length: int) -> bytes:
        return os.pread(fd, length, source.start + offset)

    with ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="hash") as pool:
        return list(pool.map(
            lambda o: _plan_entry(o, chunk_size, source.size, vouched, pread), offsets))


def _plan_entry(offset: int, chunk_size: int, total: int, known: Mapping[int, str],
                read: Callable[[int, int], bytes]) -> ChunkPlanEntry:
    """The chunk at ``offset`` of the plan: its vouched hash when it is whole and has one,
    else hashed from ``read(offset, length)`` in message-sized pieces."""
    size = min(chunk_size, total - offset)
    vouched = known.get(offset) if size == chunk_size else None
    if vouched is not None:
        return ChunkPlanEntry(offset, size, vouched)
    digest = hashlib.sha256()
    done = 0
    while done < size:
        piece = read(offset + done, min(MESSAGE_BYTES, size - done))
        if not piece:
            raise OSError("file shrank while being read")
        digest.update(piece)
        done += len(piece)
    return ChunkPlanEntry(offset, size, digest.hexdigest())


def iter_payload(
    source: UploadSource,
    plan: list[ChunkPlanEntry] | None,
    stats: UploadStats,
    progress: Progress | None,
    written: Iterator[tuple[ChunkPlanEntry, Any]] | None = None,
) -> Iterator[tuple[str, Any]]:
    """("data", bytes) and ("ref", (sha256, size)) items in file order.

    Without a plan the file goes out in 1 MiB messages. With one, every chunk the server
    holds becomes a reference (whole chunks only, so references fall on chunk boundaries)
    and the others go out as data messages.

    ``written`` (direct writes): for each chunk to send, in order, what writing it to the
    nodes gave: receipts (then it goes as ("ref", (sha256, size, receipts))) or None (its
    bytes go as data messages after all).
    """
    stats.bytes_total = source.size
    if plan is None:
        plan = [ChunkPlanEntry(0, source.size, "")] if source.size else []
    for entry in plan:
        if entry.send_ref:
            stats.chunks_referenced += 1
            stats.bytes_referenced += entry.size
            yield "ref", (entry.sha256, entry.size)
            if progress:
                progress(entry.size)
            continue
        if written is not None:
            done, receipts = next(written)
            assert done is entry, "direct writes answered out of order"
            if receipts is not None:
                if receipts:
                    stats.chunks_sent += 1
                    stats.chunks_direct += 1
                    stats.bytes_sent += entry.size
                else:  # the gateway found it held after all: a plain reference
                    stats.chunks_referenced += 1
                    stats.bytes_referenced += entry.size
                yield "ref", (entry.sha256, entry.size, receipts)
                if progress:
                    progress(entry.size)
                continue
        source.handle.seek(source.start + entry.offset)
        left = entry.size
        while left > 0:
            piece = source.handle.read(min(MESSAGE_BYTES, left))
            if not piece:
                raise OSError(f"{source.filename}: file shrank while being uploaded")
            left -= len(piece)
            stats.bytes_sent += len(piece)
            yield "data", piece
            if progress:
                progress(len(piece))
        stats.chunks_sent += 1


class Watchdog:
    """Cancels a streaming call that makes no progress for ``idle`` seconds.

    A total deadline suits a 1 KiB call but not a 10 GiB transfer over a slow link; what
    must never happen is a transfer that silently stops moving. Every message kicks the dog.
    """

    def __init__(self, idle: float, cancel: Callable[[], Any] | None = None) -> None:
        self.idle = idle
        self.fired = False
        self._cancel = cancel
        self._kicked = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cloudgrpc-watchdog", daemon=True)

    def start(self, cancel: Callable[[], Any] | None = None) -> Watchdog:
        if cancel is not None:
            self._cancel = cancel
        self._thread.start()
        return self

    def kick(self) -> None:
        self._kicked.set()

    def stop(self) -> None:
        self._stopped.set()
        self._kicked.set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            if self._kicked.wait(self.idle):
                self._kicked.clear()
                continue
            if self._stopped.is_set():
                return
            self.fired = True
            if self._cancel is not None:
                self._cancel()
            return


class ChunkVerifier:
    """Checks downloaded bytes against the file's chunk manifest, chunk by chunk."""

    def __init__(self, chunks: list[tuple[str, int]]) -> None:
        self._chunks = [(h, s) for h, s in chunks if s > 0]
        self._index = 0
        self._digest = hashlib.sha256()
        self._filled = 0
        self.total = sum(s for _, s in self._chunks)

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._index >= len(self._chunks):
                raise ValueError("more bytes than the chunk manifest holds")
            expected_hash, size = self._chunks[self._index]
            take = min(size - self._filled, len(view))
            self._digest.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == size:
                if self._digest.hexdigest() != expected_hash:
                    raise ValueError(f"chunk {self._index} does not match its SHA-256")
                self._index += 1
                self._digest = hashlib.sha256()
                self._filled = 0

    def finish(self) -> None:
        if self._index != len(self._chunks) or self._filled:
            raise ValueError("the download ended before the last chunk")
