"""System events: stored in the database, then published to live monitors.

Every notable action (upload, download, delete, share, login, enrolment, OTP failure, node
up/down, repair, payment) becomes one row in ``events`` so a monitor that connects later can
replay the recent past, and one message on the fan-out for monitors already watching.

On PostgreSQL the same transaction that stores an event also NOTIFYs its id
(``event_relay.notify_stored``), and ``EventRelay`` (attached by ``start_relay``) hears of
the ids stored by other gateways of the same database and publishes those events here too,
so a monitor sees every gateway's events whichever gateway it is connected to. Each event is
published at most once per gateway: ``_seen`` remembers the ids already published.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from .db import Database
from .fanout import Fanout, Subscription
from .models import Event, utcnow

if TYPE_CHECKING:
    from .event_relay import EventRelay
    from .pg_listen import PgListener

log = logging.getLogger(__name__)

WRITE_BATCH = 200
# After the first event of a burst the writer waits this long before storing, so a run of
# small operations (rm of many files) costs one write transaction per batch instead of one
# per event, and the callers do not wake the writer once each: it competes with them for
# the SQLite write lock and the interpreter. Monitors see an event this much later.
WRITE_LINGER_S = 0.02
SEEN_IDS = 20_000  # ids remembered for de-duplication (far more than a relay batch)


@dataclass(frozen=True)
class EventRecord:
    event_id: int
    event_type: str
    timestamp: dt.datetime
    message: str
    user_id: str
    details: str


class _SeenIds:
    """A bounded set of event ids, oldest forgotten first; ``add`` says if the id was new."""

    def __init__(self, limit: int = SEEN_IDS) -> None:
        self._ids: OrderedDict[int, None] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def add(self, event_id: int) -> bool:
        with self._lock:
            if event_id in self._ids:
                return False
            self._ids[event_id] = None
            while len(self._ids) > self._limit:
                self._ids.popitem(last=False)
            return True

    def __contains__(self, event_id: int) -> bool:
        with self._lock:
            return event_id in self._ids


class EventBus:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.fanout: Fanout[EventRecord] = Fanout()
        self._seen = _SeenIds()
        self.relay: EventRelay | None = None
        self.closing = threading.Event()  # set on shutdown: live streams end
        self._pending: list[tuple[str, str, str | None, str, dt.datetime]] = []
        self._pending_lock = threading.Lock()
        self._wake = threading.Condition(self._pending_lock)
        self._drained = threading.Condition(self._pending_lock)
        self._unwritten = 0
        self._writer: threading.Thread | None = None

    def emit(self, event_type: str, message: str, user_id: str | None = None,
             **details: Any) -> None:
        """Queue an event for storing and publishing; never fails or slows the caller.

        A writer thread stores queued events in batches (one transaction for many), so a
        burst of small operations does not pay a database write each for its event.
        """
        payload = json.dumps(details, default=str, sort_keys=True)
        log.info("event %s: %s %s", event_type, message, payload)
        with self._pending_lock:
            self._pending.append((event_type, message, user_id, payload, utcnow()))
            self._unwritten += 1
            if len(self._pending) == 1:
                self._wake.notify()  # the writer waits only when nothing is pending
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="event-writer",
                                                 daemon=True)
                self._writer.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event is stored and published."""
        deadline = time.monotonic() + timeout
        with self._pending_lock:
            while self._unwritten:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._drained.wait(left)
        return True

    def _write_loop(self) -> None:
        while True:
            with self._pending_lock:
                while not self._pending:
                    self._wake.wait()
            time.sleep(WRITE_LINGER_S)
            with self._pending_lock:
                batch = self._pending[:WRITE_BATCH]
                del self._pending[:WRITE_BATCH]
            records = self._store(batch)
            for record in records:
                self.fanout.publish(record)
            with self._pending_lock:
                self._unwritten -= len(batch)
                if not self._unwritten:
                    self._drained.notify_all()

    def _store(self, batch: list[tuple[str, str, str | None, str, dt.datetime]]
               ) -> list[EventRecord]:
        try:
            with self.db.write() as s:
                rows = [Event(event_type=t, message=m, user_id=u, details=d, timestamp=ts)
                        for t, m, u, d, ts in batch]
                s.add_all(rows)
                s.flush()
                records = [_record(row) for row in rows]
                for record in records:
                    # Marked before the commit: the relay may hear our own NOTIFY at once.
                    self._seen.add(record.event_id)
                if self.db.is_postgres:
                    from .event_relay import notify_stored

                    for record in records:
                        notify_stored(s, record.event_id)
            return records
        except Exception:  # noqa: BLE001 - an event must never break the user's operation
            log.exception("could not store %d events", len(batch))
            return [EventRecord(0, t, ts, m, u or "", d) for t, m, u, d, ts in batch]

    def publish(self, record: EventRecord) -> None:
        """Publish a record to this gateway's monitors (once per event id)."""
        if record.event_id and not self._seen.add(record.event_id):
            return
        self.fanout.publish(record)

    def publish_stored(self, event_ids: Iterable[int]) -> int:
        """Load the given stored events (another gateway's) and publish those not yet seen."""
        wanted = sorted({i for i in event_ids if i not in self._seen})
        if not wanted:
            return 0
        with self.db.read() as s:
            rows = list(s.scalars(select(Event).where(Event.id.in_(wanted)).order_by(Event.id)))
        published = 0
        for row in rows:
            record = _record(row)
            if self._seen.add(record.event_id):
                self.fanout.publish(record)
                published += 1
        return published

    def recent(self, limit: int, types: set[str] | None = None) -> list[EventRecord]:
        with self.db.read() as s:
            q = select(Event).order_by(Event.id.desc()).limit(limit)
            if types:
                q = q.where(Event.event_type.in_(types))
            rows = list(s.scalars(q))
        return [_record(r) for r in reversed(rows)]

    def since(self, after_id: int, limit: int = 1000) -> list[EventRecord]:
        """Stored events with an id above ``after_id``, oldest first (catch-up after a gap)."""
        with self.db.read() as s:
            rows = list(s.scalars(select(Event).where(Event.id > after_id)
                                  .order_by(Event.id).limit(limit)))
        return [_record(r) for r in rows]

    def subscribe(self, types: set[str] | None = None) -> Subscription[EventRecord]:
        return self.fanout.subscribe(lambda e: not types or e.event_type in types)

    # --- the cross-gateway relay (PostgreSQL only) -------------------------------------

    def start_relay(self, listener: PgListener) -> None:
        """On PostgreSQL, hear of the events other gateways store (through ``listener``,
        which its owner starts once every relay is attached)."""
        if not self.db.is_postgres or self.relay is not None:
            return
        from .event_relay import EventRelay

        self.relay = EventRelay(self, listener)

    def close(self) -> None:
        """Stop relaying and end live streams; ``emit`` keeps storing events."""
        self.flush()
        self.closing.set()
        if self.relay is not None:
            self.relay.stop()
            self.relay = None


def _record(row: Event) -> EventRecord:
    return EventRecord(row.id, row.event_type, row.timestamp, row.message, row.user_id or "",
                       row.details)
