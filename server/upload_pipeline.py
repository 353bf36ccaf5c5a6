"""From a stream of UploadFile messages to a committed file.

The stream is cut into ``CHUNK_SIZE`` chunks as it arrives; each chunk is hashed and
handed to the replicated store on a worker while the next one is received, with a bound
on chunks in flight so memory stays flat whatever the file size. The quota is checked
against the announced size before the first byte is stored, and every chunk is reserved
against it (``reservations.py``) *before* it goes to the nodes, so parallel or aborted
uploads never put more than the quota there. Nothing becomes visible until every chunk is
stored and the metadata commits in one transaction (which also ends the reservation); if
anything fails, the stored chunks stay parked against the quota until garbage collection
takes them or a resume reuses them, and the caller gets one clear error.

Replies say ``chunks_deduplicated`` only for chunks the caller already held: whether
another user stores the same bytes is never told.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto.errors import (
    CloudError,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    QuotaExceeded,
    Unavailable,
)

from .accounts import Accounts, Caller
from .config import Settings
from .direct_writes import DirectWrites, Receipted
from .events import EventBus
from .models import File
from .namespace import ChunkSpan, Namespace, SmallCommit, check_name
from .replicated_store import ReplicatedStore
from .reservations import Reservation, Reservations

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 4
MAX_SMALL_FILES = 1000  # per UploadSmallFiles call
MAX_SMALL_BATCH_BYTES = 48 * 1024 * 1024  # under the 64 MiB message limit
# How long after its stream ended an upload of unknown size may still turn out cancelled
# (see UploadPipeline.run).
UNKNOWN_SIZE_END_GRACE_S = 0.1
# Chunks written under grants are recorded this many at a time, or after this long.
RECEIPT_BATCH = 64
RECEIPT_WAIT_S = 2.0


def _bad_name(name: str) -> CloudError | None:
    """The namespace's name check, before any query sees the name."""
    try:
        check_name(name, "filename")
    except CloudError as exc:
        return exc
    return None


@dataclass
class _Hold:
    """An upload's reservation and the chunks it put on the nodes or took over (hash ->
    size): what stays parked against the quota if it never commits."""

    reservation: Reservation
    taken: dict[str, int] = field(default_factory=dict)


@dataclass
class UploadResult:
    file: File
    chunks_stored: int
    chunks_deduplicated: int


