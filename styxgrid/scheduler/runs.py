"""Runs that take too long: copies of slow tasks, and the end of runaway ones.

A desktop grid's nodes are slower, busier and less reliable than a cluster's,
and one slow node must not hold a whole job back (the Inferno Grid reallocates
slow-running tasks until the job is finished).  Once a job has no queued task
left, a task of it that has run longer than `speculate` times the median run
of the job's finished tasks (after MIN_DONE of them, and at least MIN_AGE
seconds) gets a copy on another node with a free slot.  The first run to finish
well decides the task; the others are killed and their output dropped (a run
that fails while another goes on just ends).  Unlike TaskVine's fast abort,
which kills the slow run and queues the task again, the first run goes on: it
may be nearly done.

No scan covers every job or worker: a job enters its group's `tails` when its
last queued task is handed out, and a job's running tasks are kept in the order
they started, so a look for slow ones stops at the first young one.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

from .model import RUNNING, Assignment, Job, Worker

if TYPE_CHECKING:
    from .core import Core

MIN_DONE = 3          # finished tasks of a job before its median run is believed
MIN_AGE = 1.0         # seconds a task runs before it may be called slow
COPIES = 2            # runs of one task at once, the first included


def median_run(job: Job) -> float | None:
    """The median run of the job's last finished tasks (up to 1001), once there
    are MIN_DONE; worked out again only as more finish."""
    done = len(job.runtimes)
    if done < MIN_DONE:
        return None
    seen, value = job.median
    if done != seen:
        value = statistics.median(job.runtimes)
        job.median = (done, value)
    return value


def slow_task(job: Job, worker: str, now: float) -> int | None:
    """The oldest running task of the job slow enough for a copy that `worker`
    does not run already and that has fewer than COPIES runs."""
    median = median_run(job)
    if median is None:
        return None
    limit = max(MIN_AGE, job.spec.speculate * median)
    for index, began in job.started.items():
        if now - began <= limit:
            return None                       # the rest started later still
        copies = job.copies.get(index, [])
        if len(copies) + 1 < COPIES and worker not in copies \
                and job.running.get(index) != worker:
            return index
    return None


def copy_for(core: "Core", worker: Worker) -> Assignment | None:
    """A copy of a slow task for a worker with a free slot and nothing queued
    that it matches."""
    now = core.clock()
    for group in worker.groups:
        if not group.tails or not worker.fits(group.need):
            continue
        for jid in list(group.tails):
            job = core.jobs.get(jid)
            if job is None or not job.counts[RUNNING] or job.held:
                del group.tails[jid]
                continue
            if job.queued:
                continue                      # its queued tasks go first
            index = slow_task(job, worker.name, now)
            if index is not None:
                return core.start_copy(worker, job, index)
    return None


def copies(core: "Core") -> list[Assignment]:
    """Copies for the workers waiting with free slots, looked for now and then:
    a task becomes slow with no event to say so."""
    out = []
    for group in core.groups.values():
        if not group.tails:
            continue
        for name in list(group.idle):
            worker = core.workers[name]
            if worker.idle and (a := copy_for(core, worker)) is not None:
                out.append(a)
    return out


def overdue(core: "Core") -> list[tuple[Job, int]]:
    """Running tasks past their job's max_runtime (from when they were leased)."""
    now = core.clock()
    out = []
    for jid in list(core.timed):
        job = core.jobs.get(jid)
        if job is None or job.finished:
            del core.timed[jid]
            continue
        for index, began in job.started.items():
            if now - began <= job.spec.max_runtime:
                break
            out.append((job, index))
    return out
