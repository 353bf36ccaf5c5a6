"""This mount's own changes, so their echo on the change feed does not drop its caches.

Against a gateway that keeps a mount's changes from its own WatchChanges stream (its hello
says ``echo_free``) there is nothing to do. Against an older one, every changing call says
which entry ids (or ``parent id/name`` keys, for creations) it will touch, and the echo of
each is consumed once within ``OWN_EVENT_WINDOW`` seconds instead of invalidating anything.
"""

from __future__ import annotations

import time

OWN_EVENT_WINDOW = 15.0


def name_key(parent_id: str, name: str) -> str:
    """The key of a creation by parent + name (its entry id is not known beforehand)."""
    return f"{parent_id}/{name}"


class OwnChanges:
    """Counts of echoes expected per key, each with the time it stops being expected."""

    def __init__(self) -> None:
        self.echo_free = False  # the gateway never echoes our changes back (hello)
        self._expected: dict[str, tuple[int, float]] = {}

    def expect(self, *keys: str) -> None:
        if self.echo_free:
            return  # the gateway sends our own changes to no one but other mounts
        until = time.monotonic() + OWN_EVENT_WINDOW
        for key in keys:
            count, _ = self._expected.get(key, (0, 0.0))
            self._expected[key] = (count + 1, until)

    def unexpect(self, *keys: str) -> None:
        """The change did not happen after all (the call failed)."""
        for key in keys:
            count, until = self._expected.get(key, (0, 0.0))
            if count <= 1:
                self._expected.pop(key, None)
            else:
                self._expected[key] = (count - 1, until)

    def consume(self, key: str) -> bool:
        """Is an event naming ``key`` the echo of our own change (counted once)?"""
        hit = self._expected.get(key)
        if hit is None:
            return False
        count, until = hit
        if until < time.monotonic():
            del self._expected[key]
            return False
        if count <= 1:
            del self._expected[key]
        else:
            self._expected[key] = (count - 1, until)
        return True
