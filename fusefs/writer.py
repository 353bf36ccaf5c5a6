"""Writes: a local staging copy per file, uploaded whole by a background queue.

Like rclone's ``--vfs-cache-mode writes`` and JuiceFS's writeback, ``write`` only touches a
local file; ``close`` (flush/release) queues an upload and returns, ``fsync`` waits until
the gateway has committed the upload (chunks stored on their replicas). An upload always
overwrites by file id (``overwrite_file_id``), which the gateway applies atomically, and
goes through ``CloudClient.upload(known_chunks=True)``: every chunk the server already
holds travels as a ``chunk_ref``, so appending to a large file sends only the changed tail.

A staging copy being uploaded is frozen; a write that arrives meanwhile copies it first
(copy on write), so an upload always reads a consistent snapshot without blocking writers.
The queue's state (pending, running, failed, bytes done) is what ``cloudgrpc status`` shows.

A file created through the mount has no server id until its first upload: that upload
creates it (parent id + name), so create+write+close costs one UploadFile.

Crash safety: next to every staging copy with unsent changes lies a small journal
(``<copy>.journal``: target file id or parent id + name, base version, attributes, the
account's root folder id). The next mount of the same account (``recover``) uploads what
a killed daemon left behind, and ``cloudgrpc status`` reports what it could not.

Staged copies are user data: the staging folder is 0700 and ours, every file in it 0600
whatever the umask, and nothing there is opened through a symlink (a journal is replaced,
never written through; a staged copy that is a symlink is not uploaded).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import stat
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import errors
from cloudgrpc_proto.client import CloudClient, SmallUpload
from cloudgrpc_proto.private_files import open_private, private_dir, read_private, write_private

from .aio import Blocking, trio_deadline
from .write_behind import Ahead, WriteBehind

log = logging.getLogger(__name__)

UPLOAD_WORKERS = 8
SMALL_UPLOAD = 256 * 1024  # below this, asking FindChunks costs more than sending the bytes
# Files up to this size go up in batches (UploadSmallFiles), at most this many per call and
# this many bytes; at most BATCH_SLOTS batches run at once, so the rest accumulate meanwhile.
SMALL_BATCH_FILE = 1024 * 1024
SMALL_BATCH_COUNT = 200
SMALL_BATCH_BYTES = 16 * 1024 * 1024
BATCH_SLOTS = 2
JOURNAL = ".journal"
DELETE_JOURNAL = ".delete"  # the deleter's journals (deleter.py) share the staging dir
LOCK = ".lock"
TRANSIENT = (errors.Unavailable, errors.DeadlineExceeded, errors.InternalError)
RETRY_DELAYS = (0.5, 1, 2, 4, 8, 15)


@dataclass
class Staging:
    """The local copy of one file's content while it is being written or uploaded."""

    path: Path
    fd: int
    size: int = 0
    gen: int = 0  # bumped by every change
    uploaded_gen: int = 0  # the last gen the gateway committed
    frozen: bool = False  # an upload is reading it: copy before changing
    opens: int = 0  # open handles using it
    journaled: str = ""  # what the journal next to it says (JSON), "" = none written
    ahead: Ahead = field(default_factory=Ahead)  # chunks written ahead (write_behind.py)

    @property
    def journal(self) -> Path:
        return self.path.with_name(self.path.name + JOURNAL)

    @property
    def dirty(self) -> bool:
        return self.gen > self.uploaded_gen


@dataclass
class UploadJob:
    ino: int
    entry_id: str
    path: str  # for status reports
    state: str = "pending"  # pending, running, retrying, failed
    bytes_total: int = 0
    bytes_done: int = 0
    error: str = ""
    errno: int = 0
    attempts: int = 0
    again: bool = False  # changed while running: upload once more when this run ends
    queued_at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "state": self.state, "bytes_total": self.bytes_total,
                "bytes_done": self.bytes_done, "error": self.error,
                "attempts": self.attempts}


