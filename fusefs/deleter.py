"""Unlinks in the background: removed locally at once, sent to the gateway in batches.

A synchronous DeleteFile per ``unlink`` made ``rm -r`` of 1,000 files cost 1,000 gateway
round trips. Here ``unlink`` only hides the entry (the filesystem asks ``hidden``), writes
a line to a journal and queues the id; one background task sends whatever is queued in one
``DeleteFiles`` call, so while a call is in flight the next unlinks pile up for the next
batch (natural batching, no timer).

Ordering: an operation whose outcome could depend on a queued delete (rmdir, rename,
mkdir, symlink, an upload that creates a file by parent id + name) first awaits
``flush``, which sends what is queued now and raises the error of any of it that did not
reach the gateway, so ``rm -r dir`` ends with one flush at the final rmdir and
``rm f && echo x > f`` creates the new ``f`` after the old one is in the trash.

Failures are never silent: a transient error (gateway away, after the client's bounded
retries) keeps the ids queued and retries them with backoff, and an operation awaiting
``flush`` gets its errno (EIO); a permanent one drops the ids (the server still has the
files, so they reappear on the next listing) and is kept for ``cloudgrpc status``. An id
the gateway no longer knows (already in the trash, deleted elsewhere) counts as done: the
user wanted it gone and it is.

Folder changes ride the same queue (``queue_mkdir``, ``queue_move``): a shell loop of
``mkdir`` and ``mv`` paid a gateway round trip per command. The mount answers them at once
from what it knows (the name is free, the folder is not moved below itself), picks the new
folder's id itself (a UUID the gateway accepts, CreateFolderRequest.folder_id) and queues
the call. The queue is sent in order: a run of deletes goes in one DeleteFiles call, a
folder change goes alone, so ``rm f; mkdir f`` and ``mkdir d; mv d e`` reach the gateway as
they happened. While one is queued, every other call the filesystem makes waits for the
queue first (``ordered``), so nothing reads the server's tree behind the mount's back.
One that the gateway refuses for good (another mount took the name meanwhile) is undone in
the mount's view: the folders involved are listed again, and ``cloudgrpc status`` says why.

Crash safety: each queued id is a line in a journal (``<staging>/deletes-<tag>.delete``: a
header naming the account, then one JSON line per id; one ``write`` per unlink, no fsync,
so a killed daemon loses nothing the kernel had) that is removed once every id in it is
answered; the next mount of the same account adopts the journals a killed daemon left (in
its own staging dir and in dirs no live daemon holds) and sends them. A file per unlink
cost ~0.5 ms each on a busy machine, as much as the rest of the unlink.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto import errors
from cloudgrpc_proto.client import CloudClient
from cloudgrpc_proto.private_files import open_private, read_private

from .aio import Blocking, trio_deadline
from .writer import DELETE_JOURNAL, abandoned

log = logging.getLogger(__name__)

SUFFIX = DELETE_JOURNAL
JOURNAL_LINES = 10_000  # then a new journal file (the old one goes when its ids are done)
MAX_BATCH = 1000  # the gateway's cap per DeleteFiles call
TRANSIENT = (errors.Unavailable, errors.DeadlineExceeded, errors.InternalError)
RETRY_DELAYS = (0.5, 1, 2, 4, 8, 15)
FAILURES_KEPT = 100
FOLDER_OPS = ("mkdir", "move")
MAX_FOLDER_BATCH = 256  # the gateway's cap per ApplyFolderChanges call
# A queued folder change waits this long for others to go with it in one call (unless
# someone waits for the queue): ``for d in ...; do mkdir $d; done`` makes one every few
# milliseconds, and a call per change cost the gateway about as much as the changes.
FOLDER_GATHER_S = 0.02


@dataclass(eq=False)
class Journal:
    """One journal file: ids appended while it is the active one, removed once all are done."""

    path: Path
    fd: int | None  # None: adopted from a crashed daemon, never written here
    lines: int = 0
    outstanding: int = 0  # ids in it not answered yet

    def close(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = None


@dataclass(eq=False)
class PendingDelete:
    """One queued unlink of a server file."""

    entry_id: str
    path: str  # for status reports
    parent_ino: int  # 0 = adopted from a crashed daemon (no inode here)
    journal: Journal | None
    queued_at: float  # trio's clock
    state: str = "pending"  # pending, sending, retrying, done, failed
    error: str = ""
    error_type: type[errors.CloudError] = errors.CloudError
    failed_attempt: int = -1  # the attempt whose transient failure left it retrying
    attempts: int = 0
    op: str = "delete"  # or "mkdir" / "move": a folder change (entry_id is the folder's)
    params: dict[str, Any] = field(default_factory=dict)  # parent, name, mode, uid, gid
    key: str = ""  # its key in the queue: the id for a delete
    reply: pb.EntryResponse | None = None  # a folder change's answer
    from_ino: int = 0  # a move: the folder it left and its name there (not journaled)
    from_name: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "state": self.state, "error": self.error,
                "attempts": self.attempts, "kind": self.op}

    def exception(self) -> errors.CloudError:
        return self.error_type(self.error or "delete failed")


class Deleter:
    """The queue of unlinks not yet applied by the gateway, and the task that sends them."""

    def __init__(self, client: CloudClient, blocking: Blocking, root: Path, account: str,
                 *, claim: bool = True, delay: float = 0.0) -> None:
        self.client = client
        self.blocking = blocking
        self.root = root
        self.account = account
        self.delay = delay  # seconds a queued id waits before it is sent (tests)
        self.batch_folder_changes = True  # off once the gateway lacks ApplyFolderChanges
        self.items: dict[str, PendingDelete] = {}  # queued or in flight, oldest first
        self.failures: list[PendingDelete] = []  # given up on, newest last
        self.deleted = 0
        self.ordered = 0  # folder changes queued: other calls wait for the queue first
        self.applied = 0  # folder changes the gateway applied
        self._seq = 0
        self.calls = 0  # DeleteFiles calls answered (status: how well unlinks batch)
        self.recovered = 0  # ids adopted from journals a killed daemon left
        self._attempt = 0
        self._sending = False
        self._urgent = False
        self._retry_at = 0.0
        self._backoff = 0
        self._wake = trio.Event()
        self._changed = trio.Event()
        self._journal: Journal | None = None  # the one new ids are appended to
        # Set by the filesystem: its own changes (not to be echoed), and the outcomes.
        self.on_start: Callable[[list[str]], None] = lambda ids: None
        self.on_abort: Callable[[list[str]], None] = lambda ids: None
        self.on_deleted: Callable[[list[PendingDelete]], None] = lambda items: None
        self.on_failed: Callable[[list[PendingDelete]], None] = lambda items: None
        self.on_applied: Callable[[PendingDelete], None] = lambda item: None
        if claim:
            self._adopt_leftovers()

    # --- queueing ---------------------------------------------------------------------------

    def hidden(self, entry_id: str) -> bool:
        """Queued for deletion: listings and lookups must not show it any more."""
        return entry_id in self.items

    def queue(self, entry_id: str, path: str, parent_ino: int) -> None:
        """Queue a server file's delete; its journal line is written before this returns."""
        if entry_id in self.items:
            return
        journal = self._journal_line(json.dumps({"id": entry_id, "path": path}))
        if journal is None:
            log.warning("the delete of %s is not journaled (a crash would forget it)", path)
        self.items[entry_id] = PendingDelete(entry_id, path, parent_ino, journal,
                                             trio.current_time(), key=entry_id)
        self._wake.set()
        self._notify()

    def queue_mkdir(self, folder_id: str, parent_id: str, name: str, *, mode: int, uid: int,
                    gid: int, path: str, parent_ino: int) -> None:
        """Queue the CreateFolder of a folder the mount has already shown, by its new id."""
        self._queue_folder_op("mkdir", folder_id, path, parent_ino,
                              {"parent": parent_id, "name": name, "mode": mode, "uid": uid,
                               "gid": gid})

    def queue_move(self, folder_id: str, parent_id: str, name: str, *, path: str,
                   parent_ino: int, from_ino: int, from_name: str) -> None:
        """Queue the MoveEntry of a folder the mount has already moved (no target there)."""
        item = self._queue_folder_op("move", folder_id, path, parent_ino,
                                     {"parent": parent_id, "name": name})
        item.from_ino, item.from_name = from_ino, from_name

    def _queue_folder_op(self, op: str, entry_id: str, path: str, parent_ino: int,
                         params: dict[str, Any]) -> PendingDelete:
        journal = self._journal_line(json.dumps({"op": op, "id": entry_id, "path": path,
                                                 **params}))
        if journal is None:
            log.warning("the %s of %s is not journaled (a crash would forget it)", op, path)
        item = PendingDelete(entry_id, path, parent_ino, journal, trio.current_time(), op=op,
                             params=params)
        self._add_folder_op(item)
        self._wake.set()
        self._notify()
        return item

    def _add_folder_op(self, item: PendingDelete) -> None:
        self._seq += 1
        item.key = f"{item.op}:{self._seq}"
        self.items[item.key] = item
        self.ordered += 1

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _journal_line(self, line: str) -> Journal | None:
        journal = self._journal
        try:
            if journal is None or journal.fd is None or journal.lines >= JOURNAL_LINES:
                path = self.root / f"deletes-{uuid.uuid4().hex[:12]}{SUFFIX}"
                fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND)
                journal = self._journal = Journal(path, fd)
                os.write(fd, (json.dumps({"account": self.account}) + "\n").encode())
            assert journal.fd is not None
            os.write(journal.fd, (line + "\n").encode())
        except OSError as exc:
            log.warning("cannot write the delete journal: %s", exc)
            return None
        journal.lines += 1
        journal.outstanding += 1
        return journal

    def _answered(self, journal: Journal | None) -> None:
        """One of the journal's ids is answered: the file goes with its last one."""
        if journal is None:
            return
        journal.outstanding -= 1
        if journal.outstanding > 0:
            return
        journal.close()
        if self._journal is journal:
            self._journal = None
        try:
            journal.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot remove %s: %s", journal.path, exc)

    # --- waiting for it ------------------------------------------------------------------

    async def flush(self, *, quiet: bool = False) -> None:
        """Send what is queued now; return once it is applied, raise if any of it failed.

        A transient failure raises at once (the ids stay queued and are retried in the
        background); ids retrying from an earlier failure get one fresh attempt first.
        ``quiet``: return instead of raising (a call that only needs the queue out of its
        way, and meets any trouble itself).
        """
        if quiet:
            with contextlib.suppress(errors.CloudError):
                await self.flush()
            return
        mine = list(self.items.values())
        if not mine:
            return
        start = self._attempt if self._sending else self._attempt + 1
        self._urgent = True
        self._wake.set()
        while True:
            for item in mine:
                if item.state == "retrying" and item.failed_attempt >= start:
                    raise item.exception()
            if all(item.state in ("done", "failed") for item in mine):
                for item in mine:
                    if item.state == "failed":
                        raise item.exception()
                return
            await self._changed.wait()

    async def sync(self, deadline: float | None = None) -> list[PendingDelete]:
        """Wait until nothing is queued or ``deadline`` (``time.monotonic()``) has passed;
        returns what is still queued."""
        self._urgent = True
        self._wake.set()
        with trio.move_on_at(trio_deadline(deadline)):
            while self.items:
                await self._changed.wait()
        return list(self.items.values())

    def status(self) -> dict[str, object]:
        return {
            "deletes_pending": len(self.items),
            "deletes_retrying": sum(1 for i in self.items.values() if i.state == "retrying"),
            "deletes_done": self.deleted,
            "delete_calls": self.calls,
            "folder_changes_pending": self.ordered,
            "folder_changes_done": self.applied,
            "deletes_failed": len(self.failures),
            "deletes_recovered": self.recovered,
            "deletes": [i.as_dict() for i in list(self.items.values())[:100]]
            + [i.as_dict() for i in self.failures],
        }

    # --- the sender ------------------------------------------------------------------------

    async def run(self) -> None:
        """Send queued ids, one DeleteFiles call at a time; runs until cancelled."""
        while True:
            ready = [i for i in self.items.values() if i.state in ("pending", "retrying")]
            if not ready:
                self._urgent = False  # whoever asked for a flush has what they wanted
                self._wake = trio.Event()
                await self._wake.wait()
                continue
            due = 0.0
            if not self._urgent:
                due = max(self._retry_at, min(i.queued_at for i in ready) + self.delay)
                if ready[0].op in FOLDER_OPS and self.batch_folder_changes:
                    due = max(due, ready[0].queued_at + FOLDER_GATHER_S)
            if due > trio.current_time():
                self._wake = trio.Event()
                with trio.move_on_at(due):
                    await self._wake.wait()
                continue
            # an urgent queue (someone waits in flush or sync) goes out whole, call after
            # call; it stops being urgent once it is empty or a call fails
            if ready[0].op in FOLDER_OPS:
                changes = []
                for item in ready:  # the folder changes up to the next delete, in one call
                    if item.op not in FOLDER_OPS or len(changes) == MAX_FOLDER_BATCH:
                        break
                    changes.append(item)
                await self._send_folder_ops(changes)
                continue
            batch = []
            for item in ready:  # the deletes up to the next folder change, in one call
                if item.op in FOLDER_OPS or len(batch) == MAX_BATCH:
                    break
                batch.append(item)
            await self._send(batch)

    def _begin(self, batch: list[PendingDelete]) -> int:
        """Mark a call's items as being sent; returns the attempt's number."""
        self._attempt += 1
        for item in batch:
            item.state = "sending"
            item.attempts += 1
        self._sending = True
        return self._attempt

    def _answered_call(self) -> None:
        """A call got its answer: the gateway is there, backoff starts over."""
        self._backoff = 0
        self._retry_at = 0.0

    async def _send(self, batch: list[PendingDelete]) -> None:
        attempt = self._begin(batch)
        ids = [item.entry_id for item in batch]
        self.on_start(ids)
        self._notify()
        try:
            results = await self.blocking(self.client.delete_files, ids)
        except errors.CloudError as exc:
            self.on_abort(ids)
            if isinstance(exc, TRANSIENT):
                self._retry_later(batch, exc, attempt, f"deleting {len(batch)} files")
            else:
                log.error("deleting %d files failed: %s (they stay on the server)",
                          len(batch), exc.message)
                await self._settle([], [(item, exc) for item in batch])
            return
        finally:
            self._sending = False
            self._notify()
        self._answered_call()
        self.calls += 1
        done: list[PendingDelete] = []
        failed: list[tuple[PendingDelete, errors.CloudError]] = []
        for item in batch:
            error = results.get(item.entry_id)
            if error is None or isinstance(error, errors.NotFound):
                done.append(item)  # gone already (trashed or deleted elsewhere) is done too
            else:
                failed.append((item, error))
        if failed:
            self.on_abort([item.entry_id for item, _ in failed])
        await self._settle(done, failed)

    def _retry_later(self, batch: list[PendingDelete], exc: errors.CloudError, attempt: int,
                     what: str) -> None:
        delay = RETRY_DELAYS[min(self._backoff, len(RETRY_DELAYS) - 1)]
        self._backoff += 1
        self._urgent = False  # the next try waits for its backoff unless asked again
        self._retry_at = trio.current_time() + delay
        log.warning("%s failed (%s); retrying in %ss", what, exc.message, delay)
        for item in batch:
            item.state = "retrying"
            item.error, item.error_type = exc.message, type(exc)
            item.failed_attempt = attempt

    def _apply_one(self, change: pb.FolderChange) -> list[pb.EntryResponse | errors.CloudError]:
        """A gateway without ApplyFolderChanges: CreateFolder (with the id the mount chose,
        so a retry after a lost reply is harmless) or MoveEntry, answered as a batch of
        one (a passing error is raised, for the caller's retry)."""
        try:
            if change.HasField("create"):
                c = change.create
                return [self.client.create_folder(c.name, c.parent_folder_id, mode=c.mode,
                                                  uid=c.uid, gid=c.gid, folder_id=c.folder_id)]
            m = change.move
            return [self.client.move_entry(m.entry_id, m.new_parent_folder_id, m.new_name)]
        except errors.PASSING:
            raise
        except errors.CloudError as exc:
            return [exc]

    async def _send_folder_ops(self, batch: list[PendingDelete]) -> None:
        """Queued mkdirs and folder moves in one ApplyFolderChanges call, in order (one
        CreateFolder or MoveEntry call each from a gateway without it)."""
        if not self.batch_folder_changes:
            batch = batch[:1]
        attempt = self._begin(batch)
        self._notify()
        try:
            changes = [_folder_change(item) for item in batch]
            if self.batch_folder_changes:
                results = await self.blocking(self.client.apply_folder_changes, changes)
            else:
                results = await self.blocking(self._apply_one, changes[0])
        except errors.NotImplementedYet:
            self.batch_folder_changes = False  # an older gateway: one call per change
            for item in batch:
                item.state = "pending"
            return
        except errors.CloudError as exc:
            if isinstance(exc, errors.PASSING):
                self._retry_later(batch, exc, attempt, f"{len(batch)} folder changes")
            else:
                await self._settle([], [(item, exc) for item in batch])
            return
        finally:
            self._sending = False
            self._notify()
        self._answered_call()
        done: list[PendingDelete] = []
        failed: list[tuple[PendingDelete, errors.CloudError]] = []
        stopped: errors.CloudError | None = None
        for item, result in zip(batch, results, strict=False):  # shorter: cut short
            if isinstance(result, errors.PASSING):
                stopped = result  # not applied, nor the ones after it
                break
            if isinstance(result, errors.CloudError):
                failed.append((item, result))
            else:
                item.reply = result
                done.append(item)
        left = batch[len(done) + len(failed):]
        if left:
            self._retry_later(left, stopped or errors.Unavailable("the batch was cut short"),
                              attempt, f"{len(left)} folder changes")
        await self._settle(done, failed)

    async def _settle(self, done: list[PendingDelete],
                      failed: list[tuple[PendingDelete, errors.CloudError]]) -> None:
        """Record outcomes: journals go, done ids are forgotten, failures are kept."""
        for item in done:  # journals first: once flush or sync returns, none is left
            self._answered(item.journal)
        for item, _ in failed:
            self._answered(item.journal)
        for item in done:
            item.state = "done"
            self.items.pop(item.key, None)
        for item, exc in failed:
            item.state = "failed"
            item.error, item.error_type = exc.message, type(exc)
            self.items.pop(item.key, None)
            if item.op in FOLDER_OPS:
                log.error("%s of %s failed: %s (the mount shows the server's tree again)",
                          item.op, item.path, exc.message)
            else:
                log.error("not deleted: %s (%s)", item.path, exc.message)
        deletes = [item for item in done if item.op not in FOLDER_OPS]
        changes = [item for item in done if item.op in FOLDER_OPS]
        self.deleted += len(deletes)
        self.applied += len(changes)
        self.ordered -= len(changes) + sum(1 for item, _ in failed if item.op in FOLDER_OPS)
        for item in changes:
            self.on_applied(item)
        if failed:
            self.failures.extend(item for item, _ in failed)
            del self.failures[:-FAILURES_KEPT]
            self.on_failed([item for item, _ in failed])
        if deletes:
            self.on_deleted(deletes)
        self._notify()

    def close(self) -> None:
        """Close the journal's descriptor (the file stays while it names unsent ids)."""
        if self._journal is not None:
            self._journal.close()

    # --- crash recovery ---------------------------------------------------------------------

    def _adopt_leftovers(self) -> None:
        """Queue the deletes killed daemons of this account journaled and never sent."""
        found = [p for p in self.root.iterdir() if p.name.endswith(SUFFIX)]
        found += abandoned(self.root, SUFFIX)
        for path in found:
            self._adopt(path)
        if self.recovered:
            log.info("%d deletes left by a crashed mount are queued again", self.recovered)

    def _adopt(self, path: Path) -> None:
        try:
            lines = read_private(path).decode().splitlines()  # never through a symlink
            header = json.loads(lines[0]) if lines else {}
        except (OSError, ValueError, UnicodeError):
            header = {}
        if header.get("account") != self.account:
            if not header and path.parent == self.root:
                path.unlink(missing_ok=True)  # cut short before any unlink returned
            return  # another account's: its own next mount sends it
        journal = Journal(path, None)
        for line in lines[1:]:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # the last line, cut short: its unlink never returned
            entry_id = str(record.get("id") or "")
            op = str(record.get("op") or "delete")
            if not entry_id or (op == "delete" and entry_id in self.items):
                continue
            journal.outstanding += 1
            item = PendingDelete(entry_id, str(record.get("path", "")), 0, journal,
                                 float("-inf"), key=entry_id)  # due at once
            if op in FOLDER_OPS:
                item.op = op
                item.params = {k: record[k] for k in ("parent", "name", "mode", "uid", "gid")
                               if k in record}
                self._add_folder_op(item)
            else:
                self.items[entry_id] = item
            self.recovered += 1
        if not journal.outstanding:
            path.unlink(missing_ok=True)


def _folder_change(item: PendingDelete) -> pb.FolderChange:
    """A queued mkdir or folder move as ApplyFolderChanges takes it."""
    p = item.params
    if item.op == "mkdir":
        return pb.FolderChange(create=pb.CreateFolderRequest(
            name=p.get("name", ""), parent_folder_id=p.get("parent", ""),
            mode=int(p.get("mode", 0)), uid=int(p.get("uid", 0)), gid=int(p.get("gid", 0)),
            folder_id=item.entry_id))
    return pb.FolderChange(move=pb.MoveEntryRequest(
        entry_id=item.entry_id, new_parent_folder_id=p.get("parent", ""),
        new_name=p.get("name", "")))
