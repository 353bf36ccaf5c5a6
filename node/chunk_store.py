"""Content-addressed chunk files on the node's local disk.

A chunk lives at ``root/chunks/ab/cd/<sha256>``: the name *is* the SHA-256 of the content, so
identical chunks are stored once and every read can prove the bytes are still the ones written.
A chunk that compresses well is kept as ``<sha256>.zst`` instead, one zstd frame of the same
plaintext (see ``chunk_codec``): the suffix, not the content, says which form a file is, so
raw files written before compression existed (or by a node with it off) keep working as
they are, and a raw chunk can never be mistaken for a frame. Everything the store answers
speaks of the plaintext (ids, sizes, ranges, hashes), except ``used_bytes``: disk bytes,
what capacity is about; ``logical_bytes`` is the same chunks' plaintext size.

Writes go to ``root/tmp/`` first, are fsynced and renamed into place (then the directory is
fsynced), so a crash leaves either the whole chunk or nothing; leftovers in ``tmp/`` are
removed when the store opens. Chunks are user data: every file is 0600 and every folder 0700
whatever the umask, the root must belong to the node's user, and a store written looser by
an earlier version is tightened once on open.

``used_bytes`` / ``logical_bytes`` / ``chunk_count`` are kept in memory (one scan at start)
because the node reports them on every heartbeat and checks capacity on every put; only an
outside process resizing chunk files can make them drift, and a restart rescans.

The store sits on the download hot path: a read is one ``os.read`` of the whole file (one
bounded zstd decode for a compressed chunk) and one ``hashlib.sha256`` over the plaintext
(both release the GIL), with no per-block Python loops. A file larger than any chunk can be
is refused before it is read, so a hostile or corrupt file cannot exhaust memory.
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
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import grpc

from cloudgrpc_proto import errors
from cloudgrpc_proto.private_files import private_dir, tighten_tree

from .chunk_codec import FRAME_HEADER_MAX, ChunkCodec, FrameRefused

log = logging.getLogger(__name__)

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
COMPRESSED_SUFFIX = ".zst"
# A file name in a fan-out folder: a raw chunk or its compressed form.
_CHUNK_FILE_RE = re.compile(r"(?P<sha>[0-9a-f]{64})(?P<zst>\.zst)?")
# A frame can outgrow its plaintext a little (incompressible input); nothing else may.
_FRAME_SLACK = 64 * 1024
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


class ChunkEntry(NamedTuple):
    """One stored chunk, as ``ChunkStore.iter_entries`` finds it on disk."""

    sha256: str
    size: int  # the plaintext's size: what the wire and the gateway call the chunk's size
    stored_bytes: int  # what its file(s) take on disk
    logical_bytes: int  # the plaintext size its file(s) stand for (accounting)
    mtime: int = 0  # its newest file's modification time, unix seconds


class _StoredForm(NamedTuple):
    """One file holding a chunk: raw or compressed."""

    path: Path
    compressed: bool
    stored_bytes: int
    mtime: float


class _Oversized(Exception):
    """A chunk file larger than any chunk can be: never read into memory."""


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


def _read_all(path: Path, limit: int) -> bytes:
    """Read a whole file with one syscall in the common case (no per-block Python loop).

    A file larger than ``limit`` is not read at all (``_Oversized``): no chunk is that
    large, so it is corrupt or planted, and reading it could exhaust memory.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise _Oversized(f"{size} bytes")
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


