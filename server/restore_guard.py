"""After a metadata restore, stray chunk files are evidence: keep them until fsck has run.

A restored database knows nothing of the files committed after the backup, yet their
chunks are still on the nodes. To garbage collection's node sweep they look like leftovers
of crashed uploads and would be deleted once idle, taking with them the only trace of
those files before an operator could see them. So the restore records a
``metadata_restored`` event in the database (shared by every gateway), and the node sweep
stays off until a complete ``cloudgrpc-admin --fsck`` has run after it: that report lists
the unknown chunks (``unknown_to_metadata``), and ``--fsck --repair`` or the resumed sweep
deletes them afterwards. Chunk rows the metadata knows are collected as usual meanwhile.
"""

from __future__ import annotations

import json

from sqlalchemy import Connection, insert, select
from sqlalchemy.orm import Session

from .models import Event, utcnow

RESTORED_EVENT = "metadata_restored"
FSCK_EVENT = "fsck"


def mark_restored(conn: Connection, backup_created_at: str) -> None:
    """Record the restore in the restored database (inside the restore's transaction)."""
    conn.execute(insert(Event).values(
        event_type=RESTORED_EVENT, timestamp=utcnow(), user_id=None,
        message="metadata restored from a backup: stray chunks kept until an fsck has run",
        details=json.dumps({"backup_created_at": backup_created_at})))


def sweep_held_since(session: Session) -> str | None:
    """When the last restore has no complete fsck after it: the restore's time (ISO),
    else None (the sweep may run)."""
    restored = session.scalar(select(Event.timestamp).where(
        Event.event_type == RESTORED_EVENT).order_by(Event.timestamp.desc()).limit(1))
    if restored is None:
        return None
    for details in session.scalars(select(Event.details).where(
            Event.event_type == FSCK_EVENT, Event.timestamp >= restored)):
        try:
            if json.loads(details or "{}").get("complete"):
                return None
        except ValueError:
            continue
    return restored.isoformat(timespec="seconds")
