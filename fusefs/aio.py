"""Running the blocking client library from trio without stalling the FUSE loop.

pyfuse3 serves every request on one trio thread; a gRPC call made there would freeze every
other request (a slow upload would hang ``ls``). Every gateway call therefore goes to a
worker thread, through one ``CapacityLimiter`` so a burst of requests cannot start an
unbounded number of threads or connections.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

import trio

T = TypeVar("T")

DEFAULT_THREADS = 16


class Blocking:
    """Runs blocking callables on worker threads, at most ``threads`` at once."""

    def __init__(self, threads: int = DEFAULT_THREADS) -> None:
        self.limiter = trio.CapacityLimiter(threads)

    async def __call__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        call = functools.partial(fn, *args, **kwargs) if kwargs else fn
        if kwargs:
            return await trio.to_thread.run_sync(call, limiter=self.limiter,
                                                 abandon_on_cancel=True)
        return await trio.to_thread.run_sync(call, *args, limiter=self.limiter,
                                             abandon_on_cancel=True)


def trio_deadline(monotonic_deadline: float | None) -> float:
    """A ``time.monotonic()`` deadline on trio's clock (which runs at a random offset)."""
    if monotonic_deadline is None:
        return float("inf")
    return trio.current_time() + (monotonic_deadline - time.monotonic())
