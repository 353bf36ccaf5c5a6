"""Who may hold a gateway worker for long, and for how long it may sit idle.

The gateway serves gRPC with a fixed pool of threads (``GRPC_MAX_WORKERS``) and every open
stream holds one of them for its whole life. Without bounds, 64 idle UploadFile streams
that never send a byte take every worker and the gateway stops answering SendOTP and
health. Two parts keep that from happening:

- ``StreamAdmission`` counts long-lived calls (uploads, downloads, change feeds, event
  streams): per account, per kind, and in total, where the total leaves a reserve of workers
  for short calls. A caller whose session is not known yet (an upload that sends its session
  in its first message, as the seed's clients do) takes one of a few pre-authentication slots
  and moves to its account's count once its first message authenticates it.
- ``StallWatchdog`` cancels a call that waits too long for its client's next message: the
  first message within a few seconds, then an idle limit between messages; and a stream
  that holds more than a worker (the metadata backup's read transaction) when its client
  stops taking messages. One thread watches every call, so a guarded call costs a dict
  entry, not a thread.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cloudgrpc_proto.errors import RateLimited

log = logging.getLogger(__name__)

UPLOAD = "upload"
STREAM = "stream"  # downloads, change feeds, event streams, metadata backups
PREAUTH = "preauth"


@dataclass(frozen=True)
class AdmissionLimits:
    total: int            # long-lived calls at once, all kinds (workers minus the reserve)
    preauth: int          # uploads whose session is not known yet
    uploads_per_user: int
    streams_per_user: int


@dataclass
class Ticket:
    """One admitted call's place; ``release`` is idempotent."""

    admission: StreamAdmission
    kind: str
    owner: str
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.admission._release(self.kind, self.owner)

    def become(self, kind: str, owner: str) -> None:
        """Move this place to ``owner``'s count (once its session is known)."""
        self.admission._move(self, kind, owner)


@dataclass
class StreamAdmission:
    limits: AdmissionLimits
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _total: int = 0
    _counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def admit(self, kind: str, owner: str) -> Ticket:
        """A place for a long-lived call of ``kind`` by ``owner`` (an account id, or ""
        for pre-authentication), or ``RateLimited`` (RESOURCE_EXHAUSTED) saying why not."""
        with self._lock:
            if self._total >= self.limits.total:
                raise RateLimited(
                    f"the gateway is serving {self.limits.total} long-lived calls, its "
                    "limit: try again shortly")
            self._check_owner(kind, owner)
            self._total += 1
            self._counts[(kind, owner)] = self._counts.get((kind, owner), 0) + 1
        return Ticket(self, kind, owner)

    def in_use(self, kind: str, owner: str = "") -> int:
        with self._lock:
            if owner:
                return self._counts.get((kind, owner), 0)
            return sum(n for (k, _), n in self._counts.items() if k == kind)

    def _check_owner(self, kind: str, owner: str) -> None:
        held = self._counts.get((kind, owner), 0)
        if kind == PREAUTH and held >= self.limits.preauth:
            raise RateLimited(
                f"too many uploads waiting for their first message ({self.limits.preauth}): "
                "try again shortly, or send the session in the call's metadata "
                "(x-cloudgrpc-session)")
        if kind == UPLOAD and held >= self.limits.uploads_per_user:
            raise RateLimited(
                f"too many concurrent uploads for this account: at most "
                f"{self.limits.uploads_per_user} at once; wait for one to finish")
        if kind == STREAM and held >= self.limits.streams_per_user:
            raise RateLimited(
                f"too many open streams for this account (downloads, change feeds, event "
                f"streams, backups): at most {self.limits.streams_per_user} at once")

    def _release(self, kind: str, owner: str) -> None:
        with self._lock:
            self._total -= 1
            left = self._counts.get((kind, owner), 0) - 1
            if left > 0:
                self._counts[(kind, owner)] = left
            else:
                self._counts.pop((kind, owner), None)

    def _move(self, ticket: Ticket, kind: str, owner: str) -> None:
        with self._lock:
            self._check_owner(kind, owner)
            left = self._counts.get((ticket.kind, ticket.owner), 0) - 1
            if left > 0:
                self._counts[(ticket.kind, ticket.owner)] = left
            else:
                self._counts.pop((ticket.kind, ticket.owner), None)
            self._counts[(kind, owner)] = self._counts.get((kind, owner), 0) + 1
            ticket.kind, ticket.owner = kind, owner


@dataclass
class _Watch:
    deadline: float
    cancel: Callable[[], None]
    fired: bool = False


class StallWatchdog:
    """Cancels calls whose client does not send its next message in time.

    Its one thread runs only while some call is watched, so an idle gateway (or a test that
    builds many) keeps no thread for it.
    """

    def __init__(self, period_s: float = 0.25) -> None:
        self._period_s = period_s
        self._lock = threading.Lock()
        self._watches: dict[int, _Watch] = {}
        self._ids = itertools.count()
        self._running = False

    def arm(self, within_s: float, cancel: Callable[[], None]) -> int:
        """Call ``cancel`` unless ``disarm`` comes within ``within_s`` seconds."""
        key = next(self._ids)
        with self._lock:
            self._watches[key] = _Watch(time.monotonic() + within_s, cancel)
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="stall-watchdog", daemon=True).start()
        return key

    def disarm(self, key: int) -> bool:
        """Stop watching; True when the watch had already fired (the call is cancelled)."""
        with self._lock:
            watch = self._watches.pop(key, None)
        return watch is not None and watch.fired

    def _run(self) -> None:
        while True:
            time.sleep(self._period_s)
            now = time.monotonic()
            with self._lock:
                if not self._watches:
                    self._running = False
                    return
                due = [w for w in self._watches.values() if not w.fired and w.deadline <= now]
                for watch in due:
                    watch.fired = True
            for watch in due:
                try:
                    watch.cancel()
                except Exception:  # noqa: BLE001 - one call's cancel must not stop the rest
                    log.exception("cancelling a stalled call failed")


class AddressSlots:
    """How many calls from one client address may wait for their request message at once.

    The sync server reads a unary call's request on a worker, so a client that opens calls
    and never sends their message (a stream stub aimed at a unary method does just that)
    would hold a worker per call until the deadline. A legitimate request arrives with its
    call, so at most a few wait at any moment; an address past ``per_address`` is refused.
    """

    def __init__(self, per_address: int) -> None:
        self.per_address = per_address
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}

    def take(self, address: str) -> None:
        with self._lock:
            held = self._held.get(address, 0)
            if held >= self.per_address:
                raise RateLimited(
                    f"too many calls from {address} waiting to send their request "
                    f"(at most {self.per_address}): try again shortly")
            self._held[address] = held + 1

    def give_back(self, address: str) -> None:
        with self._lock:
            left = self._held.get(address, 0) - 1
            if left > 0:
                self._held[address] = left
            else:
                self._held.pop(address, None)
