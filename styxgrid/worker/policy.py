"""The worker's decisions as arithmetic, with no I/O: how many tasks to lease,
when reports go, which reports fit one write, and whether the owner is busy
(whether the owner allows a program is in allowlist.py).  The agent feeds them what it observes."""

from __future__ import annotations

import math
from typing import Sequence


def lease_for(slots: int, mean_run: float, lease_ahead: float, ahead_per_slot: int) -> int:
    """Tasks to hold at once: the slots, plus about `lease_ahead` seconds of work
    when tasks are short, rounded down to a power of two so that the lease changes
    seldom (none once a task takes longer than that), and at most `ahead_per_slot`
    tasks per slot."""
    ahead = min(ahead_per_slot * slots, int(lease_ahead * slots / max(mean_run, 1e-6)))
    return slots + (1 << (ahead.bit_length() - 1) if ahead else 0)


def mean_run(known: float | None, seconds: float) -> float:
    """A job's run time per task, averaged so that one odd task moves it little."""
    return seconds if known is None else 0.9 * known + 0.1 * seconds


def report_due(pending: int, queued: int, lease: int, slots: int, lease_changed: bool) -> bool:
    """Reports go in batches of about half the tasks leased ahead, and at once when
    no task waits here (the last ones of a job, or a long task's); a new lease goes
    at once."""
    if lease_changed:
        return True
    batch = max(1, (lease - slots) // 2)
    return pending > 0 and (pending >= batch or queued == 0)


def batch(sizes: Sequence[int], room: int, most: int) -> int:
    """How many of the pending reports (of these sizes, oldest first) go in one
    write of `room` bytes: at least one, at most `most`."""
    total = 0
    for n, size in enumerate(sizes[:most]):
        if n and total + size > room:
            return n
        total += size
    return min(len(sizes), most)


def own_load(previous: float, running: int, interval: float, window: float) -> float:
    """Our running tasks averaged as the kernel averages its load over `window`
    seconds, sampled every `interval`."""
    decay = math.exp(-interval / window)
    return previous * decay + running * (1 - decay)


def owner_busy(load: float, own: float, max_load: float | None) -> bool:
    """The owner's say: with a --max-load, whether the load that is not from our
    own tasks is at or above it."""
    return max_load is not None and load - own >= max_load
