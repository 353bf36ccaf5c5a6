"""Per-client-address rate limits on the sign-in calls (SendOTP, VerifyOTP).

The per-email limits live in the database (every gateway sees the same count); these are a
second, cheaper fence against one address trying many emails. They are an in-process
sliding window, so each gateway counts on its own: with N gateways behind a balancer an
address gets up to N times the limit. That is acceptable for a speed bump whose real job
is done by the per-email limit.
"""

from __future__ import annotations

import collections
import math
import threading
import time

from cloudgrpc_proto.errors import RateLimited

# Addresses remembered at most; beyond it the quietest are forgotten (memory stays bounded).
MAX_ADDRESSES = 20_000


def peer_address(peer: str) -> str:
    """The client address of a gRPC ``context.peer()`` string, without the port.

    ``ipv4:127.0.0.1:5123`` -> ``127.0.0.1``; ``ipv6:[::1]:5123`` -> ``::1``;
    ``unix:/path`` -> ``unix:/path``.
    """
    peer = peer or ""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        host = rest.rsplit(":", 1)[0] if rest.startswith("[") else rest
        return host.strip("[]")
    return peer[:200] or "unknown"


def rate_limited(message: str, wait_s: float) -> RateLimited:
    """A RateLimited error that also carries how long to wait (for ``retry-after``)."""
    error = RateLimited(message)
    error.retry_after_s = max(1, math.ceil(wait_s))  # type: ignore[attr-defined]
    return error


def minutes(wait_s: float) -> str:
    n = max(1, math.ceil(wait_s / 60))
    return f"{n} minute{'s' if n != 1 else ''}"


class AddressLimiter:
    """At most ``limit`` calls per ``window_s`` from one client address (0 = no limit)."""

    def __init__(self, what: str, limit: int, window_s: float = 3600.0) -> None:
        self.what = what
        self.limit = limit
        self.window_s = window_s
        self._calls: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, address: str) -> None:
        """Count one call from ``address``; raise RateLimited when it is one too many."""
        if self.limit <= 0:
            return
        now = time.monotonic()
        with self._lock:
            calls = self._calls.get(address)
            if calls is None:
                if len(self._calls) >= MAX_ADDRESSES:
                    self._forget_quiet(now)
                calls = self._calls[address] = collections.deque()
            while calls and calls[0] <= now - self.window_s:
                calls.popleft()
            if len(calls) >= self.limit:
                wait = calls[0] + self.window_s - now
                raise rate_limited(
                    f"too many {self.what} from your address: try again in {minutes(wait)}",
                    wait)
            calls.append(now)

    def _forget_quiet(self, now: float) -> None:
        for address in [a for a, c in self._calls.items()
                        if not c or c[-1] <= now - self.window_s]:
            del self._calls[address]
        if len(self._calls) >= MAX_ADDRESSES:  # still full: drop the oldest half
            by_age = sorted(self._calls, key=lambda a: self._calls[a][-1])
            for address in by_age[: len(by_age) // 2]:
                del self._calls[address]
