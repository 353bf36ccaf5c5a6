"""glibc malloc settings for processes that pass multi-MiB chunks around.

Each chunk read or received is a fresh 4 MiB buffer. With glibc's defaults such a buffer
is often mapped for the call and unmapped (or trimmed off the heap) when freed, so every
chunk costs ~1,000 page faults and zeroing 4 MiB in the kernel: measured on a cold
256 MiB read, a node faulted in every byte it served (65k faults, half its CPU time in
the kernel). Serving such sizes from the heap and keeping a little freed memory around
for the next chunk removes that; with fewer arenas the mount's worker threads reuse each
other's freed buffers too. No effect (and no error) where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

MiB = 1024 * 1024
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def reuse_chunk_buffers(arenas: int = 0, mmap_threshold: int = 32 * MiB,
                        trim_threshold: int = 64 * MiB) -> bool:
    """Allocate buffers below ``mmap_threshold`` from the heap and keep up to
    ``trim_threshold`` of freed heap mapped; ``arenas`` > 0 caps malloc's arenas.

    Call early in ``main`` (arenas already made are kept). True when applied.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold))
    ok = bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold)) and ok
    if arenas > 0:
        ok = bool(mallopt(_M_ARENA_MAX, arenas)) and ok
    if not ok:
        log.debug("malloc settings not applied")
    return ok