def _read_head(path: Path, count: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, count, 0)
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
    """Chunks on local disk, named by SHA-256, verified on every read. Thread-safe.

    ``codec`` decides which chunks are kept compressed; without one nothing new is
    compressed, but compressed files already in the store are still read.
    """

    def __init__(self, root: Path, capacity_bytes: int, codec: ChunkCodec | None = None,
                 *, cache_writes: bool = False) -> None:
        """``cache_writes``: keep a written chunk in the page cache. Off by default: a node
        takes in chunks far faster than anything reads them back (readers are other
        machines, and a mount keeps its own cache), and page-cache pages that are never
        given back make every write take fresh memory. Measured on the 2-core test VM, 512
        MiB of fsynced 4 MiB chunks cost 1.7-1.8 s of system time kept cached and 0.2 s
        dropped after the fsync; reads still fill the cache as usual."""
        if capacity_bytes <= 0:
            raise ValueError("capacity_bytes must be positive")
        self.cache_writes = cache_writes
        self.root = Path(root)
        self.capacity_bytes = int(capacity_bytes)
        self.codec = codec or ChunkCodec(enabled=False)
        self.max_chunk_bytes = self.codec.max_plain_bytes
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
        self._logical = 0
        self._count = 0
        self._reserved = 0  # bytes of puts in flight, so concurrent puts cannot overshoot
        self._remove_stale_tmp()
        self._used, self._logical, self._count = self._scan()
        log.info(
            "chunk store %s: %d chunks, %d bytes used of %d (%d bytes before compression; "
            "compression %s)",
            self.root,
            self._count,
            self._used,
            self.capacity_bytes,
            self._logical,
            self.codec.name,
        )

    # -- accounting -----------------------------------------------------------------------

    @property
    def used_bytes(self) -> int:
        """Bytes the stored chunks take on disk (reported on heartbeats; capacity counts it)."""
        with self._lock:
            return self._used

    @property
    def logical_bytes(self) -> int:
        """The stored chunks' plaintext size: ``used_bytes`` before compression."""
        with self._lock:
            return self._logical

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

    def _scan(self) -> tuple[int, int, int]:
        used = logical = count = 0
        for entry in self.iter_entries():
            used += entry.stored_bytes
            logical += entry.logical_bytes
            count += 1
        return used, logical, count

    # -- paths ----------------------------------------------------------------------------

    def path_for(self, sha256: str) -> Path:
        """Where chunk ``sha256`` lives raw (two levels of fan-out keep directories small)."""
        return self._chunks / sha256[:2] / sha256[2:4] / sha256

    def compressed_path_for(self, sha256: str) -> Path:
        """Where chunk ``sha256`` lives when it is kept compressed (beside the raw name)."""
        return self._chunks / sha256[:2] / sha256[2:4] / (sha256 + COMPRESSED_SUFFIX)

    def stored_path(self, sha256: str) -> Path | None:
        """The file holding chunk ``sha256`` (raw or compressed), None when absent."""
        for form in self._stored_forms(check_sha256(sha256)):
            return form.path
        return None

    def _forms(self, sha256: str) -> tuple[tuple[Path, bool], tuple[Path, bool]]:
        return (self.path_for(sha256), False), (self.compressed_path_for(sha256), True)

    def _stored_forms(self, sha256: str) -> list[_StoredForm]:
        found = []
        for path, compressed in self._forms(sha256):
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            found.append(_StoredForm(path, compressed, st.st_size, st.st_mtime))
        return found

    def _stripe(self, sha256: str) -> threading.Lock:
        return self._stripes[int(sha256[:2], 16) % _STRIPES]

    def _file_limit(self, compressed: bool) -> int:
        return self.max_chunk_bytes + (_FRAME_SLACK if compressed else 0)

    def _logical_size(self, path: Path, compressed: bool, stored_bytes: int) -> int:
        """The plaintext size a file stands for; a frame's header says it (a file whose
        header is unusable counts as its disk size: it is corrupt, and reads say so)."""
        if not compressed:
            return stored_bytes
        try:
            return self.codec.plain_size(_read_head(path, FRAME_HEADER_MAX))
        except (FrameRefused, OSError):
            return stored_bytes

    # -- operations -----------------------------------------------------------------------

    def put(self, sha256: str, data: bytes) -> PutResult:
        """Store ``data`` under ``sha256`` atomically; idempotent.

        The codec picks the form (compressed when that saves enough). Raises
        InvalidArgument when the data does not hash to ``sha256`` or is larger than a chunk
        can be, and QuotaExceeded when the node is full. A present but corrupt copy is
        replaced.
        """
        check_sha256(sha256)
        size = len(data)
        if size > self.max_chunk_bytes:
            raise errors.InvalidArgument(
                f"chunk of {size} bytes is larger than a chunk may be ({self.max_chunk_bytes})")
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise errors.InvalidArgument(
                f"chunk data does not match its id: expected {sha256}, got {actual}"
            )
        with self._stripe(sha256):
            existing = self._stored_forms(sha256)
            for form in existing:
                if self._holds(form, data):
                    # Touch it: garbage collection spares chunks put again recently.
                    os.utime(form.path)
                    return PutResult(already_present=True, used_bytes=self.used_bytes)
            if existing:
                log.warning("chunk %s on disk is corrupt: replacing it", sha256)
            frame = self.codec.encode(data)
            target, payload = ((self.compressed_path_for(sha256), frame) if frame is not None
                               else (self.path_for(sha256), data))
            old_used = old_logical = 0
            for form in existing:
                old_used += form.stored_bytes
                old_logical += self._logical_size(form.path, form.compressed, form.stored_bytes)
            growth = len(payload) - old_used
            self._reserve(sha256, growth)
            try:
                self._write_atomically(target, payload)
            except BaseException:
                with self._lock:
                    self._reserved -= max(growth, 0)
                raise
            # A corrupt copy in the same form was replaced by the rename; one in the other
            # form goes now (after the good copy landed: a crash never leaves neither).
            kept_used = kept_logical = 0
            for form in existing:
                if form.path == target:
                    continue
                try:
                    _unlink_quietly(form.path)
                except OSError as exc:
                    log.error("cannot remove corrupt %s: %s", form.path, exc)
                    kept_used += form.stored_bytes
                    kept_logical += self._logical_size(form.path, form.compressed,
                                                       form.stored_bytes)
            with self._lock:
                self._reserved -= max(growth, 0)
                self._used += growth + kept_used
                self._logical += size - old_logical + kept_logical
                if not existing:
                    self._count += 1
                used = self._used
        return PutResult(already_present=False, used_bytes=used)

    def _holds(self, form: _StoredForm, data: bytes) -> bool:
        """Does this file hold exactly ``data``? (``data`` is proven to hash to the chunk's
        name, so comparing bytes is the cheapest check: memcmp instead of a second hash.)"""
        if not form.compressed and form.stored_bytes != len(data):
            return False
        try:
            blob = _read_all(form.path, self._file_limit(form.compressed))
            return (self.codec.decode(blob) if form.compressed else blob) == data
        except (FileNotFoundError, _Oversized, FrameRefused):
            return False

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
                if not self.cache_writes:
                    # clean after the fsync: the pages go back at once (see __init__)
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
            parent = path.parent
            if not parent.is_dir():
                top_is_new = not parent.parent.is_dir()
                private_dir(parent)  # and the missing fan-out folder above it, 0700
                _fsync_dir(parent.parent)  # holds the new folder's name
                if top_is_new:
                    _fsync_dir(parent.parent.parent)  # and the new one above it
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

    def _load(self, sha256: str) -> bytes | None:
        """The chunk's verified plaintext; None when no file holds it; ChunkCorrupt when
        every file that does is bad (unreadable frame, oversized, or the wrong bytes)."""
        found = False
        for path, compressed in self._forms(sha256):
            try:
                blob = _read_all(path, self._file_limit(compressed))
            except FileNotFoundError:
                continue
            except _Oversized as exc:
                found = True
                log.error("chunk %s is corrupt on disk: file of %s", sha256, exc)
                continue
            found = True
            if compressed:
                try:
                    blob = self.codec.decode(blob)
                except FrameRefused as exc:
                    log.error("chunk %s is corrupt on disk: %s", sha256, exc)
                    continue
            if hashlib.sha256(blob).hexdigest() == sha256:
                return blob
            log.error("chunk %s is corrupt on disk (%d bytes)", sha256, len(blob))
        if found:
            raise ChunkCorrupt(f"chunk corrupt: {sha256} no longer matches its hash")
        return None

    def read(self, sha256: str, offset: int = 0, length: int = 0) -> tuple[bytes, int]:
        """Return ``(data[offset:offset+length], chunk_size)`` after verifying the whole chunk.

        Offsets, lengths and the size are the plaintext's, whatever form the file has.
        ``length`` 0 means to the end. Raises NotFound, InvalidArgument (bad range) or
        ChunkCorrupt (the file no longer hashes to its name).
        """
        check_sha256(sha256)
        if offset < 0 or length < 0:
            raise errors.InvalidArgument("offset and length must not be negative")
        data = self._load(sha256)
        if data is None:
            raise errors.NotFound(f"chunk {sha256} not on this node")
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
            with self._stripe(sha):
                forms = self._stored_forms(sha)
                if not forms or (skip_modified_within_s and any(
                        now - f.mtime < skip_modified_within_s for f in forms)):
                    continue
                if not self._drop(forms, lambda form: os.unlink(form.path)):
                    continue
            deleted += 1
        return deleted

    def _drop(self, forms: list[_StoredForm], remove: Callable[[_StoredForm], object]) -> bool:
        """Remove a chunk's files with ``remove`` and take them out of the counters
        (call under the chunk's stripe). False when another remover was first."""
        freed = logical = 0
        gone = False
        for form in forms:
            plain = self._logical_size(form.path, form.compressed, form.stored_bytes)
            try:
                remove(form)
            except FileNotFoundError:
                continue
            freed += form.stored_bytes
            logical += plain
            gone = True
        if gone:
            with self._lock:
                self._used -= freed
                self._logical -= logical
                self._count -= 1
        return gone

    def quarantine(self, sha256: str) -> bool:
        """Move a corrupt chunk aside (kept for inspection, no longer served or counted)."""
        check_sha256(sha256)
        target = private_dir(self.root / "quarantine")
        stamp = int(time.time())

        def move(form: _StoredForm) -> None:
            os.rename(form.path, target / f"{form.path.name}.{stamp}")

        with self._stripe(sha256):
            return self._drop(self._stored_forms(sha256), move)

    def has(self, sha256s: Iterable[str]) -> list[str]:
        """The subset of ``sha256s`` stored here, in request order (presence only, no hashing)."""
        names = [check_sha256(s) for s in sha256s]
        return [sha for sha in dict.fromkeys(names)
                if any(path.is_file() for path, _ in self._forms(sha))]

    def iter_entries(self) -> Iterator[ChunkEntry]:
        """Every stored chunk with its plaintext and disk sizes and its newest file's
        modification time (other files are ignored)."""
        for top in _subdirs(self._chunks):
            for mid in _subdirs(top.path):
                try:
                    entries = list(os.scandir(mid.path))
                except FileNotFoundError:
                    continue
                forms: dict[str, list[_StoredForm]] = {}
                for entry in entries:
                    match = _CHUNK_FILE_RE.fullmatch(entry.name)
                    if match is None:
                        continue
                    try:
                        if not entry.is_file(follow_symlinks=False):
                            continue
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    forms.setdefault(match["sha"], []).append(_StoredForm(
                        Path(entry.path), bool(match["zst"]), st.st_size, st.st_mtime))
                for sha, found in forms.items():
                    sizes = [self._logical_size(f.path, f.compressed, f.stored_bytes)
                             for f in found]
                    yield ChunkEntry(sha, sizes[0], sum(f.stored_bytes for f in found),
                                     sum(sizes), int(max(f.mtime for f in found)))

    def iter_chunks(self) -> Iterator[tuple[str, int]]:
        """Yield ``(sha256, plaintext size)`` of every stored chunk (ListChunks' answer)."""
        for entry in self.iter_entries():
            yield entry.sha256, entry.size

    def iter_chunk_entries(self) -> Iterator[tuple[str, int, int]]:
        """Yield ``(sha256, plaintext size, mtime unix seconds)`` of every stored chunk: the
        time tells fsck a stray file an upload may still record from an old leftover."""
        for entry in self.iter_entries():
            yield entry.sha256, entry.size, entry.mtime

    def verify(self, sha256: str) -> VerifyResult:
        """Re-hash a stored chunk (used by the gateway's scrubber and the node's own)."""
        check_sha256(sha256)
        try:
            present = self._load(sha256) is not None
        except ChunkCorrupt:
            return VerifyResult(present=True, valid=False)
        return VerifyResult(present=present, valid=present)


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _subdirs(path: str | Path) -> list[os.DirEntry[str]]:
    try:
        return [e for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []
