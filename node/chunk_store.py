"""Content-addressed chunk files on the node's local disk.

A chunk lives at ``root/chunks/ab/cd/<sha256>``: the name *is* the SHA-256 of the content, so
identical chunks are stored once and every read can prove the bytes are still the ones written.
Writes go to ``root/tmp/`` first, are fsynced and renamed into place (then the directory is
fsynced), so a crash leaves either the whole chunk or nothing; leftovers in ``tmp/`` are
removed when the store opens. Chunks are user data: every file is 0600 and every folder 0700
whatever the umask, the root must belong to the node's user, and a store written looser by
an earlier version is tightened once on open.

``used_bytes`` / ``chunk_count`` are kept in memory (one scan at start) because the node
reports them on every heartbeat and checks capacity on every put; only an outside process
resizing chunk files can make them drift, and a restart rescans.

The store sits on the download hot path: a read is one ``os.read`` of the whole file and one
``hashlib.sha256`` over it (which releases the GIL), with no per-block Python loops.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import grpc

from cloudgrpc_proto import errors
from cloudgrpc_proto.private_files import private_dir, tighten_tree

log = logging.getLogger(__name__)

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
# Puts and deletes of the same chunk must not interleave (double counting, a delete racing a
# rename); chunks are spread over stripes by their first byte so unrelated chunks never wait.
_STRIPES = 256


class ChunkCorrupt(errors.CloudError):
    """A stored chunk no longer matches its SHA-256 (bit rot, a torn or tampered file)."""

    # DATA_LOSS tells the gateway this replica is bad (skip it and repair), not that the
    # request was wrong; the shared table has no such class, so the node defines it.
    code = grpc.StatusCode.DATA_LOSS
    errno = errno.EIO
    exit_code = 1


class PutResult(NamedTuple):
    """Outcome of ``ChunkStore.put``."""

    already_present: bool
    used_bytes: int


class VerifyResult(NamedTuple):
    """Outcome of ``ChunkStore.verify``."""

    present: bool
    valid: bool


def check_sha256(sha256: str) -> str:
    """Return ``sha256`` if it is 64 lowercase hex digits, else raise InvalidArgument.

    Chunk names become file paths: anything else could escape the store directory.
    """
    if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256):
        raise errors.InvalidArgument(f"malformed chunk id {sha256!r}: want 64 lowercase hex digits")
    return sha256


def _read_all(path: Path) -> bytes:
    """Read a whole file with one syscall in the common case (no per-block Python loop)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        data = os.read(fd, size)
        if len(data) < size:  # short read (huge file or signal): finish it the slow way
            parts = [data]
            got = len(data)
            while got < size:
                part = os.read(fd, size - got)
                if not part:
                    break
                parts.append(part)
                got += len(part)
            data = b"".join(parts)
        return data
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ChunkStore:
    """Chunks on local disk, named by SHA-256, verified on every read. Thread-safe."""

    def __init__(self, root: Path, capacity_bytes: int) -> None:
        if capacity_bytes <= 0:
            raise ValueError("capacity_bytes must be positive")
        self.root = Path(root)
        self.capacity_bytes = int(capacity_bytes)
        self._chunks = self.root / "chunks"
        self._tmp = self.root / "tmp"
        private_dir(self.root)  # ours, not a symlink, 0700: refused otherwise
        private_dir(self._chunks)
        private_dir(self._tmp)
        tightened = tighten_tree(self.root)
        if tightened:
            log.info("chunk store %s: made %d files and folders private", self.root, tightened)
        self._lock = threading.Lock()  # guards the counters below
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._used = 0
        self._count = 0
        self._reserved = 0  # bytes of puts in flight, so concurrent puts cannot overshoot
        self._remove_stale_tmp()
        self._used, self._count = self._scan()
        log.info(
            "chunk store %s: %d chunks, %d bytes used of %d",
            self.root,
            self._count,
            self._used,
            self.capacity_bytes,
        )

    # -- accounting -----------------------------------------------------------------------

    @property
    def used_bytes(self) -> int:
        """Bytes held by stored chunks (reported on heartbeats)."""
        with self._lock:
            return self._used

    @property
    def chunk_count(self) -> int:
        """Number of stored chunks."""
        with self._lock:
            return self._count

    @property
    def free_bytes(self) -> int:
        """Capacity left for new chunks (never negative)."""
        with self._lock:
            return max(0, self.capacity_bytes - self._used - self._reserved)

    def _remove_stale_tmp(self) -> None:
        """Drop half-written files of a previous run: they were never renamed, so never valid."""
        for entry in os.scandir(self._tmp):
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
                log.info("removed stale temporary file %s", entry.path)
            except FileNotFoundError:
                pass

    def _scan(self) -> tuple[int, int]:
        used = count = 0
        for _sha, size in self.iter_chunks():
            used += size
            count += 1
        return used, count

    # -- paths ----------------------------------------------------------------------------

    def path_for(self, sha256: str) -> Path:
        """Where chunk ``sha256`` lives (two levels of fan-out keep directories small)."""
        return self._chunks / sha256[:2] / sha256[2:4] / sha256

    def _stripe(self, sha256: str) -> threading.Lock:
        return self._stripes[int(sha256[:2], 16) % _STRIPES]

    # -- operations -----------------------------------------------------------------------

    def put(self, sha256: str, data: bytes) -> PutResult:
        """Store ``data`` under ``sha256`` atomically; idempotent.

        Raises InvalidArgument when the data does not hash to ``sha256`` and QuotaExceeded
        when the node is full. A present but corrupt copy is replaced.
        """
        check_sha256(sha256)
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise errors.InvalidArgument(
                f"chunk data does not match its id: expected {sha256}, got {actual}"
            )
        size = len(data)
        path = self.path_for(sha256)
        with self._stripe(sha256):
            old_size = self._existing_size(path)
            if old_size is not None:
                # The data is proven to hash to sha256, so comparing bytes is the cheapest
                # way to know the stored copy is valid (memcmp instead of a second hash).
                if old_size == size and _read_all(path) == data:
                    # Touch it: garbage collection spares chunks put again recently.
                    os.utime(path)
                    return PutResult(already_present=True, used_bytes=self.used_bytes)
                log.warning("chunk %s on disk is corrupt: replacing it", sha256)
            growth = size - (old_size or 0)
            self._reserve(sha256, growth)
            try:
                self._write_atomically(path, data)
            except BaseException:
                with self._lock:
                    self._reserved -= max(growth, 0)
                raise
            with self._lock:
                self._reserved -= max(growth, 0)
                self._used += growth
                if old_size is None:
                    self._count += 1
                used = self._used
        return PutResult(already_present=False, used_bytes=used)

    def _existing_size(self, path: Path) -> int | None:
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return None

    def _reserve(self, sha256: str, growth: int) -> None:
        if growth <= 0:
            return
        with self._lock:
            if self._used + self._reserved + growth > self.capacity_bytes:
                raise errors.QuotaExceeded(
                    f"node full: chunk {sha256[:12]}… needs {growth} bytes, "
                    f"{self.capacity_bytes - self._used - self._reserved} free "
                    f"of {self.capacity_bytes}"
                )
            self._reserved += growth

    def _write_atomically(self, path: Path, data: bytes) -> None:
        """tmp file -> fsync -> rename -> fsync dir: readers see all of the chunk or none."""
        tmp = self._tmp / f"{path.name}.{secrets.token_hex(8)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                os.fsync(fd)
            finally:
                os.close(fd)
            parent = path.parent
            if not parent.is_dir():
                private_dir(parent)  # and the missing fan-out folder above it, 0700
                _fsync_dir(parent.parent)
                _fsync_dir(parent.parent.parent)
            os.rename(tmp, path)
            _fsync_dir(parent)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise errors.QuotaExceeded(f"node full: disk says {exc.strerror}") from exc
            raise

    def read(self, sha256: str, offset: int = 0, length: int = 0) -> tuple[bytes, int]:
        """Return ``(data[offset:offset+length], chunk_size)`` after verifying the whole chunk.

        ``length`` 0 means to the end. Raises NotFound, InvalidArgument (bad range) or
        ChunkCorrupt (the file no longer hashes to its name).
        """
        check_sha256(sha256)
        if offset < 0 or length < 0:
            raise errors.InvalidArgument("offset and length must not be negative")
        try:
            data = _read_all(self.path_for(sha256))
        except FileNotFoundError:
            raise errors.NotFound(f"chunk {sha256} not on this node") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            log.error("chunk %s is corrupt on disk (%d bytes)", sha256, len(data))
            raise ChunkCorrupt(f"chunk corrupt: {sha256} no longer matches its hash")
        size = len(data)
        if offset > size:
            raise errors.InvalidArgument(f"offset {offset} beyond chunk size {size}")
        end = size if length == 0 else min(size, offset + length)
        if offset == 0 and end == size:
            return data, size  # the common whole-chunk read: no copy at all
        return bytes(memoryview(data)[offset:end]), size

    def get(self, sha256: str, offset: int = 0, length: int = 0) -> bytes:
        """The verified bytes of a chunk (or a slice of it); see ``read``."""
        return self.read(sha256, offset, length)[0]

    def delete(self, sha256s: Iterable[str], skip_modified_within_s: float = 0) -> int:
        """Delete the given chunks; absent ones are skipped. Returns how many were deleted.

        With ``skip_modified_within_s``, a chunk written or put again that recently is kept:
        garbage collection uses it so that an upload that has just claimed the chunk again
        does not lose it to a collection decided a moment earlier.
        """
        names = [check_sha256(s) for s in sha256s]
        deleted = 0
        now = time.time()
        for sha in dict.fromkeys(names):
            path = self.path_for(sha)
            with self._stripe(sha):
                try:
                    st = path.stat()
                    if skip_modified_within_s and now - st.st_mtime < skip_modified_within_s:
                        continue
                    size = st.st_size
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                with self._lock:
                    self._used -= size
                    self._count -= 1
            deleted += 1
        return deleted

    def quarantine(self, sha256: str) -> bool:
        """Move a corrupt chunk aside (kept for inspection, no longer served or counted)."""
        path = self.path_for(check_sha256(sha256))
        target = private_dir(self.root / "quarantine")
        with self._stripe(sha256):
            try:
                size = path.stat().st_size
                os.rename(path, target / f"{sha256}.{int(time.time())}")
            except FileNotFoundError:
                return False
            with self._lock:
                self._used -= size
                self._count -= 1
        return True

    def has(self, sha256s: Iterable[str]) -> list[str]:
        """The subset of ``sha256s`` stored here, in request order (presence only, no hashing)."""
        names = [check_sha256(s) for s in sha256s]
        return [sha for sha in dict.fromkeys(names) if self.path_for(sha).is_file()]

    def iter_chunks(self) -> Iterator[tuple[str, int]]:
        """Yield ``(sha256, size)`` of every stored chunk (files with other names are ignored)."""
        for sha, size, _ in self.iter_chunk_entries():
            yield sha, size

    def iter_chunk_entries(self) -> Iterator[tuple[str, int, int]]:
        """Yield ``(sha256, size, mtime unix seconds)`` of every stored chunk: the time
        tells fsck a stray file an upload may still record from an old leftover."""
        for top in _subdirs(self._chunks):
            for mid in _subdirs(top.path):
                try:
                    entries = list(os.scandir(mid.path))
                except FileNotFoundError:
                    continue
                for entry in entries:
                    if not _SHA256_RE.fullmatch(entry.name):
                        continue
                    try:
                        if entry.is_file(follow_symlinks=False):
                            st = entry.stat(follow_symlinks=False)
                            yield entry.name, st.st_size, int(st.st_mtime)
                    except FileNotFoundError:
                        continue

    def verify(self, sha256: str) -> VerifyResult:
        """Re-hash a stored chunk (used by the gateway's scrubber)."""
        check_sha256(sha256)
        try:
            data = _read_all(self.path_for(sha256))
        except FileNotFoundError:
            return VerifyResult(present=False, valid=False)
        return VerifyResult(present=True, valid=hashlib.sha256(data).hexdigest() == sha256)


def _subdirs(path: str | Path) -> list[os.DirEntry[str]]:
    try:
        return [e for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []
