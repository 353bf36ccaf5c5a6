"""Reads: ranged downloads into an on-disk chunk cache, with sequential read-ahead.

A file on the gateway is a list of chunks named by SHA-256 (``GetFileChunks``). The mount
fetches whole chunks with a ranged ``DownloadFile`` (offset/length of that chunk), checks
each against its hash and keeps it in a size-capped cache keyed by the hash, the way
S3QL's block cache and JuiceFS's chunk cache do: a chunk is immutable, so a cached copy is
valid for every file and version that references it, and identical chunks are cached once.
A reader that moves sequentially gets the next chunks fetched before it asks; the last
chunks fetched stay in memory too, so a sequential reader slices them without a disk trip.

Small files (up to ``SMALL_FILE_MAX``) skip the manifest: one whole-file ``DownloadFile``
answers, kept in memory by (file id, version). Opening the first file of a folder listed
here prefetches the content of its small files in the background with
``DownloadSmallFiles`` (a few batched calls for the whole folder), so ``cat dir/*`` after a
cold mount is served locally, while ``ls -l`` alone fetches nothing.
"""

from __future__ import annotations

import bisect
import concurrent.futures as cf
import hashlib
import heapq
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from cloudgrpc_proto import errors
from cloudgrpc_proto.client import CloudClient
from cloudgrpc_proto.direct_reads import NodeReads
from cloudgrpc_proto.private_files import open_private, private_dir, read_private

from .aio import Blocking

log = logging.getLogger(__name__)

MiB = 1024 * 1024
CACHE_WRITER_NICE = 10
DEFAULT_CACHE_BYTES = 2048 * MiB
READ_AHEAD_CHUNKS = 8
PREFETCH_PARALLEL = 4  # chunks in flight at once for read-ahead
HOT_CHUNKS = 12  # chunks kept in memory as well as on disk
AHEAD_REMEMBERED = 1024  # chunks read-ahead fetched, remembered until read (for the hits)
CACHE_WRITERS = 2  # threads writing fetched chunks to the disk cache
TOKEN_MARGIN_S = 30  # read tokens this close to expiry are renewed before use
SMALL_FILE_MAX = 1 * MiB  # whole-file fast path at or below this size
SMALL_CACHE_BYTES = 96 * MiB  # in-memory small-file cache
PREFETCH_FILE_MAX = 256 * 1024  # readdir prefetch: files at most this big...
PREFETCH_FOLDER_BYTES = 32 * MiB  # ...up to this much per folder listing
PREFETCH_BATCH = 200  # file ids per DownloadSmallFiles call
PREFETCH_CALLS = 2  # DownloadSmallFiles calls in flight at once


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
        private_dir(self.root)  # cached chunks are user data: 0700, ours, no symlink
        self._lock = threading.Lock()
        self._lru: OrderedDict[str, int] = OrderedDict()
        self._verified: set[str] = set()
        self.size = 0
        self.hits = 0
        self.misses = 0
        entries = []
        for sub in self.root.iterdir():
            if sub.is_symlink() or not sub.is_dir():
                continue  # never walk (or clean up) through a symlink
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
                data = read_private(path)  # a symlink in its place is not followed
            except OSError:
                data = None
            if data is None or hashlib.sha256(data).hexdigest() != sha:
                log.warning("cached chunk %s is damaged or missing: dropped", sha[:12])
                self.discard(sha)
                return None
            with self._lock:
                self._verified.add(sha)
        self.hits += 1
        return path

    def unchecked(self, sha: str) -> bool:
        """Cached but not verified yet by this process (``get`` will hash it)."""
        with self._lock:
            return sha in self._lru and sha not in self._verified

    def put(self, sha: str, data: bytes, verify: bool = True) -> Path:
        """Store ``data`` as chunk ``sha``; ValueError when the bytes do not hash to it.

        ``verify=False`` is for bytes the caller has just hashed itself: they are stored
        as verified without hashing them a second time.
        """
        if verify and hashlib.sha256(data).hexdigest() != sha:
            raise ValueError(f"chunk {sha[:12]} does not match its SHA-256")
        path = self.path(sha)
        private_dir(path.parent)  # 0700, ours; a symlink in its place is refused
        tmp = path.with_name(f"{sha}.{uuid.uuid4().hex[:8]}.tmp")
        with os.fdopen(open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)  # replaces a symlink planted at ``path``, never writes through
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


