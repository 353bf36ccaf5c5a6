"""Tree changes, pushed to the mounts of the account they concern.

A mount subscribes with WatchChanges and drops its kernel caches for the entries named, so
a second mount of the same account sees a change within a second instead of waiting for
attribute timeouts.

The fan-out is in-process; on PostgreSQL ``start_relay`` attaches a ``ChangeRelay`` that
carries every change to the other gateways of the database and theirs here, so a stream on
one gateway hears of changes made through another (see ``change_relay``).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .fanout import Fanout, Subscription
from .models import utcnow

if TYPE_CHECKING:
    from .change_relay import ChangeRelay
    from .db import Database
    from .pg_listen import PgListener

ORIGIN_HEADER = "x-cloudgrpc-origin"
# The origin of the call being served (its ORIGIN_HEADER), set by the RPC edge: a change
# made by that call is not echoed to a subscriber of the same origin, which made it and
# knows (a mount with its own WatchChanges stream: one message and one wake-up less per
# mkdir, mv, rm or upload).
REQUEST_ORIGIN: ContextVar[str] = ContextVar("cloudgrpc_request_origin", default="")


@dataclass(frozen=True)
class Change:
    kind: str  # created, updated, deleted, moved, restored
    user_id: str
    entry_id: str
    parent_folder_id: str
    name: str
    old_parent_folder_id: str = ""
    old_name: str = ""
    is_folder: bool = False
    shared: bool = False
    timestamp: str = field(default_factory=lambda: utcnow().isoformat() + "Z")
    origin: str = field(default_factory=REQUEST_ORIGIN.get)


class ChangeFeed:
    def __init__(self, keepalive_s: float = 30.0) -> None:
        self.fanout: Fanout[Change] = Fanout()
        # A stream silent this long says "hello" again (see Settings.change_keepalive_s).
        self.keepalive_s = keepalive_s
        self.relay: ChangeRelay | None = None

    def publish(self, change: Change) -> None:
        """A change made through this gateway: to its subscribers and the other gateways."""
        self.fanout.publish(change)
        if self.relay is not None:
            self.relay.send(change)

    def deliver(self, change: Change) -> None:
        """A change made through another gateway: to this gateway's subscribers only."""
        self.fanout.publish(change)

    def end_streams(self) -> None:
        """End every subscription (``Subscription.ended``): changes may have been missed,
        so each stream ends and its client re-subscribes and drops its caches."""
        self.fanout.end_all()

    def start_relay(self, db: Database, listener: PgListener) -> None:
        """On PostgreSQL, exchange changes with the other gateways through ``listener``
        (which its owner starts once every relay is attached)."""
        if not db.is_postgres or self.relay is not None:
            return
        from .change_relay import ChangeRelay

        self.relay = ChangeRelay(db, listener, self.deliver, self.end_streams)

    def close(self) -> None:
        if self.relay is not None:
            self.relay.close()

    def subscribe(self, user_id: str, origin: str = "") -> Subscription[Change]:
        """The changes of ``user_id``'s tree, except those made by calls of ``origin``."""
        if origin:
            return self.fanout.subscribe(
                lambda c: c.user_id == user_id and c.origin != origin, maxsize=5000)
        return self.fanout.subscribe(lambda c: c.user_id == user_id, maxsize=5000)
