"""Events across gateways: PostgreSQL LISTEN/NOTIFY.

Several gateways can share one PostgreSQL database. Each stores its events in ``events``
and, in the same transaction, NOTIFYs the channel ``cloudgrpc_events`` with the new event's
id (PostgreSQL delivers a notification only when its transaction commits, so a listener
never hears of a row it cannot read yet). Every gateway LISTENs on a dedicated psycopg2
connection in a thread, loads the rows whose ids it hears of and publishes them into its
own fan-out; ``EventBus`` drops ids it has already published (its own events included).

If the listening connection breaks (database restart, network), the relay reconnects with
a backoff and catches up on the events stored meanwhile, so a monitor misses nothing but
the events of the outage window that were written before the last id it saw.
"""

from __future__ import annotations

import logging
import select
import threading
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from .events import EventBus

log = logging.getLogger(__name__)

CHANNEL = "cloudgrpc_events"
POLL_S = 0.5  # how often the listener wakes up to check whether it should stop
MAX_BACKOFF_S = 10.0


def notify_stored(session: Session, event_id: int) -> None:
    """NOTIFY the other gateways of ``event_id`` when ``session``'s transaction commits."""
    session.execute(text("SELECT pg_notify(:channel, :payload)"),
                    {"channel": CHANNEL, "payload": str(event_id)})


class EventRelay:
    """Listens for other gateways' events and publishes them into ``bus``."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self.connected = threading.Event()
        self.last_id = 0  # highest event id heard of, for catch-up after a reconnect

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="event-relay", daemon=True)
        self._thread.start()
        # Listening before the gateway serves calls means no event is missed at start-up;
        # a database that is not reachable yet must not keep the gateway from starting.
        self.connected.wait(5.0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    # --- the listener thread ---------------------------------------------------------------

    def _connect(self) -> Any:
        import psycopg2
        import psycopg2.extensions

        engine = self.bus.db.engine
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        cparams.setdefault("connect_timeout", 5)
        # Keepalives so a silently dropped connection is noticed, not listened on forever.
        cparams.setdefault("keepalives", 1)
        cparams.setdefault("keepalives_idle", 30)
        cparams.setdefault("keepalives_interval", 10)
        cparams.setdefault("keepalives_count", 3)
        conn = psycopg2.connect(*cargs, **cparams)
        conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        with conn.cursor() as cur:
            cur.execute(f"LISTEN {CHANNEL}")
        return conn

    def _run(self) -> None:
        backoff = 0.5
        first = True
        while not self._stop.is_set():
            try:
                self._conn = self._connect()
            except Exception as exc:  # noqa: BLE001 - retried with a backoff
                log.warning("event relay: cannot connect to PostgreSQL (%s); retrying", exc)
                self._stop.wait(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
                continue
            backoff = 0.5
            log.info("event relay: listening on %s", CHANNEL)
            self.connected.set()
            try:
                if first:
                    latest = self.bus.recent(1)
                    self.last_id = max(self.last_id, latest[-1].event_id if latest else 0)
                    first = False
                else:
                    self._catch_up()
                self._listen(self._conn)
            except Exception as exc:  # noqa: BLE001 - reconnect whatever broke
                if not self._stop.is_set():
                    log.warning("event relay: connection lost (%s); reconnecting", exc)
            finally:
                self.connected.clear()
                try:
                    self._conn.close()
                except Exception:  # noqa: BLE001 - already broken
                    pass
                self._conn = None

    def _listen(self, conn: Any) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([conn], [], [], POLL_S)
            if not ready:
                continue
            conn.poll()
            ids: list[int] = []
            while conn.notifies:
                note = conn.notifies.pop(0)
                try:
                    ids.append(int(note.payload))
                except ValueError:
                    log.debug("event relay: ignoring payload %r", note.payload)
            if ids:
                self.last_id = max(self.last_id, *ids)
                self._publish(ids)

    def _publish(self, ids: list[int]) -> None:
        try:
            self.bus.publish_stored(ids)
        except Exception:  # noqa: BLE001 - one bad batch must not stop the relay
            log.exception("event relay: could not publish events %s", ids)

    def _catch_up(self) -> None:
        if not self.last_id:
            return
        missed = self.bus.since(self.last_id)
        if missed:
            self.last_id = max(self.last_id, missed[-1].event_id)
            self._publish([r.event_id for r in missed])
