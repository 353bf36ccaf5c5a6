"""Tree changes, pushed to the mounts of the account they concern.

A mount subscribes with WatchChanges and drops its kernel caches for the entries named, so
a second mount of the same account sees a change within a second instead of waiting for
attribute timeouts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .fanout import Fanout, Subscription
from .models import utcnow


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


class ChangeFeed:
    def __init__(self) -> None:
        self.fanout: Fanout[Change] = Fanout()

    def publish(self, change: Change) -> None:
        self.fanout.publish(change)

    def subscribe(self, user_id: str) -> Subscription[Change]:
        return self.fanout.subscribe(lambda c: c.user_id == user_id, maxsize=5000)
