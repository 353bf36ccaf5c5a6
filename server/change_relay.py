"""Tree changes across gateways: PostgreSQL LISTEN/NOTIFY.

A mount's WatchChanges stream runs on whichever gateway the load balancer gave it, and the
change it must hear of may be made through another one. Each gateway therefore NOTIFYs the
channel ``cloudgrpc_changes`` with the changes it publishes, and every gateway hears them on
its one LISTEN connection (``pg_listen.PgListener``) and publishes those of the *other*
gateways into its own feed, where each subscriber still gets only its own account's changes
(the feed filters by user, wherever a change comes from).

- Sending happens on a thread of its own, after the change's transaction committed (so a
  gateway that hears of it reads the new state), in batches: a burst of small operations
  costs one NOTIFY transaction per batch, not one database round trip per change, and the
  caller never waits for it.
- A NOTIFY payload must stay under PostgreSQL's 8000 bytes: changes are packed into
  payloads of at most ``PAYLOAD_LIMIT`` bytes. Names are at most 255 bytes, so one change
  always fits; the names of one that did not would be left out (subscribers then drop the
  entry by id).
- A change is a hint to drop caches, not the data: nothing is stored. If the LISTEN
  connection broke, changes sent during the gap are lost; the relay then ends every
  WatchChanges stream of this gateway, and each mount re-subscribes and drops its caches
  (as after any reconnect), so nothing stale outlives the gap.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import astuple, fields

from sqlalchemy import text

from .change_feed import Change
from .db import Database
from .pg_listen import ChannelHandler, PgListener

log = logging.getLogger(__name__)

CHANNEL = "cloudgrpc_changes"
# PostgreSQL refuses payloads of 8000 bytes or more (in the server encoding; UTF-8 here).
PAYLOAD_LIMIT = 7800
SEND_LINGER_S = 0.005  # after the first change of a burst, wait this long to batch the rest
SEND_BATCH = 500  # changes per NOTIFY transaction at most
QUEUE_LIMIT = 50_000  # changes waiting to be sent; beyond it the oldest are dropped
_FIELDS = [f.name for f in fields(Change)]


def _encode(change: Change) -> str:
    return json.dumps(list(astuple(change)), ensure_ascii=False, separators=(",", ":"))


def pack(gateway_id: str, changes: list[Change]) -> Iterator[str]:
    """Payloads of at most ``PAYLOAD_LIMIT`` UTF-8 bytes carrying ``changes`` in order."""
    head = f'{{"g":{json.dumps(gateway_id)},"c":['
    tail = "]}"
    room = PAYLOAD_LIMIT - len(head.encode()) - len(tail)
    items: list[str] = []
    used = 0
    for change in changes:
        item = _encode(change)
        size = len(item.encode())
        if size > room:  # cannot happen with names of at most 255 bytes; never refuse one
            log.warning("change relay: change of %s too large to relay whole: names left out",
                        change.entry_id)
            item = _encode(Change(change.kind, change.user_id, change.entry_id,
                                  change.parent_folder_id, "", change.old_parent_folder_id,
                                  "", change.is_folder, change.shared, change.timestamp,
                                  change.origin))
            size = len(item.encode())
        if items and used + 1 + size > room:
            yield head + ",".join(items) + tail
            items, used = [], 0
        items.append(item)
        used += size + (1 if len(items) > 1 else 0)
    if items:
        yield head + ",".join(items) + tail


def unpack(payload: str) -> tuple[str, list[Change]]:
    """The sending gateway's id and its changes (ValueError for a payload not of ours)."""
    message = json.loads(payload)
    if not isinstance(message, dict) or not isinstance(message.get("c"), list):
        raise ValueError("not a change payload")
    changes = []
    for item in message["c"]:
        if not isinstance(item, list) or len(item) != len(_FIELDS):
            raise ValueError("not a change")
        changes.append(Change(**dict(zip(_FIELDS, item, strict=True))))
    return str(message.get("g", "")), changes


class ChangeRelay:
    """Sends this gateway's changes to the others and ``deliver``s theirs here."""

    def __init__(self, db: Database, listener: PgListener,
                 deliver: Callable[[Change], None], interrupt: Callable[[], None]) -> None:
        self.db = db
        self.deliver = deliver  # into this gateway's feed only (not sent on again)
        self.interrupt = interrupt  # ends this gateway's streams: their subscribers resync
        # Tells our own notifications (which we hear too) from the other gateways'.
        self.gateway_id = secrets.token_hex(8)
        self._pending: list[Change] = []
        self._lock = threading.Condition()
        self._closed = False
        self._sender: threading.Thread | None = None
        self.dropped = 0  # changes not sent (queue overflow, database errors)
        listener.add(CHANNEL, ChannelHandler(self._on_payloads, self._on_connected))

    # --- sending ---------------------------------------------------------------------------

    def send(self, change: Change) -> None:
        """Queue ``change`` for the other gateways; never blocks or fails the caller."""
        with self._lock:
            if self._closed:
                return
            self._pending.append(change)
            if len(self._pending) > QUEUE_LIMIT:
                del self._pending[0]
                self.dropped += 1
            if len(self._pending) == 1:
                self._lock.notify()
            if self._sender is None:
                self._sender = threading.Thread(target=self._send_loop, name="change-relay",
                                                daemon=True)
                self._sender.start()

    def close(self, timeout: float = 2.0) -> None:
        """Send what is queued (for at most ``timeout``), then stop."""
        with self._lock:
            self._closed = True
            self._lock.notify()
            sender = self._sender
        if sender is not None:
            sender.join(timeout)

    def _send_loop(self) -> None:
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._lock.wait()
                if not self._pending:
                    return
            time.sleep(SEND_LINGER_S)
            with self._lock:
                batch = self._pending[:SEND_BATCH]
                del self._pending[:SEND_BATCH]
            self._notify(batch)

    def _notify(self, batch: list[Change]) -> None:
        try:
            with self.db.engine.begin() as conn:
                for payload in pack(self.gateway_id, batch):
                    conn.execute(text("SELECT pg_notify(:channel, :payload)"),
                                 {"channel": CHANNEL, "payload": payload})
        except Exception as exc:  # noqa: BLE001 - a hint lost; mounts' timeouts cover it
            self.dropped += len(batch)
            log.warning("change relay: %d change(s) not sent to the other gateways: %s",
                        len(batch), exc)

    # --- hearing the other gateways ------------------------------------------------------

    def _on_connected(self, first: bool) -> None:
        if not first:
            log.info("change relay: reconnected; ending change streams so mounts resync")
            self.interrupt()

    def _on_payloads(self, payloads: list[str]) -> None:
        for payload in payloads:
            try:
                sender, changes = unpack(payload)
            except (ValueError, TypeError) as exc:
                log.debug("change relay: ignoring a payload (%s)", exc)
                continue
            if sender == self.gateway_id:
                continue
            for change in changes:
                self.deliver(change)
