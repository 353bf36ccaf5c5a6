"""The live event monitor: recent history first, then events as they happen.

It survives a gateway restart or a dropped connection: it reconnects with a backoff, asks
for recent history again to fill the gap and shows each event once (by event id). Used in
the foreground by ``--monitor`` and in a background thread by the menu (options 5 and 6).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable

from cloudgrpc_proto import cloud_storage_pb2 as pb
from cloudgrpc_proto.client import CloudClient, ServerStream
from cloudgrpc_proto.errors import CloudError, DeadlineExceeded, Unavailable

RESYNC_HISTORY = 200  # events asked for again after a reconnect, to fill the gap
SEEN_LIMIT = 10_000


class EventMonitor:
    def __init__(self, client: CloudClient, admin_key: str,
                 show: Callable[[pb.SystemEvent], None], *, history: int = 20,
                 event_types: Iterable[str] = (),
                 notice: Callable[[str], None] = lambda _msg: None) -> None:
        self.client = client
        self.admin_key = admin_key
        self.show = show
        self.history = history
        self.event_types = [t for t in event_types if t]
        self.notice = notice
        self.shown = 0
        self.error: CloudError | None = None
        self._seen: set[int] = set()
        self._order: deque[int] = deque()
        self._max_id = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._stream: ServerStream[pb.SystemEvent] | None = None
        self._thread: threading.Thread | None = None

    # --- foreground ------------------------------------------------------------------

    def run(self, count: int = 0) -> None:
        """Show events until ``count`` were shown (0 = forever) or ``stop()`` is called.

        Raises the typed error if the very first connection fails (wrong key, no gateway);
        later connection losses are retried.
        """
        backoff = 0.5
        first = True
        while not self._stop.is_set():
            if first:
                history = self.history if self.history > 0 else -1
            else:
                history = RESYNC_HISTORY
            resync_below = 0 if first else self._max_id
            stream = self.client.stream_events(self.admin_key, history=history,
                                               event_types=self.event_types)
            with self._lock:
                self._stream = stream
            try:
                if self._stop.is_set():
                    return
                for event in stream:
                    backoff = 0.5
                    if not self._take(event, resync_below):
                        continue
                    self.show(event)
                    self.shown += 1
                    if count and self.shown >= count:
                        return
            except (Unavailable, DeadlineExceeded) as exc:
                if first:
                    raise
                self.notice(f"gateway unreachable ({exc.message}); retrying")
            finally:
                stream.cancel()
                with self._lock:
                    self._stream = None
            if self._stop.is_set():
                return
            if first:
                self.notice("connection to the gateway lost; reconnecting")
            first = False
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _take(self, event: pb.SystemEvent, resync_below: int) -> bool:
        """Whether to show ``event``: not shown yet, and not older history after a gap."""
        eid = event.event_id
        if not eid:
            return True
        if eid in self._seen or eid <= resync_below:
            return False
        self._seen.add(eid)
        self._order.append(eid)
        if len(self._order) > SEEN_LIMIT:
            self._seen.discard(self._order.popleft())
        self._max_id = max(self._max_id, eid)
        return True

    # --- background (the menu) ---------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self.error = None

        def body() -> None:
            try:
                self.run()
            except CloudError as exc:
                self.error = exc
                self.notice(f"event monitoring stopped: {exc.message}")

        self._thread = threading.Thread(target=body, name="event-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self._stream is not None:
                self._stream.cancel()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
