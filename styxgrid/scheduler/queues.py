"""The queue order: which queued task of a group comes next (free functions
over the core, as runs.py and dependencies.py are).

A group's queue is a heap of jobs per user, keyed (-priority, job id); the best
task of a group is the best job of the user with the best effective priority
(shares.py), found by a pass over the users with queued jobs in that group
only.  Entries go stale rather than being removed (a job re-prioritized, held,
out of queued tasks or gone): they are dropped when they come to the top.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from .model import RUNNING, Group, Job, Worker

if TYPE_CHECKING:
    from .core import Core


def enqueue(core: Core, job: Job) -> None:
    """Make sure the job's group heap holds one live entry for it."""
    key = (-job.priority, job.id)
    group = core.group_of(job)
    if job.runnable and (job.heap_key != key or job.group is not group):
        job.heap_key, job.group = key, group
        queues = group.queues
        if job.owner not in queues:
            queues[job.owner] = []
            core.queued_users[job.owner] = core.queued_users.get(job.owner, 0) + 1
        heapq.heappush(queues[job.owner], key)


def live_top(core: Core, group: Group) -> tuple[float, int, int] | None:
    """The group's best job that can run now, as (the user's effective
    priority, -job priority, job id): of each user's best, the one of the
    user with the best effective priority."""
    best = None
    queued_users = core.queued_users
    now, alone = core.now, len(queued_users) <= 1     # alone: nobody to share with
    for user, heap in list(group.queues.items()):
        key = user_top(core, group, heap)
        if key is None:
            del group.queues[user]
            queued_users[user] -= 1
            if not queued_users[user]:
                del queued_users[user]
            continue
        entry = (0.0 if alone else core.shares.effective(user, now), *key)
        if best is None or entry < best:
            best = entry
    return best


def user_top(core: Core, group: Group, heap: list) -> tuple[int, int] | None:
    """A user's best heap entry whose job can run now; stale entries (job
    gone, held, out of queued tasks, re-prioritized) are dropped on the way."""
    while heap:
        key = heap[0]
        job = core.jobs.get(key[1])
        if job is None or job.heap_key != key or job.group is not group:
            heapq.heappop(heap)             # stale: the job is gone or elsewhere
            continue
        if job.runnable:
            return key
        heapq.heappop(heap)
        job.heap_key = None
        tail(group, job)
    return None


def tail(group: Group, job: Job) -> None:
    """A job out of queued tasks with some running: its slow ones may be copied."""
    if job.counts[RUNNING] and job.spec.speculate:
        group.tails[job.id] = None


def next_task(core: Core, group: Group) -> tuple[Job, int] | None:
    """The best queued task of `group`, taken off the queue."""
    while (key := live_top(core, group)) is not None:
        job = core.jobs[key[2]]
        index = job.pop_queued()
        if index is not None:
            return job, index
        heapq.heappop(group.queues[job.owner])
        job.heap_key = None
        tail(group, job)
    return None


def best_group(core: Core, worker: Worker) -> tuple[Group | None, Group | None]:
    """Of the groups this worker matches, the one whose best job comes first,
    and the one of those that fit in what it has free now."""
    best = fitting = None
    best_key = fitting_key = None
    for group in worker.groups:
        key = live_top(core, group)
        if key is None:
            continue
        if best_key is None or key < best_key:
            best, best_key = group, key
        if (fitting_key is None or key < fitting_key) and worker.fits(group.need):
            fitting, fitting_key = group, key
    return best, fitting
