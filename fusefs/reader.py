"""Reads: ranged downloads into an on-disk chunk cache, with sequential read-ahead.

A file on the gateway is a list of chunks named by SHA-256 (``GetFileChunks``). The mount
fetches whole chunks with a ranged ``DownloadFile`` (offset/length of that chunk), checks
each against its hash and keeps it in a size-capped cache keyed by the hash, the way
S3QL's block cache and JuiceFS's chunk cache do: a chunk is immutable, so a cached copy is
valid for every file and version that references it, and identical chunks are cached once.
A reader that moves sequentially gets the next chunks fetched before it asks.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from cloudgrpc_proto import errors
from cloudgrpc_proto.client import CloudClient

from .aio import Blocking

log = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_CACHE_BYTES = 2048 * MiB
READ_AHEAD_CHUNKS = 6


def cache_home() -> Path:
    """``$XDG_CACHE_HOME/cloudgrpc`` or ``~/.cache/cloudgrpc`` (XDG base directory spec)."""
    raw = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(raw) if raw else Path.home() / ".cache"
    return base / "cloudgrpc"


class ChunkCache:
    """Verified chunks on disk, ``<root>/<sha[:2]>/<sha>``, least recently used out first.

    Thread-safe: fetches land from worker threads while the FUSE loop reads. A chunk is
    written to a temporary name and renamed, so a crash never leaves a torn chunk, and is
    re-verified the first time this process reads it (the disk may have rotted meanwhile).
    """

    def __init__(self, root: Path, capacity: int = DEFAULT_CACHE_BYTES) -> None:
        self.root = root
        self.capacity = capacity
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()
        self._lru: OrderedDict[str, int] = OrderedDict()
        self._verified: set[str] = set()
        self.size = 0
        self.hits = 0
        self.misses = 0
        entries = []
        for sub in self.root.iterdir():
            if not sub.is_dir():
                continue
            for f in sub.iterdir():
                if f.name.endswith(".tmp"):
                    f.unlink(missing_ok=True)
                    continue
                try:
                    st = f.stat()
                except FileNotFoundError:
                    continue
                entries.append((st.st_atime, f.name, st.st_size))
        for _, sha, size in sorted(entries):
            self._lru[sha] = size
            self.size += size
        self._evict()

    def path(self, sha: str) -> Path:
        return self.root / sha[:2] / sha

    def get(self, sha: str) -> Path | None:
        """The cached chunk's path, or None (also when it failed verification)."""
        with self._lock:
            if sha not in self._lru:
                self.misses += 1
                return None
            self._lru.move_to_end(sha)
            verified = sha in self._verified
        path = self.path(sha)
        if not verified:
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                data = None
            if data is None or hashlib.sha256(data).hexdigest() != sha:
                log.warning("cached chunk %s is damaged or missing: dropped", sha[:12])
                self.discard(sha)
                return None
            with self._lock:
                self._verified.add(sha)
        self.hits += 1
        return path

    def put(self, sha: str, data: bytes) -> Path:
        """Store ``data`` as chunk ``sha``; ValueError when the bytes do not hash to it."""
        if hashlib.sha256(data).hexdigest() != sha:
            raise ValueError(f"chunk {sha[:12]} does not match its SHA-256")
        path = self.path(sha)
        path.parent.mkdir(exist_ok=True, mode=0o700)
        tmp = path.with_name(f"{sha}.{uuid.uuid4().hex[:8]}.tmp")
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
        with self._lock:
            if sha not in self._lru:
                self.size += len(data)
            self._lru[sha] = len(data)
            self._lru.move_to_end(sha)
            self._verified.add(sha)
            self._evict()
        return path

    def discard(self, sha: str) -> None:
        with self._lock:
            size = self._lru.pop(sha, None)
            if size is not None:
                self.size -= size
            self._verified.discard(sha)
        self.path(sha).unlink(missing_ok=True)

    def _evict(self) -> None:
        while self.size > self.capacity and len(self._lru) > 1:
            sha, size = self._lru.popitem(last=False)
            self.size -= size
            self._verified.discard(sha)
            self.path(sha).unlink(missing_ok=True)

    def clear(self) -> None:
        with self._lock:
            shas = list(self._lru)
        for sha in shas:
            self.discard(sha)


@dataclass
class Manifest:
    """A file version's chunk list, with each chunk's starting offset for bisecting."""

    version: int
    chunks: list[tuple[str, int]]
    starts: list[int] = field(default_factory=list)
    size: int = 0

    def __post_init__(self) -> None:
        pos = 0
        self.starts = []
        for _, size in self.chunks:
            self.starts.append(pos)
            pos += size
        self.size = pos

    def index(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset) - 1


@dataclass
class ReadState:
    """Per open handle: where the last read ended, to recognise sequential reading."""

    next_offset: int = 0
    sequential: int = 0


