"""Bytes this gateway moves for clients, counted in memory and added to ``traffic_minutes``.

The admin status reports the cluster's upload and download speeds whichever gateway
answers, and several gateways may share one database: so each gateway counts what it
receives (UploadFile, UploadSmallFiles) and sends (DownloadFile, DownloadSmallFiles) per
minute, and every few seconds adds its counts to its own row of that minute with one
upsert (``INSERT ... ON CONFLICT DO UPDATE SET bytes_in = bytes_in + excluded.bytes_in``),
which adds correctly on SQLite and PostgreSQL even when two flushes of the same gateway
and minute meet. Rows older than an hour are pruned.

What is counted: the file bytes of the calls above, as they cross this gateway (a failed
upload's bytes were received all the same). Not counted: chunk bytes clients read straight
from the nodes with read tokens (``GetFileChunks(with_sources)``, ``direct_reads.py``). No
gateway sees them, and the grant is for the whole file while the client may read a part,
serve the rest from its cache, or fall back to DownloadFile (which is then counted): counting
granted bytes would report reads that never happened. The download speed is therefore what
the gateways served; a mount reading from the nodes directly shows in its own metrics
(``cloudgrpc status --json``), not here. Node-to-node repair traffic is not client traffic.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from .db import Database
from .models import TrafficMinute

log = logging.getLogger(__name__)

KEEP_MINUTES = 60  # rows older than this are pruned
PRUNE_EVERY_S = 60.0


def new_gateway_id() -> str:
    """Unique per process: host, pid and a random part (a restarted gateway with the same
    pid, or two containers with the same host name, still get rows of their own)."""
    host = socket.gethostname()[:32] or "gateway"
    return f"{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"[:64]


@dataclass(frozen=True)
class Speeds:
    """The cluster's traffic over the last ``window_s`` seconds (up to now)."""

    bytes_in: int
    bytes_out: int
    window_s: float

    @property
    def upload_bytes_per_s(self) -> float:
        return self.bytes_in / self.window_s if self.window_s > 0 else 0.0

    @property
    def download_bytes_per_s(self) -> float:
        return self.bytes_out / self.window_s if self.window_s > 0 else 0.0


class TrafficMeter:
    """Per-minute byte counts of this gateway, flushed to the database in the background.

    ``received``/``sent`` are called on the RPC threads and only take a lock; the database
    sees one upsert per minute with traffic per flush interval. A flush that fails (the
    database is down) keeps its counts for the next one.
    """

    def __init__(self, db: Database, flush_interval_s: float = 5.0,
                 gateway_id: str | None = None) -> None:
        self.db = db
        self.gateway_id = gateway_id or new_gateway_id()
        self.flush_interval_s = max(0.1, flush_interval_s)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time (thread, status, close)
        self._pending: dict[int, list[int]] = {}  # minute -> [bytes_in, bytes_out]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pruned_at = 0.0

    # --- counting (RPC threads) ---------------------------------------------------------

    def received(self, n: int, now: float | None = None) -> None:
        """``n`` bytes came in from a client (an upload)."""
        self._add(n, 0, now)

    def sent(self, n: int, now: float | None = None) -> None:
        """``n`` bytes went out to a client (a download)."""
        self._add(0, n, now)

    def _add(self, bytes_in: int, bytes_out: int, now: float | None) -> None:
        if bytes_in <= 0 and bytes_out <= 0:
            return
        minute = int((time.time() if now is None else now) // 60)
        with self._lock:
            row = self._pending.setdefault(minute, [0, 0])
            row[0] += bytes_in
            row[1] += bytes_out

    # --- the database -------------------------------------------------------------------

    def flush(self) -> None:
        """Add the counts so far to this gateway's rows; on failure keep them for later."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
            if pending:
                try:
                    with self.db.write() as s:
                        for minute, (bytes_in, bytes_out) in sorted(pending.items()):
                            s.execute(self._upsert(minute, bytes_in, bytes_out))
                except Exception:
                    with self._lock:  # not lost: the next flush adds them
                        for minute, (bytes_in, bytes_out) in pending.items():
                            row = self._pending.setdefault(minute, [0, 0])
                            row[0] += bytes_in
                            row[1] += bytes_out
                    raise
            if time.monotonic() - self._pruned_at >= PRUNE_EVERY_S:
                self.prune()

    def _upsert(self, minute: int, bytes_in: int, bytes_out: int):  # type: ignore[no-untyped-def]
        dialect = postgresql if self.db.is_postgres else sqlite
        stmt = dialect.insert(TrafficMinute).values(
            gateway_id=self.gateway_id, minute=minute, bytes_in=bytes_in, bytes_out=bytes_out)
        return stmt.on_conflict_do_update(
            index_elements=[TrafficMinute.gateway_id, TrafficMinute.minute],
            set_={"bytes_in": TrafficMinute.bytes_in + stmt.excluded.bytes_in,
                  "bytes_out": TrafficMinute.bytes_out + stmt.excluded.bytes_out})

    def prune(self, now: float | None = None) -> int:
        """Drop every gateway's rows older than an hour (any gateway may do it)."""
        oldest = int((time.time() if now is None else now) // 60) - KEEP_MINUTES
        with self.db.write() as s:
            gone = s.execute(delete(TrafficMinute).where(TrafficMinute.minute < oldest))
        self._pruned_at = time.monotonic()
        return int(gone.rowcount or 0)

    def speeds(self, window_s: float, now: float | None = None) -> Speeds:
        """The cluster's bytes in and out from the start of the minute ``window_s`` seconds
        ago until now, over that span. This gateway's own counts are flushed first, so they
        are exact; other gateways' lag by at most their flush interval."""
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 - the read below says what it can
            log.warning("traffic counts not flushed: %s", exc)
        now = time.time() if now is None else now
        first = int((now - max(60.0, window_s)) // 60) + 1
        with self.db.read() as s:
            bytes_in, bytes_out = s.execute(
                select(func.coalesce(func.sum(TrafficMinute.bytes_in), 0),
                       func.coalesce(func.sum(TrafficMinute.bytes_out), 0))
                .where(TrafficMinute.minute >= first)).one()
        return Speeds(int(bytes_in), int(bytes_out), now - first * 60)

    # --- the background flusher ---------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="traffic-flush", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - kept for the next round
                log.warning("traffic counts not flushed (kept for the next try): %s", exc)

    def close(self) -> None:
        """Stop the flusher and write what is left (a stopping gateway's last seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 - stopping anyway
            log.warning("last traffic counts not written: %s", exc)