@dataclass
class UploadTarget:
    """What the queue needs to know about a file at upload time (from the inode table)."""

    entry_id: str  # "" = not on the server yet: the upload creates it
    name: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    path: str
    parent_id: str = ""
    base_version: int = 0
    parent_mtime_ns: int = 0  # the folder's mtime the mount shows (a create sends it)
    rdev: int = 0  # a device entry's number

    @property
    def key(self) -> str:
        """What the change feed's echo of this upload is recognised by."""
        return self.entry_id or f"{self.parent_id}/{self.name}"


class Writer:
    """Staging copies by inode and the upload queue that drains them."""

    def __init__(self, client: CloudClient, blocking: Blocking, root: Path,
                 workers: int = UPLOAD_WORKERS, account: str = "",
                 delay: float = 0.0) -> None:
        self.client = client
        self.blocking = blocking
        self.root = root
        private_dir(self.root)
        self.account = account  # the root folder id: whose journals are ours to recover
        self.delay = delay  # seconds before an upload starts (tests: a window to crash in)
        self._lock_fd = lock_dir(self.root, wait=False)
        if self._lock_fd is None:
            log.warning("%s is in use by another mount daemon: not recovering it", self.root)
        self.leftovers = self._claim_own_leftovers() if self._lock_fd is not None else []
        self.recovery: list[dict[str, object]] = []
        self.recovering = False
        self._recovered_done = trio.Event()
        self.workers = workers
        self._batch_slots = trio.CapacityLimiter(BATCH_SLOTS)
        self._batches = True  # the gateway takes UploadSmallFiles
        self.staging: dict[int, Staging] = {}
        self.jobs: dict[int, UploadJob] = {}
        self._order: dict[int, None] = {}  # inodes with a job, oldest first
        self._wake = trio.Event()
        self._changed = trio.Event()
        self._old: list[Staging] = []  # superseded copies still being uploaded
        # Set by the filesystem: current upload target of an inode, or None if gone.
        self.target_of: Callable[[int], UploadTarget | None] = lambda ino: None
        self.on_uploaded: Callable[[int, Staging, pb.UploadFileResponse], None] = \
            lambda ino, st, reply: None
        # Told before an upload starts and when it fails (the change feed echoes successes).
        self.on_start: Callable[[UploadTarget], None] = lambda target: None
        self.on_abort: Callable[[UploadTarget], None] = lambda target: None
        # Awaited before an upload that creates a file by parent id + name: queued deletes
        # (deleter.flush) go first, so the name of a file just removed is free again.
        self.before_create: Callable[[], Awaitable[None]] = _nothing
        # Whole chunks of files being written go to the nodes before their upload.
        self.behind = WriteBehind(client, blocking, 0)
        self.uploaded_bytes = 0
        self.uploads_done = 0
        self.uploads_failed = 0  # given up for good (a retry is not a failure)

    @property
    def owns_dir(self) -> bool:
        """This daemon holds the staging dir (its leftovers are ours to recover)."""
        return self._lock_fd is not None

    # --- staging copies -------------------------------------------------------------------

    def _new_file(self, ino: int) -> Staging:
        path = self.root / f"{ino}-{uuid.uuid4().hex[:10]}"
        return Staging(path, open_private(path, os.O_RDWR | os.O_CREAT | os.O_EXCL))

    def get(self, ino: int) -> Staging | None:
        return self.staging.get(ino)

    def create_empty(self, ino: int) -> Staging:
        """A fresh empty staging copy (new file, or O_TRUNC) replacing any previous one."""
        old = self.staging.get(ino)
        st = self._new_file(ino)
        if old is not None:
            st.opens = old.opens
            st.gen = old.gen + 1
            st.uploaded_gen = old.uploaded_gen
            self._retire(old)
        self.staging[ino] = st
        return st

    def adopt(self, ino: int, st: Staging) -> None:
        self.staging[ino] = st

    def _retire(self, st: Staging) -> None:
        if st.frozen:
            self._old.append(st)
        else:
            self._remove(st)

    def _remove(self, st: Staging) -> None:
        self.behind.forget(st.ahead)
        try:
            os.close(st.fd)
        except OSError:
            pass
        st.path.unlink(missing_ok=True)
        if st.journaled:
            st.journal.unlink(missing_ok=True)
            st.journaled = ""

    # --- journals -------------------------------------------------------------------------

    def journal(self, ino: int, st: Staging | None = None) -> None:
        """Write (or refresh) the journal of the inode's dirty staging copy."""
        st = st or self.staging.get(ino)
        if st is None or not st.dirty:
            return
        target = self.target_of(ino)
        if target is None:
            return
        record = json.dumps({
            "account": self.account, "entry_id": target.entry_id,
            "parent_id": target.parent_id, "name": target.name, "mode": target.mode,
            "uid": target.uid, "gid": target.gid, "mtime_ns": target.mtime_ns,
            "base_version": target.base_version, "path": target.path, "copy": st.path.name,
        })
        if record == st.journaled:
            return
        try:
            # No fsync: a journal guards against the daemon dying, not the machine.
            write_private(st.journal, record.encode(), sync=False)
            st.journaled = record
        except OSError as exc:
            log.warning("cannot write the journal of %s: %s", target.path, exc)

    def _unjournal(self, st: Staging) -> None:
        if st.journaled:
            st.journal.unlink(missing_ok=True)
            st.journaled = ""

    def _claim_own_leftovers(self) -> list[Path]:
        """Journals a previous daemon of this mount point left; clean copies are dropped."""
        journals = []
        for path in self.root.iterdir():
            if path.name == LOCK:
                continue
            if path.name.endswith(JOURNAL):
                journals.append(path)
            elif path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
            elif path.name.endswith(DELETE_JOURNAL) or path.is_dir():
                continue  # the deleter's journals (deleter.py): not a staging copy
            elif not path.with_name(path.name + JOURNAL).exists():
                path.unlink(missing_ok=True)  # a copy with nothing unsent
        return journals
    async def writable(self, ino: int) -> Staging:
        """The staging copy to change now: copied first if an upload is reading it."""
        st = self.staging[ino]
        if not st.frozen:
            return st
        copy = self._new_file(ino)
        await self.blocking(shutil.copyfile, st.path, copy.path)
        copy.size, copy.gen, copy.uploaded_gen, copy.opens = st.size, st.gen, \
            st.uploaded_gen, st.opens
        copy.ahead, st.ahead = st.ahead, Ahead(ended=True)  # writes go on in the copy
        if st.frozen:
            self._old.append(st)  # removed once its upload ends
        else:
            self._remove(st)  # its upload ended while we copied
        self.staging[ino] = copy
        if st.journaled:
            self.journal(ino, copy)
        return copy

    async def write(self, ino: int, offset: int, data: bytes) -> int:
        st = await self.writable(ino)
        written = os.pwrite(st.fd, data, offset)
        st.size = max(st.size, offset + written)
        st.gen += 1
        self.behind.wrote(st.ahead, st.fd, offset, written)
        return written

    async def truncate(self, ino: int, size: int) -> None:
        st = await self.writable(ino)
        os.ftruncate(st.fd, size)
        st.size = size
        st.gen += 1
        self.behind.truncated(st.ahead, size)

    def read(self, ino: int, offset: int, length: int) -> bytes:
        st = self.staging[ino]
        return os.pread(st.fd, length, offset)

    def release(self, ino: int) -> None:
        """A handle closed: drop the copy once it is clean, closed and not uploading."""
        st = self.staging.get(ino)
        if st is None:
            return
        st.opens = max(0, st.opens - 1)
        self._maybe_drop(ino)

    def _maybe_drop(self, ino: int) -> None:
        st = self.staging.get(ino)
        if st is None or st.opens or st.dirty or st.frozen or ino in self.jobs:
            return
        del self.staging[ino]
        self._remove(st)

    def discard(self, ino: int) -> None:
        """The file is gone (deleted or replaced): forget its copy and its upload."""
        job = self.jobs.get(ino)
        if job is not None and job.state != "running":
            del self.jobs[ino]
            self._order.pop(ino, None)
        st = self.staging.pop(ino, None)
        if st is not None:
            self._retire(st)
        self._notify()

    def uploading(self, ino: int) -> bool:
        job = self.jobs.get(ino)
        return job is not None and job.state == "running"

    async def settle(self, ino: int) -> None:
        """Wait until no upload of the inode is running (its outcome is then known)."""
        while self.uploading(ino):
            await self._changed.wait()

    def pending_growth(self, sizes: Callable[[int], int]) -> int:
        """Bytes the staged copies add to the account beyond what the server holds."""
        return sum(max(0, st.size - sizes(ino)) for ino, st in self.staging.items()
                   if st.dirty)

    # --- the queue ------------------------------------------------------------------------

    def schedule(self, ino: int) -> None:
        """Queue an upload of the inode's staging copy if it has unsent changes."""
        st = self.staging.get(ino)
        if st is None or not st.dirty:
            return
        job = self.jobs.get(ino)
        if job is not None and job.state in ("pending", "waiting", "running"):
            if job.state == "running":
                job.again = True
            return
        target = self.target_of(ino)
        if target is None:
            return
        self.journal(ino, st)
        if job is None:
            job = UploadJob(ino, target.entry_id, target.path)
            self.jobs[ino] = job
        job.state = "pending"
        job.error = ""
        job.errno = 0
        job.bytes_total = st.size
        job.bytes_done = 0
        self._order.setdefault(ino, None)
        self._wake.set()
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait(self, ino: int) -> None:
        """Return once the inode's changes up to now are on the gateway; raise if they fail."""
        st = self.staging.get(ino)
        if st is None:
            return
        want = st.gen
        self.schedule(ino)
        while True:
            st = self.staging.get(ino)
            job = self.jobs.get(ino)
            if st is None:
                return
            if st.uploaded_gen >= want:
                return
            if job is None:
                if st.dirty:
                    self.schedule(ino)
                    if ino not in self.jobs:
                        return  # no longer uploadable (the file went away)
                    continue
                return
            if job.state in ("failed", "retrying") and job.errno:
                raise _as_error(job)
            await self._changed.wait()

    async def sync(self, deadline: float | None = None) -> list[UploadJob]:
        """Wait until no upload is pending or running; returns what is left (failed ones)."""
        for ino in list(self.staging):
            self.schedule(ino)
        until = trio_deadline(deadline)
        if self.recovering:
            with trio.move_on_at(until):
                await self._recovered_done.wait()
        while True:
            active = any(j.state in ("pending", "waiting", "running", "retrying")
                         for j in self.jobs.values())
            if not active:
                return list(self.jobs.values())
            if deadline is not None and time.monotonic() >= deadline:
                return list(self.jobs.values())
            with trio.move_on_at(until):
                await self._changed.wait()

    def status(self) -> dict[str, object]:
        jobs = [j.as_dict() for j in self.jobs.values()]
        dirty = sum(1 for st in self.staging.values() if st.dirty)
        return {
            "pending": sum(1 for j in self.jobs.values() if j.state in ("pending", "waiting")),
            "running": sum(1 for j in self.jobs.values() if j.state == "running"),
            "retrying": sum(1 for j in self.jobs.values() if j.state == "retrying"),
            "failed": sum(1 for j in self.jobs.values() if j.state == "failed"),
            "dirty_files": dirty,
            "uploads": jobs,
            "uploaded_bytes": self.uploaded_bytes,
            "uploads_done": self.uploads_done,
            "recovering": self.recovering,
            "recovered": self.recovery,
        }

    def metrics(self) -> dict[str, int]:
        """The upload side's counts for ``cloudgrpc status --json``: what waits (files in
        the queue and their unsent bytes, dirty files not queued yet included) and what was
        done since the mount."""
        active = {ino: j for ino, j in self.jobs.items()
                  if j.state in ("pending", "waiting", "running", "retrying")}
        pending = sum(max(0, j.bytes_total - j.bytes_done) for j in active.values())
        pending += sum(st.size for ino, st in self.staging.items()
                       if st.dirty and ino not in active)
        return {"upload_queue_depth": len(active), "bytes_pending_upload": pending,
                "bytes_uploaded": self.uploaded_bytes, "uploads_done": self.uploads_done,
                "uploads_failed": self.uploads_failed,
                "chunks_written_ahead": self.behind.chunks_ahead}

    async def run(self) -> None:
        """The upload workers and the write-behind; runs until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.behind.run)
            for _ in range(self.workers):
                nursery.start_soon(self._worker)

    async def _worker(self) -> None:
        while True:
            ino = self._next_job(small=self._batch_slots.available_tokens > 0)
            if ino is None:
                # A fresh event only once the old one fired: replacing it while others
                # still wait on it would leave them asleep for good.
                if self._wake.is_set():
                    self._wake = trio.Event()
                await self._wake.wait()
                continue
            if self.delay:
                job = self.jobs[ino]
                job.state = "waiting"
                await trio.sleep(max(0.0, job.queued_at + self.delay - time.time()))
                if self.jobs.get(ino) is not job:
                    continue
            elif self._small(ino):
                async with self._batch_slots:
                    batch = self._collect_small()
                    if batch:
                        await self._upload_batch(batch)
                self._wake.set()  # workers that skipped small jobs may take them now
                continue
            await self._upload(ino)

    def _small(self, ino: int) -> bool:
        st = self.staging.get(ino)
        return self._batches and st is not None and st.size <= SMALL_BATCH_FILE

    def _next_job(self, small: bool = True) -> int | None:
        """The oldest pending job; small ones only when a batch slot is free (they are
        sent together by whoever holds a slot)."""
        for ino in self._order:
            job = self.jobs.get(ino)
            if job is not None and job.state == "pending" and (small or not self._small(ino)):
                return ino
        return None

    def _collect_small(self) -> list[int]:
        """Pending small jobs, oldest first, up to one batch's worth."""
        batch: list[int] = []
        total = 0
        for ino in self._order:
            job = self.jobs.get(ino)
            st = self.staging.get(ino)
            if job is None or job.state != "pending" or st is None or not self._small(ino):
                continue
            if batch and (len(batch) >= SMALL_BATCH_COUNT or total + st.size > SMALL_BATCH_BYTES):
                break
            batch.append(ino)
            total += st.size
        return batch

    def _claim(self, ino: int) -> UploadTarget | None:
        """Mark the inode's job running (no other worker takes it); None if nothing to send."""
        job = self.jobs[ino]
        st = self.staging.get(ino)
        target = self.target_of(ino)
        if st is None or target is None or not st.dirty:
            self._finish(ino)
            return None
        job.state = "running"
        job.attempts += 1
        return target

    async def _deletes_first(self, claimed: dict[int, UploadTarget]) -> list[int]:
        """Queued deletes go before uploads that create a file by parent id + name, so the
        name of a file just removed is free again; returns the uploads to go on with (those
        that met a transient failure are retried later)."""
        inos = list(claimed)
        creating = [ino for ino, target in claimed.items() if not target.entry_id]
        if not creating:
            return inos
        self._notify()
        try:
            await self.before_create()
        except errors.CloudError as exc:
            if isinstance(exc, TRANSIENT):
                for ino in creating:
                    job = self.jobs.get(ino)
                    if job is not None:
                        self._failed(ino, job, exc)  # retried like a failed upload
                return [ino for ino in inos if ino not in creating]
            # a delete that failed for good: the name may still be taken, and if so the
            # upload says AlreadyExists
        return inos

    def _begin(self, ino: int) -> tuple[UploadJob, Staging, UploadTarget, int] | None:
        """Freeze a claimed job's copy for sending; None when nothing is left to send."""
        job = self.jobs.get(ino)
        st = self.staging.get(ino)
        target = self.target_of(ino)
        if job is None or st is None or target is None or not st.dirty:
            self._finish(ino)
            return None
        job.entry_id, job.path = target.entry_id, target.path
        job.bytes_total, job.bytes_done = st.size, 0
        st.frozen = True
        self.journal(ino, st)
        self.on_start(target)
        return job, st, target, st.gen

    async def _upload(self, ino: int) -> None:
        target = self._claim(ino)
        if target is None or not await self._deletes_first({ino: target}):
            return
        begun = self._begin(ino)
        if begun is None:
            return
        job, st, target, gen = begun
        self._notify()
        # the chunks already written ahead; the copy's later writes are for the next upload
        upload_id, ahead, hashed = await self.behind.take(st.ahead)
        st.ahead = st.ahead.successor(self.behind.chunk_size)

        def progress(amount: int) -> None:
            job.bytes_done += amount

        where: dict[str, str] = (
            {"overwrite_file_id": target.entry_id} if target.entry_id
            else {"parent_folder_id": target.parent_id})
        try:
            reply = await self.blocking(
                self.client.upload, str(st.path), filename=target.name, mode=target.mode,
                uid=target.uid, gid=target.gid, mtime_ns=target.mtime_ns, progress=progress,
                known_chunks=st.size >= SMALL_UPLOAD, parent_mtime_ns=target.parent_mtime_ns,
                rdev=target.rdev, upload_id=upload_id, ahead=ahead, hashed=hashed, **where)
        except errors.CloudError as exc:
            self._aborted(ino, job, st, target, exc)
            return
        except OSError as exc:
            self._aborted(ino, job, st, target,
                          errors.InternalError(f"staging copy unreadable: {exc}"))
            return
        self._succeeded(ino, job, st, gen, reply)

    async def _upload_batch(self, inos: list[int]) -> None:
        """Small files in one UploadSmallFiles call; each one succeeds or fails on its own."""
        claimed = await self._deletes_first(
            {ino: target for ino in inos if (target := self._claim(ino)) is not None})
        begun = [(ino, b) for ino in claimed if (b := self._begin(ino)) is not None]
        if not begun:
            return
        for _, (_, st, _, _) in begun:  # small files go whole: nothing written ahead is used
            self.behind.forget(st.ahead)
            st.ahead = st.ahead.successor(self.behind.chunk_size)
        self._notify()
        batch_id = f"mount-{uuid.uuid4().hex[:10]}"

        def send() -> list[pb.UploadFileResponse | errors.CloudError]:
            items = []
            for _, (_, st, target, _) in begun:
                with open(st.path, "rb") as handle:
                    data = handle.read()
                where = ({"overwrite_file_id": target.entry_id} if target.entry_id
                         else {"parent_folder_id": target.parent_id})
                items.append(SmallUpload(data=data, filename=target.name, mode=target.mode,
                                         uid=target.uid, gid=target.gid,
                                         mtime_ns=target.mtime_ns, upload_id=batch_id,
                                         parent_mtime_ns=target.parent_mtime_ns,
                                         rdev=target.rdev, **where))
            return self.client.upload_small_files(items)

        try:
            replies = await self.blocking(send)
        except errors.NotImplementedYet:
            # A gateway older than UploadSmallFiles: one upload per file from now on.
            log.info("the gateway has no UploadSmallFiles: uploading small files one by one")
            self._batches = False
            for _ino, (job, st, target, _) in begun:
                self.on_abort(target)
                st.frozen = False
                self._unfreeze(st)
                job.state, job.attempts = "pending", job.attempts - 1
            self._wake.set()
            return
        except (errors.CloudError, OSError) as exc:
            error = exc if isinstance(exc, errors.CloudError) else \
                errors.InternalError(f"staging copy unreadable: {exc}")
            for ino, (job, st, target, _) in begun:
                self._aborted(ino, job, st, target, error)
            return
        for (ino, (job, st, target, gen)), reply in zip(begun, replies, strict=True):
            if isinstance(reply, errors.CloudError):
                self._aborted(ino, job, st, target, reply)
            else:
                job.bytes_done = job.bytes_total
                self._succeeded(ino, job, st, gen, reply)

    def _aborted(self, ino: int, job: UploadJob, st: Staging, target: UploadTarget,
                 exc: errors.CloudError) -> None:
        self.on_abort(target)
        st.frozen = False
        self._unfreeze(st)
        self._failed(ino, job, exc)

    def _succeeded(self, ino: int, job: UploadJob, st: Staging, gen: int,
                   reply: pb.UploadFileResponse) -> None:
        st.frozen = False
        st.uploaded_gen = max(st.uploaded_gen, gen)
        current = self.staging.get(ino)
        if current is not None and current is not st:
            current.uploaded_gen = max(current.uploaded_gen, gen)
        self._unfreeze(st)
        self.uploaded_bytes += job.bytes_total
        self.uploads_done += 1
        self.on_uploaded(ino, st, reply)
        if current is not None and current.dirty:
            self.journal(ino, current)  # now names the file by id and its new version
        elif current is not None:
            self._unjournal(current)
        again = job.again
        job.again = False
        job.error = ""
        self._finish(ino)
        if again:
            self.schedule(ino)

    def _unfreeze(self, st: Staging) -> None:
        if st in self._old:
            self._old.remove(st)
            self._remove(st)

    def _finish(self, ino: int) -> None:
        self.jobs.pop(ino, None)
        self._order.pop(ino, None)
        current = self.staging.get(ino)
        # Changes made while an upload ran go up at once only when nothing holds the file
        # open; an open file's go at its next flush, fsync or close (which schedule it).
        # Uploading a file still being written, again and again, would also copy its
        # whole staging file at the next write each time (it is frozen while it uploads):
        # `dd` closes a dup of its output before writing (a flush at size 0), and that
        # upload's end used to start the next one mid-write.
        if current is not None and current.dirty and not current.opens:
            self.schedule(ino)
        self._maybe_drop(ino)
        self._notify()

    def _failed(self, ino: int, job: UploadJob, exc: errors.CloudError) -> None:
        job.error = exc.message
        job.errno = exc.errno
        if isinstance(exc, TRANSIENT):
            job.state = "retrying"
            delay = RETRY_DELAYS[min(job.attempts - 1, len(RETRY_DELAYS) - 1)]
            log.warning("upload of %s failed (%s); retrying in %ss", job.path, exc.message,
                        delay)
            trio.lowlevel.spawn_system_task(self._retry_later, ino, delay)
        elif isinstance(exc, errors.NotFound):
            log.warning("upload of %s dropped: the file is gone (%s)", job.path, exc.message)
            job.state = "failed"
            self.uploads_failed += 1
            self._finish(ino)
            st = self.staging.pop(ino, None)
            if st is not None:
                self._retire(st)
        else:
            job.state = "failed"
            self.uploads_failed += 1
            log.error("upload of %s failed: %s (the staged copy is kept)", job.path,
                      exc.message)
        self._notify()

    async def _retry_later(self, ino: int, delay: float) -> None:
        await trio.sleep(delay)
        job = self.jobs.get(ino)
        if job is not None and job.state == "retrying":
            job.state = "pending"
            self._wake.set()
            self._notify()

    def close(self) -> None:
        """Close the staging files' descriptors (the files stay if they hold unsent data)."""
        for st in list(self.staging.values()) + self._old:
            try:
                os.close(st.fd)
            except OSError:
                pass
            if not st.dirty:
                st.path.unlink(missing_ok=True)
                self._unjournal(st)
            elif not st.journaled:
                self.journal_closing(st)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def journal_closing(self, st: Staging) -> None:
        for ino, current in self.staging.items():
            if current is st:
                self.journal(ino, st)

    # --- crash recovery -------------------------------------------------------------------

    def _recoverable(self) -> list[Path]:
        """Journals of this account left by dead daemons (ours first, then other dirs')."""
        found = list(self.leftovers) + abandoned(self.root, JOURNAL)
        out = []
        for path in found:
            try:
                record = json.loads(read_private(path))
            except (OSError, ValueError):
                continue
            if record.get("account") == self.account:
                out.append(path)
        return sorted(out, key=lambda p: p.stat().st_mtime if p.exists() else 0)

    async def recover(self) -> None:
        """Upload the staged copies a killed daemon left; report what cannot be uploaded."""
        try:
            journals = await self.blocking(self._recoverable)
        except OSError as exc:
            log.warning("cannot scan for staged copies left by a crash: %s", exc)
            journals = []
        if not journals:
            self._recovered_done.set()
            return
        self.recovering = True
        self._notify()
        try:
            for path in journals:
                item = await self.blocking(self._recover_one, path)
                self.recovery.append(item)
                level = logging.INFO if item["state"] == "uploaded" else logging.ERROR
                log.log(level, "staged copy left by a crash: %s -> %s %s", item["path"],
                        item["state"], item.get("error", ""))
                self._notify()
        finally:
            self.recovering = False
            self._recovered_done.set()
            self._notify()

    def _recover_one(self, journal: Path) -> dict[str, object]:
        record = json.loads(read_private(journal))
        copy = journal.with_name(str(record.get("copy") or journal.name[: -len(JOURNAL)]))
        item: dict[str, object] = {"path": record.get("path", ""), "copy": str(copy),
                                   "state": "uploaded"}
        if not os.path.lexists(copy):
            journal.unlink(missing_ok=True)
            item["state"], item["error"] = "missing", "the staged copy is gone"
            return item
        info = copy.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            item["state"], item["error"] = "failed", "the staged copy is not a file of ours"
            return item
        common = dict(mode=int(record.get("mode") or 0), uid=int(record.get("uid") or 0),
                      gid=int(record.get("gid") or 0),
                      mtime_ns=int(record.get("mtime_ns") or 0),
                      upload_id=f"recover-{uuid.uuid4().hex[:10]}")
        name = str(record.get("name") or copy.name)
        parent = str(record.get("parent_id") or "")
        try:
            try:
                if record.get("entry_id"):
                    reply = self.client.upload(
                        str(copy), filename=name, overwrite_file_id=str(record["entry_id"]),
                        expected_version=int(record.get("base_version") or 0), **common)
                else:
                    reply = self.client.upload(str(copy), filename=name,
                                               parent_folder_id=parent, **common)
            except (errors.Conflict, errors.AlreadyExists, errors.NotFound):
                # changed, taken or gone meanwhile: keep both, under a name that says so
                stem, dot, ext = name.rpartition(".")
                tag = time.strftime("recovered %Y-%m-%d %H%M%S")
                alt = f"{stem} ({tag}).{ext}" if dot and stem else f"{name} ({tag})"
                try:
                    reply = self.client.upload(str(copy), filename=alt,
                                               parent_folder_id=parent, **common)
                except errors.NotFound:
                    reply = self.client.upload(str(copy), filename=alt, **common)
                item["state"], item["renamed_to"] = "uploaded", alt
        except errors.CloudError as exc:
            item["state"], item["error"] = "failed", exc.message
            return item
        item["file_id"] = reply.entry.file_id or reply.file_id
        copy.unlink(missing_ok=True)
        journal.unlink(missing_ok=True)
        return item


async def _nothing() -> None:
    return None


def abandoned(root: Path, suffix: str) -> list[Path]:
    """Files ending in ``suffix`` in the staging dirs beside ``root`` that no live daemon
    holds (their lock is free): what killed mounts left for the next one to finish."""
    found: list[Path] = []
    for other in sorted(root.parent.iterdir()):
        if other == root or not _own_folder(other):
            continue
        fd = lock_dir(other, wait=False)
        if fd is None:
            continue  # a live mount owns it
        try:
            found.extend(p for p in other.iterdir() if p.name.endswith(suffix))
        finally:
            os.close(fd)
    return found


def _own_folder(path: Path) -> bool:
    """A real folder (not a symlink) of this user: only those are searched for leftovers."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()


def lock_dir(path: Path, wait: bool = True) -> int | None:
    """Hold ``path/.lock`` (flock) for as long as the descriptor is open; None if taken."""
    try:
        fd = open_private(path / LOCK, os.O_RDWR | os.O_CREAT)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        os.close(fd)
        return None
    return fd


def _as_error(job: UploadJob) -> errors.CloudError:
    error = errors.CloudError(job.error or "upload failed")
    error.errno = job.errno or error.errno
    return error
