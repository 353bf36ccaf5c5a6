"""One PostgreSQL LISTEN connection per gateway, shared by every cross-gateway relay.

Several gateways can share one PostgreSQL database; what one of them does that the others
must hear of right away (stored events, tree changes) travels by NOTIFY on a channel of its
own. Each gateway LISTENs on all those channels over a single dedicated psycopg2 connection
(one per gateway, not one per concern: a database has a bounded number of connections),
read by one thread that hands each channel's payloads to its handler.

If the connection breaks (database restart, network cut), the listener reconnects with a
backoff and tells every handler it reconnected, so each can make up for what it may have
missed in the gap (the event relay catches up from the table, the change relay tells the
mounts to resynchronise).
"""

from __future__ import annotations

import logging
import select
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .db import Database

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often the listener wakes up to check whether it should stop
MAX_BACKOFF_S = 10.0


@dataclass(frozen=True)
class ChannelHandler:
    """What to do with one channel's notifications."""

    # The payloads heard in one read, in the order they were sent.
    on_payloads: Callable[[list[str]], None]
    # Called after each connect, before any payload of it: ``first`` is False after a
    # reconnect, when notifications sent during the gap are lost.
    on_connected: Callable[[bool], None]


class PgListener:
    """LISTENs on the registered channels; ``add`` them before ``start``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._handlers: dict[str, ChannelHandler] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    def add(self, channel: str, handler: ChannelHandler) -> None:
        if self._thread is not None:
            raise RuntimeError("channels are added before the listener starts")
        if not channel.isidentifier():
            raise ValueError(f"not a plain channel name: {channel!r}")
        self._handlers[channel] = handler

    def start(self, wait_s: float = 5.0) -> None:
        if self._thread is not None or not self._handlers:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pg-listen", daemon=True)
        self._thread.start()
        # Listening before the gateway serves calls means nothing is missed at start-up;
        # a database that is not reachable yet must not keep the gateway from starting.
        self.connected.wait(wait_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    # --- the listener thread ---------------------------------------------------------------

    def _connect(self) -> Any:
        import psycopg2
        import psycopg2.extensions

        engine = self.db.engine
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
            for channel in self._handlers:
                cur.execute(f"LISTEN {channel}")
        return conn

    def _run(self) -> None:
        backoff = 0.5
        first = True
        while not self._stop.is_set():
            try:
                conn = self._connect()
            except Exception as exc:  # noqa: BLE001 - retried with a backoff
                log.warning("LISTEN: cannot connect to PostgreSQL (%s); retrying", exc)
                self._stop.wait(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)
                continue
            backoff = 0.5
            log.info("listening on %s", ", ".join(self._handlers))
            self.connected.set()
            try:
                for channel, handler in self._handlers.items():
                    self._guarded(channel, handler.on_connected, first)
                first = False
                self._listen(conn)
            except Exception as exc:  # noqa: BLE001 - reconnect whatever broke
                if not self._stop.is_set():
                    log.warning("LISTEN connection lost (%s); reconnecting", exc)
            finally:
                self.connected.clear()
                try:
                    conn.close()
                except Exception:  # noqa: BLE001 - already broken
                    pass

    def _listen(self, conn: Any) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([conn], [], [], POLL_S)
            if not ready:
                continue
            conn.poll()
            heard: dict[str, list[str]] = {}
            while conn.notifies:
                note = conn.notifies.pop(0)
                heard.setdefault(note.channel, []).append(note.payload)
            for channel, payloads in heard.items():
                handler = self._handlers.get(channel)
                if handler is not None:
                    self._guarded(channel, handler.on_payloads, payloads)

    @staticmethod
    def _guarded(channel: str, action: Callable[[Any], None], arg: Any) -> None:
        try:
            action(arg)
        except Exception:  # noqa: BLE001 - one bad batch must not stop the listener
            log.exception("LISTEN: the handler of %s failed", channel)