class UploadPipeline:
    def __init__(self, settings: Settings, accounts: Accounts, namespace: Namespace,
                 store: ReplicatedStore, events: EventBus,
                 reservations: Reservations | None = None) -> None:
        self.settings = settings
        self.accounts = accounts
        self.namespace = namespace
        self.store = store
        self.events = events
        self.reservations = reservations or namespace.reservations or Reservations(
            settings, store.db)
        self.workers = cf.ThreadPoolExecutor(max_workers=8, thread_name_prefix="upload")
        # chunks clients wrote to the nodes themselves arrive as references with receipts
        self.direct = DirectWrites(settings, namespace, store, self.reservations)

    def run(self, requests: Iterator[pb.UploadFileRequest],
            caller_waits: Callable[[float], bool] = lambda _s: True) -> UploadResult:
        """Store and commit one upload. ``caller_waits(s)`` says whether the caller is still
        there, watching for up to ``s`` seconds for a cancel: it is asked just before the
        commit, so a call cancelled mid-stream never commits.

        Why the wait: gRPC can hand a cancelled stream to the handler as a plain end of the
        stream, and learn of the cancel a moment later. For a file of unknown size that end
        is the commit signal, so the commit waits until ``UNKNOWN_SIZE_END_GRACE_S`` after
        the end (the last chunk's flush usually takes longer: no wait at all)."""
        first = next(requests, None)
        if first is None or first.WhichOneof("data") != "metadata":
            raise InvalidArgument("the first message of an upload must be its metadata")
        meta = first.metadata
        caller = self.accounts.authenticate(meta.session_token)
        upload_id = meta.upload_id or uuid.uuid4().hex[:12]
        if meta.file_size < 0:
            raise InvalidArgument("file_size cannot be negative")
        name = meta.filename
        if not meta.overwrite_file_id and "/" in name:
            raise InvalidArgument("filename must be a plain name; use parent_folder_id")
        owner_id, room, replaces, frees = self.namespace.prepare_upload(
            caller, meta.parent_folder_id, name, meta.file_size, meta.overwrite_file_id,
            meta.replace_existing)
        started = time.monotonic()
        log.info("upload %s: start %r (%d bytes announced) by %s", upload_id, name,
                 meta.file_size, caller.email)
        hold = _Hold(self.reservations.open(owner_id, replaces, frees))
        ended: list[float] = []

        def marked() -> Iterator[pb.UploadFileRequest]:
            yield from requests
            ended.append(time.monotonic())

        try:
            spans, stored, deduped, total = self._receive(caller, marked(), meta, room,
                                                          upload_id, hold)
            if meta.file_size and total != meta.file_size:
                raise InvalidArgument(
                    f"upload ended after {total} bytes but announced {meta.file_size}")
            self._check_replicated(spans, upload_id)
            grace = 0.0 if meta.file_size else max(
                0.0, UNKNOWN_SIZE_END_GRACE_S - (time.monotonic() - ended[-1]))
            if not caller_waits(grace):
                raise DeadlineExceeded("the upload was cancelled before its end: nothing stored")
            f = self.namespace.commit_upload(
                caller, parent_id=meta.parent_folder_id, name=name, mime_type=meta.mime_type,
                spans=spans, size=total, overwrite_file_id=meta.overwrite_file_id,
                replace_existing=meta.replace_existing, mode=meta.mode, uid=meta.uid,
                gid=meta.gid, mtime_ns=meta.mtime_ns, expected_version=meta.expected_version,
                reservation_id=hold.reservation.id, parent_mtime_ns=meta.parent_mtime_ns,
                rdev=meta.rdev)
        except BaseException:
            self._abandon(hold, upload_id)
            raise
        finally:
            if meta.upload_id:  # its direct-write grants end (see DirectWrites.release)
                self._release_grants(caller.user_id, meta.upload_id)
        elapsed = time.monotonic() - started
        log.info("upload %s: committed %s (%d bytes, %d chunks, %d deduplicated) in %.2fs",
                 upload_id, f.id, total, len(spans), deduped, elapsed)
        self.events.emit("upload", f"{f.name} uploaded ({total} bytes)", caller.user_id,
                         file_id=f.id, size=total, chunks=len(spans), deduplicated=deduped,
                         upload_id=upload_id, seconds=round(elapsed, 3))
        return UploadResult(f, stored, deduped)

    def run_small(self, request: pb.UploadSmallFilesRequest
                  ) -> list[UploadResult | CloudError]:
        """A batch of small files: stored together, committed together, judged one by one.

        The whole-call checks (session, batch limits) fail the call; anything about one
        file (its name, its folder, quota, a changed version) fails only that file.
        """
        caller = self.accounts.authenticate(request.session_token)
        files = request.files
        if len(files) > MAX_SMALL_FILES:
            raise InvalidArgument(f"at most {MAX_SMALL_FILES} files per batch")
        total = sum(len(f.data) for f in files)
        if total > MAX_SMALL_BATCH_BYTES:
            raise InvalidArgument(f"a batch holds at most {MAX_SMALL_BATCH_BYTES} bytes")
        upload_id = next((f.metadata.upload_id for f in files if f.metadata.upload_id), "") \
            or uuid.uuid4().hex[:12]
        started = time.monotonic()
        errors: dict[int, CloudError] = {}
        chunks: dict[str, bytes] = {}
        hashes: list[str] = []
        for index, item in enumerate(files):
            meta, data = item.metadata, item.data
            sha = hashlib.sha256(data).hexdigest() if data else ""
            hashes.append(sha)
            if len(data) > self.settings.chunk_size:
                errors[index] = InvalidArgument(
                    f"{meta.filename}: larger than a chunk ({self.settings.chunk_size} bytes):"
                    " use UploadFile")
            elif meta.file_size and meta.file_size != len(data):
                errors[index] = InvalidArgument(
                    f"{meta.filename}: {len(data)} bytes sent but {meta.file_size} announced")
            elif not meta.overwrite_file_id and "/" in meta.filename:
                errors[index] = InvalidArgument(
                    "filename must be a plain name; use parent_folder_id")
            elif not meta.overwrite_file_id and (bad := _bad_name(meta.filename)):
                errors[index] = bad
            elif sha:
                chunks[sha] = data
        hashed = time.monotonic()
        hold = _Hold(self.reservations.open(caller.user_id))
        try:
            results, done, commit_s, placed = self._place_small(
                caller, request, upload_id, hold, errors, chunks, hashes)
        except BaseException:
            self._abandon(hold, upload_id)
            raise
        log.info("upload %s: batch of %d small files (%d bytes): %d committed, %d refused, "
                 "in %.3fs (hash %.3fs, store %.3fs, commit %.3fs)", upload_id, len(files),
                 total, done, len(files) - done, time.monotonic() - started, hashed - started,
                 placed - hashed, commit_s)
        return results

    def _place_small(self, caller: Caller, request: pb.UploadSmallFilesRequest,
                     upload_id: str, hold: _Hold, errors: dict[int, CloudError],
                     chunks: dict[str, bytes], hashes: list[str]
                     ) -> tuple[list[UploadResult | CloudError], int, float, float]:
        """Reserve, store and commit a checked batch: (results, committed, commit s, when
        placed). Files that do not fit the quota are refused before any byte is stored."""
        files = request.files
        held_before: set[str] = set()
        asked = [i for i in range(len(files)) if i not in errors and hashes[i]]
        # an edit reserves only what it grows by: the file it replaces gives its size back
        credits = self.namespace.replaced_sizes(caller, [
            (m.overwrite_file_id, m.parent_folder_id, m.filename, m.replace_existing)
            for m in (files[i].metadata for i in asked)])
        grants = self.reservations.grow(hold.reservation, [
            (hashes[i], max(len(files[i].data) - credit, 0))
            for i, credit in zip(asked, credits, strict=True)])
        for index, grant in zip(asked, grants, strict=True):
            if grant.already_held:
                held_before.add(hashes[index])
            if not grant.accepted:
                errors[index] = QuotaExceeded(
                    f"not enough space: {files[index].metadata.filename} holds "
                    f"{len(files[index].data)} bytes")
        allowed = {hashes[i] for i in asked if i not in errors}
        chunks = {sha: data for sha, data in chunks.items() if sha in allowed}
        stored = self.store.store_many(chunks, caller.user_id, upload_id) if chunks else {}
        placed = time.monotonic()
        for sha, outcome in stored.items():
            if not isinstance(outcome, CloudError):
                hold.taken[sha] = len(chunks[sha])
        for index, sha in enumerate(hashes):
            outcome = stored.get(sha)
            if index not in errors and isinstance(outcome, CloudError):
                errors[index] = outcome
        wanted = [i for i in range(len(files)) if i not in errors]
        committed = self.namespace.commit_small_uploads(caller, [
            SmallCommit(
                name=files[i].metadata.filename, size=len(files[i].data), sha256=hashes[i],
                parent_id=files[i].metadata.parent_folder_id,
                overwrite_file_id=files[i].metadata.overwrite_file_id,
                replace_existing=files[i].metadata.replace_existing,
                mime_type=files[i].metadata.mime_type, mode=files[i].metadata.mode,
                uid=files[i].metadata.uid, gid=files[i].metadata.gid,
                mtime_ns=files[i].metadata.mtime_ns,
                expected_version=files[i].metadata.expected_version,
                parent_mtime_ns=files[i].metadata.parent_mtime_ns,
                rdev=files[i].metadata.rdev)
            for i in wanted], reservation_id=hold.reservation.id) if wanted else []
        commit_s = time.monotonic() - placed
        results: list[UploadResult | CloudError] = []
        outcomes = dict(zip(wanted, committed, strict=True))
        kept = {hashes[i] for i, f in outcomes.items() if not isinstance(f, CloudError)}
        if wanted:
            hold.reservation.stored = False  # the commit ended it
        hold.taken = {sha: n for sha, n in hold.taken.items() if sha not in kept}
        # what the refused files stored stays parked
        self._abandon(hold, upload_id)
        done = 0
        sent: set[str] = set()  # content repeated within the batch "travelled" once
        for index in range(len(files)):
            outcome = outcomes.get(index) or errors[index]
            if isinstance(outcome, CloudError):
                results.append(outcome)
                continue
            # Told from what the caller held before, never from what the nodes hold.
            travelled = bool(hashes[index]) and hashes[index] not in held_before \
                and hashes[index] not in sent
            sent.add(hashes[index])
            results.append(UploadResult(outcome, int(travelled),
                                        int(bool(hashes[index]) and not travelled)))
            done += 1
            self.events.emit("upload", f"{outcome.name} uploaded ({outcome.size} bytes)",
                             caller.user_id, file_id=outcome.id, size=outcome.size,
                             chunks=int(bool(hashes[index])), upload_id=upload_id)
        return results, done, commit_s, placed

    def _abandon(self, hold: _Hold, upload_id: str) -> None:
        """End a reservation that will not commit, parking what the upload stored."""
        try:
            self.reservations.abandon(hold.reservation, hold.taken.items())
        except Exception:  # the upload's own error is the one the caller must see
            log.exception("upload %s: could not end its quota reservation (it expires)",
                          upload_id)

    def _release_grants(self, user_id: str, upload_id: str) -> None:
        try:
            self.direct.release(user_id, upload_id)
        except Exception:  # the upload's own outcome is what the caller must see
            log.exception("upload %s: could not release its write grants (they expire)",
                          upload_id)

    def _receive(self, caller: Caller, requests: Iterator[pb.UploadFileRequest],
                 meta: pb.FileMetadata, room: int, upload_id: str, hold: _Hold
                 ) -> tuple[list[ChunkSpan], int, int, int]:
        chunk_size = self.settings.chunk_size
        # Incoming messages are kept as a list and joined once per chunk: one copy per byte
        # instead of the three a growing bytearray costs.
        parts: list[bytes] = []
        buffered = 0
        spans: list[ChunkSpan | None] = []
        sizes: dict[int, int] = {}
        futures: list[tuple[int, cf.Future[tuple[str, bool]]]] = []
        total = 0
        stored = deduped = 0

        def drain(limit: int) -> None:
            nonlocal stored, deduped
            while len(futures) > limit:
                idx, fut = futures.pop(0)
                sha, held_before = fut.result()
                spans[idx] = ChunkSpan(sha, sizes[idx])
                if held_before:
                    deduped += 1
                else:
                    stored += 1

        def cut(piece: bytes) -> None:
            idx = len(spans)
            spans.append(None)
            sizes[idx] = len(piece)
            futures.append((idx, self.workers.submit(self._store, piece, caller, upload_id,
                                                     held, hold)))
            drain(MAX_IN_FLIGHT)

        def cut_full() -> None:
            nonlocal parts, buffered
            joined = parts[0] if len(parts) == 1 else b"".join(parts)
            view = memoryview(joined)
            pos = 0
            while buffered - pos >= chunk_size:
                piece = joined if (pos == 0 and len(joined) == chunk_size) else \
                    bytes(view[pos:pos + chunk_size])
                cut(piece)
                pos += chunk_size
            rest = bytes(view[pos:]) if pos < len(joined) else b""
            parts = [rest] if rest else []
            buffered = len(rest)

        # A long upload keeps its chunks claimed, so garbage collection never takes one
        # before the commit that makes it referenced (see garbage.py).
        reclaim_every = self.settings.gc_grace_s / 4
        held: list[str] = []  # every chunk stored or referenced so far
        claimed_at = time.monotonic()

        def keep_claimed() -> None:
            nonlocal claimed_at
            if time.monotonic() - claimed_at < reclaim_every:
                return
            claimed_at = time.monotonic()
            if held:
                self.store.touch(*held)
            self.reservations.renew(hold.reservation)

        receipted: list[Receipted] = []
        receipted_since = time.monotonic()

        def take_receipted() -> None:
            """Record the chunks written under grants and take their quota, in one go."""
            nonlocal stored, receipted_since
            receipted_since = time.monotonic()
            if not receipted:
                return
            batch = list(receipted)
            receipted.clear()
            self.direct.accept(caller, batch)
            grants = self.reservations.grow(hold.reservation,
                                            [(c.sha256, c.size) for c in batch],
                                            holder_id=caller.user_id)
            if not all(grant.accepted for grant in grants):
                raise QuotaExceeded("not enough space: the upload outgrew the free space "
                                    "(other uploads in progress count too)")
            for c in batch:
                hold.taken[c.sha256] = c.size
                spans.append(ChunkSpan(c.sha256, c.size))
                held.append(c.sha256)
                stored += 1

        try:
            for req in requests:
                keep_claimed()
                kind = req.WhichOneof("data")
                if kind == "chunk_data":
                    take_receipted()
                    data = req.chunk_data
                    total += len(data)
                    self._check_size(total, meta.file_size, room)
                    parts.append(data)
                    buffered += len(data)
                    if buffered >= chunk_size:
                        cut_full()
                elif kind == "chunk_ref":
                    if buffered:
                        raise InvalidArgument("a chunk reference must fall on a chunk boundary")
                    ref = req.chunk_ref
                    if ref.receipts:
                        # written to the nodes by the client under a grant: receipts checked
                        # now, recorded (with the quota) a batch at a time
                        receipted.append(self.direct.check(ref))
                        total += ref.size
                        self._check_size(total, meta.file_size, room)
                        if len(receipted) >= RECEIPT_BATCH or \
                                time.monotonic() - receipted_since >= RECEIPT_WAIT_S:
                            take_receipted()
                        continue
                    take_receipted()
                    # A reference the caller may not use changes nothing, not even the
                    # chunk's collection time. One they may use is claimed after the check:
                    # if the collector took the chunk in between, the commit's foreign key
                    # refuses the file (Conflict), so nothing is lost.
                    known = self.namespace.visible_chunks(caller, [ref.sha256])
                    if ref.sha256 not in known:
                        raise PermissionDenied(
                            f"chunk {ref.sha256[:12]} is not yours to reference: send its bytes")
                    if known[ref.sha256] != ref.size:
                        raise InvalidArgument(f"chunk {ref.sha256[:12]} has another size")
                    total += ref.size
                    self._check_size(total, meta.file_size, room)
                    self._reserve(hold, caller, ref.sha256, ref.size)
                    self._top_up(ref.sha256, upload_id)
                    self.store.touch(ref.sha256)
                    hold.taken[ref.sha256] = ref.size
                    spans.append(ChunkSpan(ref.sha256, ref.size))
                    held.append(ref.sha256)
                    deduped += 1
                elif kind == "metadata":
                    raise InvalidArgument("metadata may only come first")
            take_receipted()
            if buffered:
                cut(parts[0] if len(parts) == 1 else b"".join(parts))
                parts, buffered = [], 0
            drain(0)
            keep_claimed()
        except BaseException:
            for _, fut in futures:
                fut.cancel()
            # chunks already on their way finish first, so the abort parks them all
            cf.wait([fut for _, fut in futures])
            # and so are those the client wrote under grants whose receipts were checked
            # but not yet recorded: a resumed upload then references them instead of
            # sending them again
            try:
                take_receipted()
            except Exception as exc:  # noqa: BLE001 - the abort's own error is the answer
                log.info("upload %s: receipted chunks not recorded at abort: %s",
                         upload_id, exc)
            log.warning("upload %s: aborted after %d bytes", upload_id, total)
            raise
        return [s for s in spans if s is not None], stored, deduped, total

    def _top_up(self, sha: str, upload_id: str) -> None:
        """A referenced chunk must have its full count of live copies before a file relies
        on it: copied up by the gateway from a live copy, or refused (FailedPrecondition,
        the client then sends the bytes) when no node that is online holds it."""
        if not self.store.top_up(sha, upload_id):
            raise FailedPrecondition(
                f"chunk {sha[:12]} has no copy on a node that is online: send its bytes")

    def _check_replicated(self, spans: list[ChunkSpan], upload_id: str) -> None:
        """Just before the commit: every chunk of the file has REPLICATION_FACTOR live
        copies (a node may have gone offline since its chunks were stored), or the upload
        fails; nothing is committed with fewer copies than promised."""
        hashes = list(dict.fromkeys(span.sha256 for span in spans))
        for sha in set(hashes) - self.store.fully_replicated(hashes):
            if not self.store.top_up(sha, upload_id):
                raise Unavailable(
                    f"chunk {sha[:12]} is no longer on any online node: upload again")

    def _check_size(self, total: int, announced: int, room: int) -> None:
        if announced and total > announced:
            raise InvalidArgument(f"more bytes than the announced {announced}")
        if total > room:
            raise QuotaExceeded(f"not enough space: {max(room, 0)} bytes free")

    def _reserve(self, hold: _Hold, caller: Caller, sha: str, size: int) -> bool:
        """Reserve one chunk before it is stored or referenced: whether the caller held it."""
        grant = self.reservations.grow(hold.reservation, [(sha, size)],
                                       holder_id=caller.user_id)[0]
        if not grant.accepted:
            raise QuotaExceeded("not enough space: the upload outgrew the free space "
                                "(other uploads in progress count too)")
        return grant.already_held

    def _store(self, data: bytes, caller: Caller, upload_id: str, held: list[str],
               hold: _Hold) -> tuple[str, bool]:
        """Store one chunk once it is reserved: (hash, whether the caller held it before)."""
        sha = hashlib.sha256(data).hexdigest()
        held_before = self._reserve(hold, caller, sha, len(data))
        self.store.store(sha, data, caller.user_id, upload_id)
        hold.taken[sha] = len(data)
        held.append(sha)
        return sha, held_before

    def close(self) -> None:
        self.workers.shutdown(wait=False, cancel_futures=True)
