"""Background re-verification of every stored chunk, at a bounded rate.

Disks rot silently; a chunk is only known good when it has just been read and hashed. The
scrubber walks the store so that each chunk is verified at least once per
``SCRUB_INTERVAL_S``, never faster than ``SCRUB_RATE_MBPS`` so user traffic keeps the
disk. A chunk that no longer matches its name is moved to quarantine and reported to the
gateway with the next heartbeat, which then copies a good replica back into place.
"""

from __future__ import annotations

import logging
import threading
import time

from .chunk_store import ChunkStore

log = logging.getLogger(__name__)


class Scrubber:
    def __init__(self, store: ChunkStore, interval_s: float, rate_bytes_s: float) -> None:
        self.store = store
        self.interval_s = max(1.0, interval_s)
        self.rate_bytes_s = max(1.0, rate_bytes_s)
        self._reports: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.verified = 0
        self.corrupt = 0
        self.last_pass_at = 0.0  # unix time the last complete pass ended (0: none yet)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="scrubber", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def take_reports(self) -> list[str]:
        with self._lock:
            out = sorted(self._reports)
            self._reports.clear()
        return out

    def requeue(self, hashes: list[str]) -> None:
        with self._lock:
            self._reports.update(hashes)

    def scrub_once(self) -> int:
        """Verify every chunk once, pacing reads; returns how many were found corrupt."""
        chunks = [(e.sha256, e.stored_bytes) for e in self.store.iter_entries()]
        total = sum(size for _, size in chunks) or 1  # disk bytes: what the pace is about
        # Spread one pass over the interval, but never read faster than the rate cap.
        pace = max(total / self.interval_s, 1.0)
        pace = min(pace, self.rate_bytes_s)
        found = 0
        for sha, size in chunks:
            if self._stop.is_set():
                break
            started = time.monotonic()
            # Decoded (a compressed chunk) and hashed exactly as a read would.
            result = self.store.verify(sha)
            if not result.present:
                continue  # deleted meanwhile
            if not result.valid:
                found += 1
                self.corrupt += 1
                log.error("scrub: chunk %s is corrupt: quarantined", sha)
                if self.store.quarantine(sha):
                    with self._lock:
                        self._reports.add(sha)
            self.verified += 1
            wait = size / pace - (time.monotonic() - started)
            if wait > 0 and self._stop.wait(wait):
                break
        else:
            self.last_pass_at = time.time()
        return found

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.scrub_once()
            except Exception:  # noqa: BLE001 - keep scrubbing whatever one pass hit
                log.exception("scrub pass failed")
            rest = self.interval_s - (time.monotonic() - started)
            if self._stop.wait(max(rest, 1.0)):
                return
