"""Quota held by uploads in progress, so no upload can put more than the quota on the nodes.

An upload opens a reservation before its first chunk is stored and grows it, chunk by
chunk, *before* each chunk goes to the nodes; a chunk that does not fit is refused
(QuotaExceeded) and never stored. What counts against a user's quota at any moment is:

    committed bytes (users.storage_used)
  + every live reservation of theirs (less the size of the file it overwrites, once per file)
  + the chunks their aborted uploads left on the nodes (``parked_chunks``)

A commit deletes its reservation in the transaction that adds the file's size to
``storage_used``. An abort deletes it too and parks the chunks it stored: they stay for a
resume (a later upload of the same user that sends them again, or references them, takes
them over) and stop counting when garbage collection removes them or their grace is over.
Rows live in the database, so several gateways share them; a gateway that dies mid-upload
leaves a reservation that stops counting once its chunks are collectable (``expires_at``,
renewed while the upload runs).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session as DbSession

from cloudgrpc_proto.errors import NotFound

from .config import Settings
from .db import Database
from .models import (
    Chunk,
    FileChunk,
    ParkedChunk,
    UploadReservation,
    User,
    UserChunk,
    new_id,
    utcnow,
)


@dataclass
class Reservation:
    """An upload's hold on its uploader's quota (``stored``: its row exists)."""

    id: str
    user_id: str
    replaces_file_id: str = ""
    credit: int = 0
    stored: bool = False


@dataclass(frozen=True)
class Grant:
    """One chunk's answer: may it be stored, and did the uploader already hold it."""

    accepted: bool
    already_held: bool


