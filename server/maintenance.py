"""The gateway's background duties: node liveness aside, repair and garbage collection.

One thread runs both on their own intervals, but only on the gateway that holds the
maintenance leadership (see leader.py), so several gateways on one database never repair
or collect the same chunk twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from .config import Settings
from .garbage import GarbageCollector
from .leader import Leadership
from .metrics import GatewayMetrics
from .repair import Repairer

log = logging.getLogger(__name__)

T = TypeVar("T")
REPAIR, GC = "repair", "gc"  # the tasks, as the failure metric's label names them
TASK_NAMES = {REPAIR: "repair", GC: "garbage collection"}


class Maintenance:
    def __init__(self, settings: Settings, repairer: Repairer, collector: GarbageCollector,
                 leadership: Leadership, metrics: GatewayMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics  # progress counters, when the metrics endpoint is on
        self.repairer = repairer
        self.collector = collector
        self.leadership = leadership
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="maintenance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.leadership.release()

    def _run(self) -> None:
        next_repair = time.monotonic() + self.settings.repair_interval_s
        next_gc = time.monotonic() + self.settings.gc_interval_s
        while not self._stop.wait(0.5):
            now = time.monotonic()
            if now < next_repair and now < next_gc:
                continue
            leader = self.leadership.is_leader()
            if self.metrics is not None:
                self.metrics.maintenance_leader.set(1 if leader else 0)
            if not leader:
                next_repair = now + self.settings.repair_interval_s
                next_gc = now + self.settings.gc_interval_s
                continue
            if now >= next_repair:
                report = self._guarded(REPAIR, self.repairer.run_once)
                if report is not None and self.metrics is not None:
                    self.metrics.record_repair(report)
                next_repair = time.monotonic() + self.settings.repair_interval_s
            if now >= next_gc:
                collected = self._guarded(GC, self.collector.run_once)
                if collected is not None and self.metrics is not None:
                    self.metrics.record_gc(collected)
                next_gc = time.monotonic() + self.settings.gc_interval_s

    def _guarded(self, task: str, action: Callable[[], T]) -> T | None:
        """The pass's report, or None when it failed (logged; the next pass tries again)."""
        try:
            return action()
        except Exception:  # noqa: BLE001 - the next pass tries again
            log.exception("%s pass failed", TASK_NAMES[task])
            if self.metrics is not None:
                self.metrics.record_failure(task)
            return None
