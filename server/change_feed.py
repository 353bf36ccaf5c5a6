"""Tree changes, pushed to the mounts of the account they concern.

A mount subscribes with WatchChanges and drops its kernel caches for the entries named, so
a second mount of the same account sees a change within a second instead of waiting for
attribute timeouts.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field

from .fanout import Fanout, Subscription
from .models import utcnow

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
    def __init__(self) -> None:
        self.fanout: Fanout[Change] = Fanout()

    def publish(self, change: Change) -> None:
        self.fanout.publish(change)

    def subscribe(self, user_id: str, origin: str = "") -> Subscription[Change]:
        """The changes of ``user_id``'s tree, except those made by calls of ``origin``."""
        if origin:
            return self.fanout.subscribe(
                lambda c: c.user_id == user_id and c.origin != origin, maxsize=5000)
        return self.fanout.subscribe(lambda c: c.user_id == user_id, maxsize=5000)
