"""Jobs that wait for jobs (`after JOB[:any]`).

A job whose parents have not all ended is `waiting` (`Job.waiting`: parent ->
whether it runs however the parent ends); `Core.children` maps a parent to the
jobs waiting for it, so that a parent's end looks only at its own children.  A
parent that ends other than done holds each child that did not say `:any`; the
child's `why` names it.  Parents are checked at submit (grid.py: older jobs of
the same user or shared), so no cycle can be written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import queues
from .model import DONE, FAILED, KILLED, RUNNING, Job

if TYPE_CHECKING:
    from .core import Core


def parent_failed(parent: Job, anyway: bool) -> bool:
    """Whether a finished parent keeps its child from running (it did not end
    done, and the child did not say `JOB:any`)."""
    return not anyway and parent.state_name != "done"


def wait_for_parents(core: "Core", job: Job) -> None:
    """A new job waits for its parents that have not ended, and is held if one
    that has ended failed."""
    for parent, anyway in job.spec.after:
        if parent in core.jobs and not core.jobs[parent].finished:
            job.waiting[parent] = anyway
            core.children.setdefault(parent, []).append(job.id)
        elif parent in core.jobs and parent_failed(core.jobs[parent], anyway):
            job.held = True


def parent_ended(core: "Core", jid: int) -> list[tuple[Job, bool]]:
    """Job `jid` has finished: the jobs that waited for it, each with whether
    it is now held (the parent failed); those waiting for no other job are
    queued."""
    out = []
    parent = core.jobs[jid]
    for child_id in core.children.pop(jid, []):
        child = core.jobs.get(child_id)
        if child is None or jid not in child.waiting:
            continue
        anyway = child.waiting.pop(jid)
        held = parent_failed(parent, anyway) and not child.finished
        if held and not child.held:
            core.hold(child_id)
        queues.enqueue(core, child)
        out.append((child, held))
    return out


def blocking_parents(core: "Core", job: Job) -> list[tuple[int, str]]:
    """The parents that keep a held job from running: (id, how it ended)."""
    out = []
    for parent_id, anyway in job.spec.after:
        parent = core.jobs.get(parent_id)
        if parent is not None and parent.finished and parent_failed(parent, anyway):
            out.append((parent_id, parent.state_name))
    return out


def wait_again(core: "Core", jid: int) -> list[Job]:
    """A retried job runs again: the jobs that named it in `after` and have not
    begun wait for it again (one its failure held stays held till released, then
    waits).  A pass over the jobs, for a verb, never for a dispatch."""
    again: list[Job] = []
    if core.jobs[jid].finished:              # nothing was retried
        return again
    for child in core.jobs.values():
        anyway = dict(child.spec.after).get(jid)
        if anyway is None or jid in child.waiting or \
                any(child.counts[state] for state in (RUNNING, DONE, FAILED, KILLED)):
            continue                        # it has begun: it does not wait again
        child.waiting[jid] = anyway
        core.children.setdefault(jid, []).append(child.id)
        again.append(child)
    return again
