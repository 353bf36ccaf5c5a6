"""System events: stored in the database, then published to live monitors.

Every notable action (upload, download, delete, share, login, enrolment, OTP failure, node
up/down, repair, payment) becomes one row in ``events`` so a monitor that connects later can
replay the recent past, and one message on the fan-out for monitors already watching.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from .db import Database
from .fanout import Fanout, Subscription
from .models import Event, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventRecord:
    event_id: int
    event_type: str
    timestamp: dt.datetime
    message: str
    user_id: str
    details: str


class EventBus:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.fanout: Fanout[EventRecord] = Fanout()

    def emit(self, event_type: str, message: str, user_id: str | None = None,
             **details: Any) -> None:
        """Store and publish an event; never fails the operation that caused it."""
        payload = json.dumps(details, default=str, sort_keys=True)
        try:
            with self.db.write() as s:
                row = Event(event_type=event_type, message=message, user_id=user_id,
                            details=payload, timestamp=utcnow())
                s.add(row)
                s.flush()
                record = _record(row)
        except Exception:  # noqa: BLE001 - an event must never break the user's operation
            log.exception("could not store event %s", event_type)
            record = EventRecord(0, event_type, utcnow(), message, user_id or "", payload)
        log.info("event %s: %s %s", event_type, message, payload)
        self.publish(record)

    def publish(self, record: EventRecord) -> None:
        self.fanout.publish(record)

    def recent(self, limit: int, types: set[str] | None = None) -> list[EventRecord]:
        with self.db.read() as s:
            q = select(Event).order_by(Event.id.desc()).limit(limit)
            if types:
                q = q.where(Event.event_type.in_(types))
            rows = list(s.scalars(q))
        return [_record(r) for r in reversed(rows)]

    def subscribe(self, types: set[str] | None = None) -> Subscription[EventRecord]:
        return self.fanout.subscribe(lambda e: not types or e.event_type in types)


def _record(row: Event) -> EventRecord:
    return EventRecord(row.id, row.event_type, row.timestamp, row.message, row.user_id or "",
                       row.details)