class Reservations:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    @property
    def ttl(self) -> dt.timedelta:
        """How long an unrenewed reservation or a parked chunk counts: until garbage
        collection may have taken its chunks (grace, one run, the nodes' idle window)."""
        idle = max(self.settings.gc_idle_s, self.settings.node_call_timeout_s + 5.0)
        return dt.timedelta(seconds=self.settings.gc_grace_s + 2 * self.settings.gc_interval_s
                            + idle)

    # --- what a user holds ----------------------------------------------------------

    def held(self, s: DbSession, user_id: str, exclude: str = "", parked: bool = True) -> int:
        """Bytes the user's live reservations (but ``exclude``) and, with ``parked``, their
        parked chunks hold. The announced-size check leaves parked chunks out: a resume
        takes them over, and ``grow`` counts them exactly."""
        now = utcnow()
        total = 0
        for nbytes, credit in s.execute(
                select(UploadReservation.bytes, UploadReservation.credit).where(
                    UploadReservation.user_id == user_id, UploadReservation.expires_at > now,
                    UploadReservation.id != exclude)):
            total += max(int(nbytes) - int(credit), 0)
        if not parked:
            return total
        waiting = s.scalar(select(func.coalesce(func.sum(ParkedChunk.size), 0)).where(
            ParkedChunk.user_id == user_id, ParkedChunk.parked_at > now - self.ttl)) or 0
        return total + int(waiting)

    # --- an upload's reservation ----------------------------------------------------

    def open(self, user_id: str, replaces_file_id: str = "", credit: int = 0) -> Reservation:
        """A new, empty reservation. It reaches the database with its first chunk, so an
        upload refused before storing anything costs no write."""
        return Reservation(new_id(), user_id, replaces_file_id, max(credit, 0))

    def grow(self, reservation: Reservation, chunks: Sequence[tuple[str, int]],
             holder_id: str = "") -> list[Grant]:
        """Reserve each chunk (hash, size) in order while it fits; the ones that do not are
        refused and must not be stored. A chunk the user had parked is taken over (it was
        counted already). Also says whether ``holder_id`` (the uploader, by default the user)
        already held each chunk: what an upload reply may tell them, never whether someone
        else stores it."""
        now = utcnow()
        user_id, reservation_id = reservation.user_id, reservation.id
        with self.db.write() as s:
            user = s.get(User, user_id, with_for_update=self.db.is_postgres)
            if user is None:
                raise NotFound("no such user")
            row = s.get(UploadReservation, reservation_id)
            if row is None:  # the first chunk (or the row expired and was cleared: again)
                s.execute(delete(UploadReservation).where(
                    UploadReservation.user_id == user_id, UploadReservation.expires_at <= now))
                s.execute(delete(ParkedChunk).where(  # those no longer count: tidy them
                    ParkedChunk.user_id == user_id, ParkedChunk.parked_at <= now - self.ttl))
                credit = 0 if reservation.stored else reservation.credit
                # an overwrite's old size is given back once, whatever the uploads racing
                if credit and s.scalar(select(exists().where(
                        UploadReservation.replaces_file_id == reservation.replaces_file_id,
                        UploadReservation.credit > 0, UploadReservation.expires_at > now))):
                    credit = 0
                row = UploadReservation(id=reservation_id, user_id=user_id, bytes=0,
                                        credit=credit,
                                        replaces_file_id=reservation.replaces_file_id or None,
                                        created_at=now, expires_at=now + self.ttl)
                s.add(row)
                reservation.stored = True
            row.expires_at = now + self.ttl
            hashes = list(dict.fromkeys(sha for sha, _ in chunks))
            parked = {p.chunk_sha256: p for part in _parts(hashes) for p in s.scalars(
                select(ParkedChunk).where(ParkedChunk.user_id == user_id,
                                          ParkedChunk.parked_at > now - self.ttl,
                                          ParkedChunk.chunk_sha256.in_(part)))}
            owned = {sha for part in _parts(hashes) for sha in s.scalars(
                select(UserChunk.chunk_sha256).where(UserChunk.user_id == (holder_id or user_id),
                                                     UserChunk.chunk_sha256.in_(part)))}
            room = user.storage_allocated - user.storage_used - self.held(
                s, user_id, exclude=reservation_id)
            mine = int(row.bytes)
            grants: list[Grant] = []
            for sha, size in chunks:
                was_parked = parked.pop(sha, None)
                freed = was_parked.size if was_parked is not None else 0
                if max(mine + size - row.credit, 0) > room + freed:
                    if was_parked is not None:
                        parked[sha] = was_parked
                    grants.append(Grant(False, sha in owned))
                    continue
                if was_parked is not None:
                    room += freed
                    s.delete(was_parked)
                mine += size
                grants.append(Grant(True, sha in owned))
            row.bytes = mine
            return grants

    def renew(self, reservation: Reservation) -> None:
        if not reservation.stored:
            return
        with self.db.write() as s:
            row = s.get(UploadReservation, reservation.id)
            if row is not None:
                row.expires_at = utcnow() + self.ttl

    def release(self, s: DbSession, reservation_id: str) -> None:
        """Inside the commit's transaction: the file's size now counts instead."""
        if reservation_id:
            s.execute(delete(UploadReservation).where(UploadReservation.id == reservation_id))

    def abandon(self, reservation: Reservation, chunks: Iterable[tuple[str, int]]) -> None:
        """An upload that will not commit: its reservation goes; the chunks it put on the
        nodes (that no file uses) stay parked, counted, until collected or reused."""
        wanted = dict(chunks)
        if not reservation.stored and not wanted:
            return
        user_id = reservation.user_id
        now = utcnow()
        with self.db.write() as s:
            self.release(s, reservation.id)
            hashes = list(wanted)
            used = {sha for part in _parts(hashes) for sha in s.scalars(
                select(FileChunk.chunk_sha256).where(FileChunk.chunk_sha256.in_(part)))}
            alive = {sha for part in _parts(hashes) for sha in s.scalars(
                select(Chunk.sha256).where(Chunk.sha256.in_(part)))}
            insert = postgresql.insert if self.db.is_postgres else sqlite.insert
            rows = [{"user_id": user_id, "chunk_sha256": sha, "size": size, "parked_at": now}
                    for sha, size in wanted.items() if sha not in used and sha in alive]
            if rows:  # parked again by a second abort: counted once, from now
                s.execute(insert(ParkedChunk).on_conflict_do_update(
                    index_elements=["user_id", "chunk_sha256"],
                    set_={"parked_at": now}), rows)
        reservation.stored = False


def _parts(items: Sequence[str], size: int = 500) -> list[Sequence[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]
