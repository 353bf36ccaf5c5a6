"""Events across gateways: PostgreSQL LISTEN/NOTIFY.

Several gateways can share one PostgreSQL database. Each stores its events in ``events``
and, in the same transaction, NOTIFYs the channel ``cloudgrpc_events`` with the new event's
id (PostgreSQL delivers a notification only when its transaction commits, so a listener
never hears of a row it cannot read yet). Every gateway listens (``pg_listen.PgListener``,
the gateway's one LISTEN connection), loads the rows whose ids it hears of and publishes
them into its own fan-out; ``EventBus`` drops ids it has already published (its own events
included).

After the listening connection broke and came back (database restart, network), the relay
catches up on the events stored meanwhile, so a monitor misses nothing but the events of
the outage window that were written before the last id it saw.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.orm import Session

from .pg_listen import ChannelHandler, PgListener

if TYPE_CHECKING:
    from .events import EventBus

log = logging.getLogger(__name__)

CHANNEL = "cloudgrpc_events"


def notify_stored(session: Session, event_id: int) -> None:
    """NOTIFY the other gateways of ``event_id`` when ``session``'s transaction commits."""
    session.execute(text("SELECT pg_notify(:channel, :payload)"),
                    {"channel": CHANNEL, "payload": str(event_id)})


class EventRelay:
    """Hears of other gateways' events through ``listener`` and publishes them into ``bus``."""

    def __init__(self, bus: EventBus, listener: PgListener) -> None:
        self.bus = bus
        self.stopped = False
        self.last_id = 0  # highest event id heard of, for catch-up after a reconnect
        listener.add(CHANNEL, ChannelHandler(self._on_payloads, self._on_connected))

    def stop(self) -> None:
        """Publish nothing more (the listener itself is stopped by its owner)."""
        self.stopped = True

    def _on_connected(self, first: bool) -> None:
        if self.stopped:
            return
        if first:
            latest = self.bus.recent(1)
            self.last_id = max(self.last_id, latest[-1].event_id if latest else 0)
        else:
            self._catch_up()

    def _on_payloads(self, payloads: list[str]) -> None:
        ids: list[int] = []
        for payload in payloads:
            try:
                ids.append(int(payload))
            except ValueError:
                log.debug("event relay: ignoring payload %r", payload)
        if ids and not self.stopped:
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
