"""Why a job's queued tasks are not running, in a sentence (`jobs/N/why`), like
condor_q -better-analyze."""

from __future__ import annotations

from ..resources import Need, mib
from . import dependencies
from .core import Core
from .model import HELD, RUNNING, Worker, expression, split_clauses


def explain(core: Core, jid: int) -> str:
    """Why the job's queued tasks are not running, like condor_q -better-analyze."""
    job = core.job(jid)
    if job.finished:
        note = f": {job.note}" if job.note else ""
        return f"job {jid} is finished ({job.state_name}){note}\n"
    if job.held:
        parents = dependencies.blocking_parents(core, job)
        if parents:
            said = ", ".join(f"job {p} {how}" for p, how in parents)
            return (f"job {jid} is held: its parent {said} (retry the parent and "
                    f"release this job to run them again, or release it alone to run "
                    f"it anyway)\n")
        return f"job {jid} is held: 'release' it to let it run\n"
    if job.counts[HELD] and not job.queued:
        index, reason = next((i, r) for i, r in sorted(job.reasons.items())
                             if job.state[i] == HELD)
        return f"job {jid}: {job.counts[HELD]} tasks are held, task {index}: {reason}\n"
    if job.waiting:
        said = " ".join(str(p) for p in job.waiting)
        return f"job {jid} is waiting for job{'s' if len(job.waiting) > 1 else ''} {said} to end\n"
    if not job.queued:
        copies = sum(len(c) for c in job.copies.values())
        extra = f" ({copies} of them copied to another node: slow)" if copies else ""
        return f"job {jid} has no queued tasks: {job.counts[RUNNING]} running{extra}\n"
    workers = list(core.workers.values())
    if not workers:
        return f"job {jid}: no workers are connected\n"
    group = core.group_of(job)
    matching = [w for w in workers if group.matches(w)]
    if not matching:
        lines = [f"job {jid}: no node matches its requirements ({len(workers)} connected)"]
        lines += too_big(job.spec.need, workers)
        refusing = sum(1 for w in workers if not w.runs(group.program))
        if refusing:
            lines.append(f"  program {job.spec.cmd!r} is not on the allow list of {refusing} "
                         f"of {len(workers)} nodes (their owners' --allow)")
        clauses = split_clauses(job.spec.requirements) if job.spec.requirements else []
        for clause in clauses:
            expr = expression(clause)
            fails = sum(1 for w in workers if w.eval(expr) is not True)
            lines.append(f"  clause {clause!r} fails on {fails} of {len(workers)} nodes")
        return "\n".join(lines) + "\n"
    usable = [w for w in matching if not w.draining]
    if not usable:
        return f"job {jid}: all {len(matching)} matching nodes are draining\n"
    if all(w.lease == 0 or w.owner != "away" for w in usable):
        back = sum(1 for w in usable if w.owner != "away")
        said = f" ({back} with their owners back: tasks suspended or vacated)" if back else ""
        return (f"job {jid}: all {len(usable)} matching nodes are paused{said}: their owners' "
                f"machines are busy; {job.queued} tasks wait\n")
    if not any(w.idle and w.fits(group.need) for w in usable):
        busy = sum(len(w.running) for w in usable)
        if busy and any(w.idle for w in usable):
            return (f"job {jid}: no matching node has room for a task asking "
                    f"{job.spec.need.words()} now ({busy} tasks running on "
                    f"{len(usable)} nodes); {job.queued} tasks wait\n")
        if not busy:
            return (f"job {jid}: {len(usable)} matching nodes are connected but none is "
                    f"asking for work now; {job.queued} tasks wait for their next read\n")
        return (f"job {jid}: all {len(usable)} matching nodes are busy "
                f"({busy} tasks running); {job.queued} tasks wait their turn\n")
    return f"job {jid}: {job.queued} tasks are being dispatched\n"


def too_big(need: Need, workers: list[Worker]) -> list[str]:
    """A line for each request no connected node can meet, with the most any
    node offers ("needs 8 GiB memory; the largest node offers 4 GiB")."""
    lines = []
    for i, what in enumerate(("cpus", "memory", "disk", "GPUs")):
        most = max(w.total[i] for w in workers)
        if need[i] > most:
            shown = (mib(need[i]), mib(most)) if what in ("memory", "disk") else \
                (str(need[i]), str(most))
            lines.append(f"  needs {shown[0]} {what}; the largest node offers {shown[1]}")
    return lines
