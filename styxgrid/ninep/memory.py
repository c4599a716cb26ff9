"""Giving memory back to the system after a crowd of connections has gone.

A server that held a hundred thousand waiting reads frees every one of them when
they are answered or their connections close, but the C allocator keeps the pages
for itself: RSS stays at the peak.  The framework counts the records it frees
(waiting reads, fids of closed connections); when that passes `threshold`,
`give_back` asks glibc to return its free pages (malloc_trim), at most once a
`period`.  It works fully only with the system allocator
(PYTHONMALLOC=malloc, which `styxgrid scheduler` and `styxgrid up` set): Python's
own allocator keeps a whole 1 MiB arena for a single live object in it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import time
from typing import Callable

import trio

log = logging.getLogger("styxgrid.ninep")

THRESHOLD = 4096        # records (waiting reads, fids) released before a trim is worth it
PERIOD = 5.0            # seconds between two trims at most

_released = 0


def released(records: int) -> None:
    """A connection closed and freed `records` records."""
    global _released
    _released += records


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None       # not glibc: nothing to ask


def trim() -> None:
    """Return free pages now, and say how much came back."""
    global _released
    _released = 0
    call = _malloc_trim()
    if call is None:
        return
    before, start = _rss(), time.perf_counter()
    call(0)
    log.info("returned %.1f MB of freed memory to the system in %.1f ms",
             (before - _rss()) / 1e6, (time.perf_counter() - start) * 1e3)


def _rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def give_back(threshold: int = THRESHOLD, period: float = PERIOD) -> None:
    """Run forever: trim when enough was released since the last trim."""
    while True:
        await trio.sleep(period)
        if _released >= threshold:
            trim()
