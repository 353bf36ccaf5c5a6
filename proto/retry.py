"""Retry policy of the client library: which failures are worth another try, and how long to wait.

Only idempotent calls are retried (a read, a listing, a stat: doing them twice is harmless); a
retried upload or delete could act twice. Backoff is exponential with jitter so that many
mounts reconnecting after a gateway restart do not hammer it in lockstep, and the number of
tries is bounded so a shell command fails with EIO instead of hanging.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import grpc

RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with "equal jitter" (half fixed, half random)."""

    attempts: int = 3
    initial_backoff: float = 0.25
    max_backoff: float = 4.0
    multiplier: float = 2.0

    def delay(self, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number`` (0 = the first retry)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier**retry_number)
        return base / 2 + random.uniform(0, base / 2)

    def should_retry(self, code: grpc.StatusCode | None, tries_done: int) -> bool:
        return code in RETRYABLE_CODES and tries_done < self.attempts

    def sleep(self, retry_number: int) -> None:
        time.sleep(self.delay(retry_number))


NO_RETRY = RetryPolicy(attempts=1)


# INTERNAL statuses gRPC itself makes up when an HTTP/2 stream breaks on the way (a proxy
# such as HAProxy closing a stream early, a reset): the connection failed, not the server.
_TRANSPORT_BREAKS = ("END_STREAM", "RST_STREAM", "Stream removed", "GOAWAY",
                     "Received http2 header with status")


def status_code(exc: grpc.RpcError) -> grpc.StatusCode | None:
    """The status code of a failed call (None for an RpcError that carries none); a
    stream broken in transport counts as UNAVAILABLE, whatever gRPC called it."""
    code = getattr(exc, "code", None)
    if not callable(code):
        return None
    try:
        found = code()
    except Exception:  # noqa: BLE001 - a broken error object must not mask the failure
        return None
    if found == grpc.StatusCode.INTERNAL:
        details = getattr(exc, "details", None)
        text = str(details() if callable(details) else "")
        if any(mark in text for mark in _TRANSPORT_BREAKS):
            return grpc.StatusCode.UNAVAILABLE
    return found