class SmallFiles:
    """Whole small files in memory by file id, tagged with their version; LRU by bytes.

    Thread-safe (prefetches land from worker threads). A version mismatch is a miss, and a
    change event or an own upload drops the entry (``forget``).
    """

    def __init__(self, capacity: int = SMALL_CACHE_BYTES) -> None:
        self.capacity = capacity
        self.size = 0
        self._lock = threading.Lock()
        self._lru: OrderedDict[str, tuple[int, bytes]] = OrderedDict()

    def get(self, file_id: str, version: int) -> bytes | None:
        with self._lock:
            hit = self._lru.get(file_id)
            if hit is None or (version and hit[0] != version):
                return None
            self._lru.move_to_end(file_id)
            return hit[1]

    def has(self, file_id: str, version: int) -> bool:
        with self._lock:
            hit = self._lru.get(file_id)
            return hit is not None and (not version or hit[0] == version)

    def put(self, file_id: str, version: int, data: bytes) -> None:
        if len(data) > self.capacity // 4:
            return
        with self._lock:
            old = self._lru.pop(file_id, None)
            if old is not None:
                self.size -= len(old[1])
            self._lru[file_id] = (version, data)
            self.size += len(data)
            while self.size > self.capacity and self._lru:
                _, (_, gone) = self._lru.popitem(last=False)
                self.size -= len(gone)

    def forget(self, file_id: str) -> None:
        with self._lock:
            old = self._lru.pop(file_id, None)
            if old is not None:
                self.size -= len(old[1])


@dataclass
class Manifest:
    """A file version's chunk list, with each chunk's starting offset for bisecting.

    ``sources`` (chunk hash -> node addresses, read token) lets chunks be read from the
    nodes directly until ``expires_at`` (unix seconds); empty when the gateway does not
    offer direct reads.
    """

    version: int
    chunks: list[tuple[str, int]]
    starts: list[int] = field(default_factory=list)
    size: int = 0
    sources: dict[str, tuple[list[str], str]] = field(default_factory=dict)
    expires_at: float = 0.0
    node_ca_pem: bytes = b""

    def __post_init__(self) -> None:
        pos = 0
        self.starts = []
        for _, size in self.chunks:
            self.starts.append(pos)
            pos += size
        self.size = pos

    def index(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset) - 1

    def direct(self, sha: str) -> tuple[list[str], str] | None:
        """Where to read ``sha`` directly, while the tokens are good for a while more."""
        if not self.sources or time.time() > self.expires_at - TOKEN_MARGIN_S:
            return None
        return self.sources.get(sha)

    def stale(self) -> bool:
        """Direct-read tokens about to expire: worth asking the gateway again."""
        return bool(self.sources) and time.time() > self.expires_at - TOKEN_MARGIN_S


@dataclass
class ReadState:
    """Per open handle: where the last read ended, to recognise sequential reading."""

    next_offset: int = 0
    sequential: int = 0


