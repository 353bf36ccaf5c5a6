"""Write tokens a node has already honoured, so that none is honoured twice.

A write token names one chunk, one size and this node and expires within a minute or two
(``proto/write_grants.py``); once a chunk was stored under it, the same token again is a
replay and is refused. A token is remembered until its expiry (it is refused past it
anyway), so the memory is bounded by what the gateway grants per expiry window; past
``MAX_REMEMBERED`` live tokens the node refuses direct writes (the client then sends its
bytes through the gateway) rather than forget one early. A restart forgets them: a token
replayed after a restart stores the same verified bytes again, nothing more.
"""

from __future__ import annotations

import threading
import time

MAX_REMEMBERED = 200_000


class UsedGrants:
    def __init__(self, limit: int = MAX_REMEMBERED) -> None:
        self._limit = limit
        self._used: dict[str, int] = {}  # token MAC -> its expiry (unix seconds)
        self._lock = threading.Lock()

    def claim(self, mac: str, expires: int) -> bool:
        """Take the token for one write: False when it was taken before, or when the node
        remembers too many live tokens to take one more."""
        with self._lock:
            if mac in self._used:
                return False
            if len(self._used) >= self._limit:
                now = time.time()
                self._used = {m: e for m, e in self._used.items() if e >= now}
                if len(self._used) >= self._limit:
                    return False
            self._used[mac] = expires
            return True

    def give_back(self, mac: str) -> None:
        """The write under this token failed: it may be tried again."""
        with self._lock:
            self._used.pop(mac, None)