class Reader:
    """Serves ``read`` from the chunk cache, fetching missing chunks from the gateway."""

    def __init__(self, client: CloudClient, blocking: Blocking, cache: ChunkCache,
                 read_ahead: int = READ_AHEAD_CHUNKS) -> None:
        self.client = client
        self.blocking = blocking
        self.cache = cache
        self.read_ahead = read_ahead
        self.nursery: trio.Nursery | None = None
        self._manifests: dict[str, Manifest] = {}
        self._inflight: dict[str, trio.Event] = {}
        self._prefetch_slots = trio.Semaphore(6)
        self.on_version: Callable[[str, int], None] | None = None

    # --- manifests ------------------------------------------------------------------------

    async def manifest(self, file_id: str, version: int, *, fresh: bool = False) -> Manifest:
        known = self._manifests.get(file_id)
        if known is not None and not fresh and (version == 0 or known.version == version):
            return known
        reply = await self.blocking(self.client.get_file_chunks, file_id)
        manifest = Manifest(int(reply.version), [(c.sha256, int(c.size)) for c in reply.chunks])
        self._manifests[file_id] = manifest
        if self.on_version is not None and manifest.version != version:
            self.on_version(file_id, manifest.version)
        return manifest

    def forget(self, file_id: str) -> None:
        self._manifests.pop(file_id, None)

    # --- chunks ---------------------------------------------------------------------------

    def _download(self, file_id: str, start: int, size: int, sha: str) -> Path:
        with self.client.download(file_id, start, size) as stream:
            data = stream.read_all()
        return self.cache.put(sha, data)

    async def chunk(self, file_id: str, manifest: Manifest, index: int) -> Path:
        """The cached path of chunk ``index``, fetching it (once, however many ask)."""
        sha, size = manifest.chunks[index]
        while True:
            path = self.cache.get(sha)
            if path is not None:
                return path
            pending = self._inflight.get(sha)
            if pending is None:
                break
            await pending.wait()
            if self.cache.get(sha) is None and sha not in self._inflight:
                break
        done = trio.Event()
        self._inflight[sha] = done
        try:
            return await self.blocking(self._download, file_id, manifest.starts[index],
                                       size, sha)
        except ValueError:
            raise errors.Conflict("the file changed while it was read") from None
        finally:
            del self._inflight[sha]
            done.set()

    def _prefetch(self, file_id: str, manifest: Manifest, first: int) -> None:
        if self.nursery is None:
            return
        for index in range(first, min(first + self.read_ahead, len(manifest.chunks))):
            sha = manifest.chunks[index][0]
            if sha in self._inflight or self.cache.get(sha) is not None:
                continue
            self.nursery.start_soon(self._prefetch_one, file_id, manifest, index)

    async def _prefetch_one(self, file_id: str, manifest: Manifest, index: int) -> None:
        if manifest.chunks[index][0] in self._inflight:
            return
        async with self._prefetch_slots:
            try:
                await self.chunk(file_id, manifest, index)
            except (errors.CloudError, OSError) as exc:  # the reader will ask again
                log.debug("read-ahead of %s chunk %d failed: %s", file_id, index, exc)

    # --- read -----------------------------------------------------------------------------

    async def read(self, file_id: str, version: int, offset: int, length: int,
                   state: ReadState | None = None) -> bytes:
        """``length`` bytes at ``offset`` of the file (fewer at its end)."""
        for attempt in (0, 1):
            manifest = await self.manifest(file_id, version, fresh=attempt == 1)
            try:
                return await self._read(file_id, manifest, offset, length, state)
            except errors.Conflict:
                if attempt:
                    raise
                self.forget(file_id)
        raise AssertionError("unreachable")

    async def _read(self, file_id: str, manifest: Manifest, offset: int, length: int,
                    state: ReadState | None) -> bytes:
        end = min(offset + length, manifest.size)
        if offset >= end:
            return b""
        if state is not None:
            state.sequential = state.sequential + 1 if offset == state.next_offset else 0
            state.next_offset = end
        parts: list[bytes] = []
        pos = offset
        index = manifest.index(pos)
        while pos < end:
            start = manifest.starts[index]
            size = manifest.chunks[index][1]
            if state is not None and (state.sequential or offset == 0):
                self._prefetch(file_id, manifest, index + 1)
            path = await self.chunk(file_id, manifest, index)
            lo = pos - start
            hi = min(end - start, size)
            fd = os.open(path, os.O_RDONLY)
            try:
                parts.append(os.pread(fd, hi - lo, lo))
            finally:
                os.close(fd)
            pos = start + hi
            index += 1
        return b"".join(parts)

    async def copy_into(self, file_id: str, version: int, fd: int, size: int) -> None:
        """Write the whole file into ``fd`` (a staging copy about to be modified)."""
        manifest = await self.manifest(file_id, version)
        state = ReadState()
        pos = 0
        total = min(size, manifest.size) if size else manifest.size
        while pos < total:
            data = await self.read(file_id, manifest.version, pos, min(4 * MiB, total - pos),
                                   state)
            if not data:
                break
            os.pwrite(fd, data, pos)
            pos += len(data)