class Reader:
    """Serves ``read`` from the chunk cache, fetching missing chunks from the gateway."""

    def __init__(self, client: CloudClient, blocking: Blocking, cache: ChunkCache,
                 read_ahead: int = READ_AHEAD_CHUNKS, direct: NodeReads | None = None) -> None:
        self.client = client
        self.direct = direct  # read chunks from the nodes (None: always through the gateway)
        self.blocking = blocking
        self.cache = cache
        self.read_ahead = read_ahead
        self.nursery: trio.Nursery | None = None
        self._manifests: dict[str, Manifest] = {}
        self._inflight: dict[str, trio.Event] = {}
        # read-ahead: (chunk index, order, file id, manifest), nearest first
        self._ahead: list[tuple[int, int, str, Manifest]] = []
        self._ahead_seq = 0
        self._ahead_workers = 0
        self._prefetching: set[str] = set()  # read-ahead queued or under way
        self.on_version: Callable[[str, int], None] | None = None
        self.small = SmallFiles()
        self._small_inflight: dict[str, trio.Event] = {}
        self._batch_slots = trio.Semaphore(PREFETCH_CALLS)
        self._hot: OrderedDict[str, bytes] = OrderedDict()
        self._hot_lock = threading.Lock()
        # Their own threads, at a lower CPU priority: on 2 cores the copy into the page
        # cache must not take turns from the FUSE loop and the fetches a reader waits for.
        self._cache_pool = cf.ThreadPoolExecutor(CACHE_WRITERS, "chunk-cache-writer",
                                                 initializer=_lower_priority)

        self.small_hits = 0
        self.small_fetches = 0
        self.prefetched = 0
        # Since the mount (``cloudgrpc status --json``): every count below is kept on the
        # trio thread. A chunk a reader asked for is a hit when it was in memory, on disk or
        # already being fetched, a miss when the reader had to fetch it; a read-ahead hit
        # is a chunk read-ahead fetched that a reader then asked for.
        self.bytes_downloaded = 0
        self.chunk_hits = 0
        self.chunk_misses = 0
        self.read_ahead_fetched = 0
        self.read_ahead_hits = 0
        self._ahead_unread: OrderedDict[str, None] = OrderedDict()

    # --- manifests ------------------------------------------------------------------------

    async def manifest(self, file_id: str, version: int, *, fresh: bool = False) -> Manifest:
        known = self._manifests.get(file_id)
        if known is not None and not fresh and (version == 0 or known.version == version) \
                and not known.stale():
            return known
        reply = await self.blocking(self.client.get_file_chunks, file_id,
                                    self.direct is not None)
        manifest = Manifest(int(reply.version), [(c.sha256, int(c.size)) for c in reply.chunks],
                            sources={s.sha256: (list(s.addresses), s.read_token)
                                     for s in reply.sources},
                            expires_at=float(reply.sources_expire_at),
                            node_ca_pem=bytes(reply.node_ca_pem))
        self._manifests[file_id] = manifest
        if self.on_version is not None and manifest.version != version:
            self.on_version(file_id, manifest.version)
        return manifest

    def forget(self, file_id: str) -> None:
        self._manifests.pop(file_id, None)
        self.small.forget(file_id)

    # --- small files ----------------------------------------------------------------------

    def _download_whole(self, file_id: str) -> tuple[int, bytes] | None:
        """(version, content) in one DownloadFile; None when the file is not small after all."""
        with self.client.download(file_id) as stream:
            if stream.info.file_size > SMALL_FILE_MAX:
                return None
            data = stream.read_all()
            return int(stream.info.version), data

    async def small_file(self, file_id: str, version: int) -> bytes | None:
        """The whole content of a small file: memory, a prefetch in flight, or one download."""
        for _ in range(3):
            data = self.small.get(file_id, version)
            if data is not None:
                self.small_hits += 1
                return data
            pending = self._small_inflight.get(file_id)
            if pending is None:
                break
            await pending.wait()
        data = self.small.get(file_id, version)
        if data is not None:
            self.small_hits += 1
            return data
        done = trio.Event()
        self._small_inflight[file_id] = done
        try:
            got = await self.blocking(self._download_whole, file_id)
        finally:
            if self._small_inflight.get(file_id) is done:
                del self._small_inflight[file_id]
            done.set()
        self.small_fetches += 1
        if got is None:
            return None
        found, data = got
        self.bytes_downloaded += len(data)
        self.small.put(file_id, found, data)
        if version and found != version and self.on_version is not None:
            self.on_version(file_id, found)
        return data

    def prefetch_small(self, files: list[tuple[str, int, int]]) -> int:
        """Fetch in the background the small files among ``(file_id, version, size)``.

        Files at most ``PREFETCH_FILE_MAX`` bytes, up to ``PREFETCH_FOLDER_BYTES`` in all, in
        batches of ``PREFETCH_BATCH`` with ``PREFETCH_CALLS`` calls in flight; a read of one
        of them meanwhile waits for its batch instead of downloading it again.
        """
        if self.nursery is None:
            return 0
        wanted: list[str] = []
        budget = PREFETCH_FOLDER_BYTES
        for file_id, version, size in files:
            if not 0 < size <= PREFETCH_FILE_MAX or size > budget:
                continue
            if file_id in self._small_inflight or self.small.has(file_id, version):
                continue
            budget -= size
            wanted.append(file_id)
        for start in range(0, len(wanted), PREFETCH_BATCH):
            batch = wanted[start:start + PREFETCH_BATCH]
            events = {fid: trio.Event() for fid in batch}
            self._small_inflight.update(events)
            self.nursery.start_soon(self._prefetch_batch, events)
        return len(wanted)

    async def _prefetch_batch(self, events: dict[str, trio.Event]) -> None:
        token = trio.lowlevel.current_trio_token()
        received = [0]  # bytes, added up on the worker thread, counted back on ours

        def fetch() -> None:
            stream = self.client.download_small_files(list(events), PREFETCH_FILE_MAX)
            try:
                for item in stream:
                    received[0] += len(item.data)
                    if not item.error:
                        self.small.put(item.file_id, int(item.version), item.data)
                        self.prefetched += 1
                    ev = events.get(item.file_id)
                    if ev is not None:
                        trio.from_thread.run_sync(self._small_done, item.file_id, ev,
                                                  trio_token=token)
            finally:
                stream.cancel()

        try:
            async with self._batch_slots:
                await self.blocking(fetch)
        except (errors.CloudError, OSError) as exc:  # readers fetch on their own
            log.debug("small-file prefetch failed: %s", exc)
        finally:
            self.bytes_downloaded += received[0]
            for fid, ev in events.items():
                self._small_done(fid, ev)

    def _small_done(self, file_id: str, ev: trio.Event) -> None:
        if self._small_inflight.get(file_id) is ev:
            del self._small_inflight[file_id]
        ev.set()

    # --- chunks ---------------------------------------------------------------------------

    def _fetch(self, file_id: str, manifest: Manifest, index: int) -> bytes:
        """One whole chunk, verified: from a node directly when the manifest says where,
        else (or when no node answers) through the gateway."""
        sha, size = manifest.chunks[index]
        where = manifest.direct(sha) if self.direct is not None else None
        if where is not None and self.direct is not None:
            data = self.direct.fetch(sha, size, where[0], where[1], manifest.node_ca_pem)
            if data is not None:  # NodeReads checked its SHA-256
                self._keep_hot(sha, data)
                return data
        return self._download(file_id, manifest.starts[index], size, sha, manifest.version)

    def _download(self, file_id: str, start: int, size: int, sha: str, version: int) -> bytes:
        """One whole chunk through the gateway (ranged DownloadFile), checked on this thread."""
        with self.client.download(file_id, start, size) as stream:
            if version and stream.info.version and stream.info.version != version:
                raise ValueError(f"{file_id} is at version {stream.info.version} now")
            data = stream.read_all()
        if len(data) != size:
            raise ValueError(f"chunk {sha[:12]}: {len(data)} bytes, expected {size}")
        return self._verified(sha, data)

    def _verified(self, sha: str, data: bytes) -> bytes:
        """``data`` once it hashes to ``sha`` (on a worker thread: hashlib drops the GIL).

        Hashing here, once, lets the cache store the chunk as verified, so it is never read
        back from disk and hashed again on the FUSE loop.
        """
        if hashlib.sha256(data).hexdigest() != sha:
            raise ValueError(f"chunk {sha[:12]} does not match its SHA-256")
        self._keep_hot(sha, data)
        return data

    def _store(self, sha: str, data: bytes) -> cf.Future[None]:
        """Queue a fetched chunk for the disk cache, off the read path (its own threads)."""
        return self._cache_pool.submit(self._cache_quietly, sha, data)

    def _cache_quietly(self, sha: str, data: bytes) -> None:
        try:
            self.cache.put(sha, data, False)
        except OSError as exc:  # a full or read-only cache disk: serve from the network
            log.warning("chunk %s not cached: %s", sha[:12], exc)

    def _keep_hot(self, sha: str, data: bytes) -> None:
        with self._hot_lock:
            self._hot[sha] = data
            self._hot.move_to_end(sha)
            while len(self._hot) > max(HOT_CHUNKS, self.read_ahead + 4):
                self._hot.popitem(last=False)

    def _hot_get(self, sha: str) -> bytes | None:
        with self._hot_lock:
            return self._hot.get(sha)

    async def chunk(self, file_id: str, manifest: Manifest, index: int,
                    ahead: bool = False) -> Path | bytes:
        """Chunk ``index`` in memory or its cached path, fetching it (once, however many ask).

        ``ahead``: asked by read-ahead, not by a reader (the hit counts are the readers')."""
        sha = manifest.chunks[index][0]
        while True:
            hot = self._hot_get(sha)
            if hot is not None:
                self._served(sha, ahead)
                return hot
            if self.cache.unchecked(sha):  # hashing 4 MiB: not on the FUSE loop
                path = await self.blocking(self.cache.get, sha)
            else:
                path = self.cache.get(sha)
            if path is not None:
                self._served(sha, ahead)
                return path
            pending = self._inflight.get(sha)
            if pending is None:
                break
            await pending.wait()  # then memory, or the cache, or a fetch of our own
        done = trio.Event()
        self._inflight[sha] = done
        try:
            data = await self.blocking(self._fetch, file_id, manifest, index)
        except ValueError:
            raise errors.Conflict("the file changed while it was read") from None
        finally:
            del self._inflight[sha]
            done.set()
        self.bytes_downloaded += len(data)
        if ahead:
            self.read_ahead_fetched += 1
            self._ahead_unread[sha] = None
            while len(self._ahead_unread) > AHEAD_REMEMBERED:
                self._ahead_unread.popitem(last=False)
        else:
            self.chunk_misses += 1
        stored = self._store(sha, data)
        if self.nursery is None:  # no background to finish it in: wait here
            await trio.to_thread.run_sync(stored.result)
        return data

    def _served(self, sha: str, ahead: bool) -> None:
        """A chunk found without a fetch: a hit for a reader (and read-ahead's, if it was)."""
        if ahead:
            return
        self.chunk_hits += 1
        if sha in self._ahead_unread:
            del self._ahead_unread[sha]
            self.read_ahead_hits += 1

    def metrics(self) -> dict[str, int]:
        """The reader's counts since the mount, for ``cloudgrpc status --json``."""
        return {"bytes_downloaded": self.bytes_downloaded,
                "chunk_cache_hits": self.chunk_hits, "chunk_cache_misses": self.chunk_misses,
                "read_ahead_chunks": self.read_ahead_fetched,
                "read_ahead_hits": self.read_ahead_hits,
                "small_file_hits": self.small_hits, "small_file_fetches": self.small_fetches}

    def _prefetch(self, file_id: str, manifest: Manifest, first: int) -> None:
        if self.nursery is None:
            return
        for index in range(first, min(first + self.read_ahead, len(manifest.chunks))):
            sha = manifest.chunks[index][0]
            if self._have_or_getting(sha) or sha in self._prefetching:
                continue
            self._prefetching.add(sha)  # once: every read of the file asks for the same ones
            self._ahead_seq += 1
            heapq.heappush(self._ahead, (index, self._ahead_seq, file_id, manifest))
        while self._ahead and self._ahead_workers < PREFETCH_PARALLEL:
            self._ahead_workers += 1
            self.nursery.start_soon(self._prefetch_worker)

    def _have_or_getting(self, sha: str) -> bool:
        return sha in self._inflight or sha in self._hot or sha in self.cache._lru

    async def _prefetch_worker(self) -> None:
        """Fetch queued read-ahead, nearest chunk first, until none is left.

        A few workers and one queue ordered by position, rather than a task per chunk:
        the tasks would start in any order (trio does not keep it), so chunks far ahead
        took the slots while the one the reader waits for next had to be fetched on the
        side, and every read queued the same chunks again.
        """
        try:
            while self._ahead:
                index, _, file_id, manifest = heapq.heappop(self._ahead)
                sha = manifest.chunks[index][0]
                try:
                    if not self._have_or_getting(sha):  # else a reader got there first
                        await self.chunk(file_id, manifest, index, ahead=True)
                except (errors.CloudError, OSError) as exc:  # the reader will ask again
                    log.debug("read-ahead of %s chunk %d failed: %s", file_id, index, exc)
                finally:
                    self._prefetching.discard(sha)
        finally:
            self._ahead_workers -= 1

    # --- read -----------------------------------------------------------------------------

    async def read(self, file_id: str, version: int, offset: int, length: int,
                   state: ReadState | None = None, size: int | None = None
                   ) -> bytes | memoryview:
        """``length`` bytes at ``offset`` of the file (fewer at its end).

        A read inside one chunk held in memory is a view of it, not a copy.

        ``size`` is the file's size as last known: a small file is read whole in one call.
        """
        if size is not None and size <= SMALL_FILE_MAX:
            data = await self.small_file(file_id, version)
            if data is not None:
                return data[offset:offset + length]
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
                    state: ReadState | None) -> bytes | memoryview:
        end = min(offset + length, manifest.size)
        if offset >= end:
            return b""
        if state is not None:
            # the kernel issues reads asynchronously, a little out of order: near enough is
            # sequential
            near = abs(offset - state.next_offset) <= 2 * MiB
            state.sequential = state.sequential + 1 if near else 0
            state.next_offset = max(end, state.next_offset) if near else end
        parts: list[bytes | memoryview] = []
        pos = offset
        index = manifest.index(pos)
        while pos < end:
            start = manifest.starts[index]
            size = manifest.chunks[index][1]
            if state is not None and (state.sequential or offset == 0):
                self._prefetch(file_id, manifest, index + 1)
            got = await self.chunk(file_id, manifest, index)
            lo = pos - start
            hi = min(end - start, size)
            if isinstance(got, bytes):
                parts.append(memoryview(got)[lo:hi])  # no copy: pyfuse3 takes any buffer
            else:
                fd = os.open(got, os.O_RDONLY | os.O_NOFOLLOW)
                try:
                    parts.append(os.pread(fd, hi - lo, lo))
                finally:
                    os.close(fd)
            pos = start + hi
            index += 1
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def copy_into(self, file_id: str, version: int, fd: int, size: int) -> None:
        """Write the whole file into ``fd`` (a staging copy about to be modified)."""
        if size and size <= SMALL_FILE_MAX:
            whole = await self.small_file(file_id, version)
            if whole is not None:
                os.pwrite(fd, whole, 0)
                return
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


def _lower_priority() -> None:
    """Run the calling thread at a lower CPU priority (Linux: a thread is its own task)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), CACHE_WRITER_NICE)
    except (OSError, AttributeError):
        pass  # not Linux, or not allowed: normal priority then
