"""Which gateway runs the background maintenance (repair, garbage collection).

Several gateways may share one PostgreSQL; exactly one of them should repair and collect
at a time. A session-level advisory lock held on a dedicated connection says who: if that
gateway dies its connection closes, the lock is released and another one takes over. On
SQLite there is one gateway by construction.
"""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.engine import Connection

from .db import Database

log = logging.getLogger(__name__)

_LOCK_KEY = 0x436C6F7564  # "Cloud"


class Leadership:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: Connection | None = None

    def is_leader(self) -> bool:
        if not self.db.is_postgres:
            return True
        try:
            if self._conn is None or self._conn.closed:
                self._conn = self.db.engine.connect()
                self._conn.execution_options(isolation_level="AUTOCOMMIT")
                got = self._conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                         {"k": _LOCK_KEY}).scalar()
                if not got:
                    self._conn.close()
                    self._conn = None
                    return False
                log.info("this gateway now runs background maintenance")
            else:
                self._conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - lost the connection: lost the lease
            log.warning("maintenance leadership lost", exc_info=True)
            self.release()
            return False

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001
                pass
            self._conn = None
