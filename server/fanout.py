"""In-process publish/subscribe: one bounded queue per subscriber.

Used by the event monitor stream and the mounts' change feed. A slow subscriber loses its
oldest items rather than slowing the publisher down (a monitor or a mount that lags is told
through ``dropped`` and can resynchronise).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Subscription(Generic[T]):
    def __init__(self, owner: Fanout[T], accept: Callable[[T], bool], maxsize: int) -> None:
        self._owner = owner
        self.accept = accept
        self.queue: queue.Queue[T] = queue.Queue(maxsize=maxsize)
        self.dropped = 0
        # Set by ``Fanout.end_all``: the subscriber missed items it cannot be told of, and
        # should end its stream (its client re-subscribes and resynchronises).
        self.ended = False

    def offer(self, item: T) -> None:
        while True:
            try:
                self.queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self.queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def get(self, timeout: float) -> T | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._owner.unsubscribe(self)


class Fanout(Generic[T]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[Subscription[T]] = []

    def subscribe(self, accept: Callable[[T], bool] = lambda _: True, maxsize: int = 10000
                  ) -> Subscription[T]:
        sub = Subscription(self, accept, maxsize)
        with self._lock:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription[T]) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def end_all(self) -> None:
        """Unsubscribe everyone, marking each subscription ``ended``."""
        with self._lock:
            subs, self._subs = self._subs, []
        for sub in subs:
            sub.ended = True

    def publish(self, item: T) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            if sub.accept(item):
                sub.offer(item)

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subs)
