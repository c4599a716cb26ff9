"""The scheduler's pure core: jobs of tasks, workers' slots, matchmaking.

No I/O: the 9P tree and the store feed it events (submit, a slot asks for work, a
task ends, a worker is lost, a ctl verb) and act on what it returns; its clock
is given (the grid's trio clock).  Its records (jobs, groups, workers) are in
model.py; the queue order (which task of a group comes next, by users' fair
shares) in queues.py; copies of slow tasks and run-time limits in runs.py; jobs
that wait for jobs in dependencies.py; users' fair shares in shares.py.

A worker holds at most `lease` tasks at once (running, or leased and waiting their
turn on the worker; 0 while its owner's machine is busy: it is *paused*); while one
of its reads of /work waits it is *asking*.  Up to
its slots it takes any task it matches, best first.  Beyond its slots it takes only
tasks of the job it last reported a task of, and only as the answer to its own
read or report: a worker leases ahead only work it has just seen to be short
(it sets its lease by how long that job's tasks take), never an unknown job's.
"""

from __future__ import annotations

import dataclasses
import time
from array import array
from typing import Any, Callable, Protocol

from .. import allowlist
from ..describe import JobSpec
from ..resources import UNLIMITED, Need
from . import dependencies, queues, runs
from .shares import Shares
from .model import (DONE, FAILED, HELD, HOLD, KILL, KILLED, MAX_LOSSES, QUEUED, RELEASE,
                    RETRY, RUNNING, Assignment, CoreError, Group, Job, Worker, classad_of,
                    expression)


class CopyFiles(Protocol):
    """Where the output of a task's copies is kept apart (the spool)."""

    def promote(self, jid: int, index: int, copy: str) -> None: ...

    def discard(self, jid: int, index: int, copy: str) -> None: ...


class Core:
    """All jobs and workers of one scheduler."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 copy_files: CopyFiles | None = None, shares: Shares | None = None) -> None:
        self.jobs: dict[int, Job] = {}
        self.next_job = 1
        # (requirements, program, requests) -> its group
        self.groups: dict[tuple[str, allowlist.Program, Need], Group] = {}
        self.workers: dict[str, Worker] = {}
        self.clock = clock
        self.copy_files = copy_files
        self.timed: dict[int, None] = {}        # jobs with a max_runtime, till they finish
        self.handed: list[Assignment] = []      # take() gave these to other workers
        self.shares = shares or Shares()
        self.queued_users: dict[str, int] = {}  # user -> groups with a queue of theirs
        self.children: dict[int, list[int]] = {}   # job -> jobs waiting for it to end
                                                   # (dependencies.py)
        self.now = 0.0      # the shares' clock, read once per take or dispatch: one
                            # user's tasks compare alike in every group

    # ------------------------------------------------------------ jobs

    def new_job_id(self) -> int:
        """The one allocator of job ids: an id is never given twice, nor one a
        stored job has (loading moves it past them)."""
        jid = self.next_job
        self.next_job += 1
        return jid

    def submit(self, spec: JobSpec, owner: str, job_id: int | None = None,
               parents: bool = True) -> Job:
        """A new job (or a stored one, loaded); `parents`: whether the jobs of its
        `after` still decide whether it may run (False: they have ended and been
        taken into account)."""
        jid = job_id if job_id is not None else self.next_job
        n = spec.tasks
        job = Job(jid, spec, owner, spec.priority, bytearray(n), array("i", [-1]) * n,
                  [n, 0, 0, 0, 0, 0])
        self.group_of(job)                      # may fail (an expression): nothing is kept
        self.next_job = max(self.next_job, jid + 1)
        self.jobs[jid] = job
        if spec.max_runtime:
            self.timed[jid] = None
        if parents:
            dependencies.wait_for_parents(self, job)
        if job.held:
            self.hold(jid)
        queues.enqueue(self, job)
        return job

    def submit_failed(self, jid: int, owner: str, tasks: int, why: str) -> Job:
        """A stored job this scheduler cannot run: every task failed, for `why`."""
        job = Job(jid, JobSpec(cmd="(not loaded)", tasks=tasks), owner, 0,
                  bytearray([FAILED]) * tasks, array("i", [-1]) * tasks,
                  [0, 0, 0, tasks, 0, 0], note=why)
        self.next_job = max(self.next_job, jid + 1)
        self.jobs[jid] = job
        return job

    def group_of(self, job: Job) -> Group:
        spec = job.spec
        key = (spec.requirements, allowlist.job_program(spec.cmd, spec.dir, spec.env), spec.need)
        group = self.groups.get(key)
        if group is None:
            group = Group(*key, expression(key[0]) if key[0] else None)
            self.groups[key] = group
            for worker in self.workers.values():        # once per new group, not per dispatch
                if group.matches(worker):
                    worker.groups.append(group)
                    if worker.taking and worker.fits(group.need):
                        group.idle[worker.name] = None
                        worker.listed = True
        return group

    def job(self, jid: int) -> Job:
        job = self.jobs.get(jid)
        if job is None:
            raise CoreError(f"no job {jid}")
        return job

    # ------------------------------------------------------------ dispatch

    def start(self, worker: Worker, job: Job, index: int) -> Assignment:
        job.set_state(index, RUNNING)
        job.running[index] = worker.name
        job.started[index] = self.clock()
        self.occupy(worker, job.id, index)
        self.refresh(worker)
        return Assignment(worker.name, job.id, index)

    def start_copy(self, worker: Worker, job: Job, index: int) -> Assignment:
        """Another run of a running task, on another worker: the first to finish
        well decides the task."""
        job.copies.setdefault(index, []).append(worker.name)
        self.occupy(worker, job.id, index)
        self.refresh(worker)
        return Assignment(worker.name, job.id, index, copy=True)

    def occupy(self, worker: Worker, jid: int, index: int) -> None:
        """The worker holds a run of the task: what it asks of the worker, and
        its cpus in its owner's share."""
        if (jid, index) not in worker.running:
            job = self.jobs.get(jid)
            need = job.spec.need if job is not None else Need()
            worker.running[(jid, index)] = need
            used = worker.used
            for i in range(4):
                used[i] += need[i]
            if job is not None:
                self.shares.started(job.owner, need.cpus)

    def free_slot(self, worker: Worker, jid: int, index: int) -> None:
        need = worker.running.pop((jid, index), None)
        if need is not None:
            used = worker.used
            for i in range(4):
                used[i] -= need[i]
            job = self.jobs.get(jid)
            if job is not None:
                self.shares.ended(job.owner, need.cpus)

    def runners(self, job: Job, index: int) -> list[str]:
        """The workers running the task: the first run, then its copies."""
        first = job.running.get(index)
        return ([first] if first else []) + job.copies.get(index, [])

    def drop_run(self, job: Job, index: int, name: str) -> bool:
        """One run of a task that has copies ends without deciding it (lost,
        failed, given back): True when another run goes on (the first copy then
        takes the place of the first run, output and all)."""
        copies = job.copies.get(index)
        if not copies:
            return False
        if name in copies:
            copies.remove(name)
            if self.copy_files is not None:
                self.copy_files.discard(job.id, index, name)
        elif job.running.get(index) == name:
            job.running[index] = copies.pop(0)
            if self.copy_files is not None:
                self.copy_files.promote(job.id, index, job.running[index])
        else:
            return False
        if not copies:
            del job.copies[index]
        return True

    def end_runs(self, job: Job, index: int, winner: str | None) -> None:
        """The task is decided (by `winner`'s run, or a verb): no run of it goes on;
        the winner's output becomes the task's."""
        for name in self.runners(job, index):
            worker = self.workers.get(name)
            if worker is not None and name != winner:
                self.free_slot(worker, job.id, index)
                self.refresh(worker)
        copies = job.copies.pop(index, [])
        if self.copy_files is not None:
            for name in copies:
                if name == winner:
                    self.copy_files.promote(job.id, index, name)
                else:
                    self.copy_files.discard(job.id, index, name)
        self.unrun(job, index)

    @staticmethod
    def unrun(job: Job, index: int) -> None:
        """The task runs nowhere now (it is queued again or decided)."""
        job.running.pop(index, None)
        job.started.pop(index, None)

    def ask(self, name: str, most: int) -> list[Assignment]:
        """A read of worker `name` asks for up to `most` tasks: those it can have now,
        or none and the worker is left asking."""
        got = self.take(self.workers[name], most)
        if not got:
            self.set_asking(name, True)
        return got

    def take(self, worker: Worker, most: int) -> list[Assignment]:
        """Up to `most` tasks for `worker`: the best queued ones it matches for its
        free slots, then more up to its lease while the best is still of its recent
        job (a better job stops the leasing ahead, so it gets the next free slot)."""
        got: list[Assignment] = []
        if worker.draining:
            return got
        self.now = self.shares.clock()
        while len(got) < most:
            if len(worker.running) >= worker.lease:
                break
            best, group = queues.best_group(self, worker)
            if best is None:
                break
            if group is None:       # nothing fits now: lease ahead the recent job alone
                top = queues.live_top(self, best)
                if top is None or top[2] != worker.recent:
                    break
                group = best
            picked = queues.next_task(self, group)
            if picked is None:
                break
            other = self.instead(group, worker, *picked)
            if other is not None:
                self.handed.append(self.start(other, *picked))
                continue
            got.append(self.start(worker, *picked))
        if not got and worker.used[0] < worker.total[0]:
            copy = runs.copy_for(self, worker)
            if copy is not None:
                got.append(copy)
        return got

    def instead(self, group: Group, worker: Worker, job: Job, index: int) -> Worker | None:
        """Another idle matching worker for a task that was lost, failed or vacated
        on `worker` (None: `worker` may run it)."""
        if job.elsewhere.get(index) != worker.name:
            return None
        for name in group.idle:                 # at most two steps: one is `worker`
            if name != worker.name:
                return self.workers[name]
        return None

    def fill(self, name: str) -> list[Assignment]:
        """Tasks for an asking worker whose report just made room."""
        worker = self.workers.get(name)
        if worker is None or not worker.asking:
            return []
        return self.take(worker, worker.lease)

    def set_asking(self, name: str, asking: bool) -> None:
        """Whether a read of the worker waits for tasks."""
        worker = self.workers.get(name)
        if worker is not None:
            worker.asking = asking
            self.refresh(worker)

    def set_lease(self, name: str, lease: int) -> None:
        worker = self.workers[name]
        worker.lease = lease
        self.refresh(worker)

    def refresh(self, worker: Worker) -> None:
        """Keep the worker in a group's `idle` exactly while it would take a task
        of that group (asking, and the group's requests fit in what it has free)."""
        taking = worker.taking
        if not taking and not worker.listed:
            return
        listed = False
        name = worker.name
        for group in worker.groups:
            if taking and worker.fits(group.need):
                group.idle[name] = None
                listed = True
            else:
                group.idle.pop(name, None)
        worker.listed = listed

    def dispatch(self) -> list[Assignment]:
        """Hand queued tasks to asking workers; called after anything queued tasks."""
        out = []
        self.now = self.shares.clock()
        for group in self.groups.values():
            while group.idle and group.queues:
                picked = queues.next_task(self, group)
                if picked is None:
                    break
                job, index = picked
                out.append(self.start(self.pick_worker(group, job, index), job, index))
        return out

    def pick_worker(self, group: Group, job: Job, index: int) -> Worker:
        """The asking matching worker with the best `rank` (the first if no rank),
        another than the one the task was lost, failed or vacated on if it can."""
        if not job.spec.rank:
            first = self.workers[next(iter(group.idle))]
            return self.instead(group, first, job, index) or first
        rank = expression(job.spec.rank)

        def score(name: str) -> float:
            value = self.workers[name].eval(rank)
            if name == job.elsewhere.get(index) and len(group.idle) > 1:
                return float("-inf")
            return float(value) if isinstance(value, (int, float)) else float("-inf")
        return self.workers[max(group.idle, key=score)]

    # ------------------------------------------------------------ workers

    def worker_join(self, name: str, attrs: dict[str, Any], slots: int,
                    lease: int | None = None, offer: Need | None = None) -> Worker:
        """`offer`: what it has for tasks (cpus are its slots; not said: memory
        and disk without a known limit, no GPUs)."""
        ad = classad_of(attrs)                    # may refuse the ad: nothing is changed
        old = self.workers.get(name)
        if old is not None:
            self.worker_lost(name)
        total = Need(slots, UNLIMITED, UNLIMITED, 0) if offer is None else offer._replace(cpus=slots)
        worker = Worker(name, attrs, ad, slots, slots if lease is None else lease, total)
        worker.groups = [g for g in self.groups.values() if g.matches(worker)]
        self.workers[name] = worker
        return worker

    def worker_update(self, name: str, changes: dict[str, Any]) -> bool:
        """Attributes that change while a worker is joined (its load): its ad, which
        matchmaking and rank read, follows, and so does the set of groups it is in
        (only groups whose requirements name a changed attribute are asked again).
        True when that set changed."""
        worker = self.workers.get(name)
        if worker is None:
            return False
        changed = {k: v for k, v in changes.items() if worker.attrs.get(k) != v}
        if not changed:
            return False
        worker.attrs.update(changed)
        for key, value in changed.items():
            worker.ad[key] = value
        names = [k.lower() for k in changed]
        groups = []
        for group in self.groups.values():
            if any(n in group.lowered for n in names):
                if group.matches(worker):
                    groups.append(group)
            elif group in worker.groups:
                groups.append(group)
        if groups == worker.groups:
            return False
        for group in worker.groups:
            group.idle.pop(worker.name, None)
        worker.groups = groups
        worker.listed = True
        self.refresh(worker)
        return True

    def worker_lost(self, name: str) -> list[tuple[int, int]]:
        """The worker went away: its running tasks go back to the queue (or fail
        after MAX_LOSSES).  Returns the tasks it held."""
        worker = self.workers.pop(name, None)
        if worker is None:
            return []
        worker.asking = False
        self.refresh(worker)
        lost = sorted(worker.running)
        for jid, index in lost:
            self.free_slot(worker, jid, index)
        for jid, index in lost:
            job = self.jobs.get(jid)
            if job is None or self.drop_run(job, index, name) or job.running.get(index) != name:
                continue
            self.unrun(job, index)
            job.losses[index] = job.losses.get(index, 0) + 1
            job.elsewhere[index] = name
            if job.losses[index] >= MAX_LOSSES:
                job.reasons[index] = f"lost {MAX_LOSSES} times (last on worker {name})"
                job.set_state(index, FAILED)
            else:
                self.requeue(job, index)
        return lost

    def requeue(self, job: Job, index: int) -> None:
        job.set_state(index, HELD if job.held else QUEUED)
        if not job.held:
            job.requeued.append(index)
            queues.enqueue(self, job)

    def task_done(self, name: str, jid: int, index: int, status: int, reason: str = "") -> bool:
        """Worker `name` reports task (jid, index) ended with `status` (negative: killed
        by that signal; `reason` says why it could not run, if so).  False when the
        report is stale (task no longer leased to it): it is then ignored."""
        job = self.jobs.get(jid)
        worker = self.workers.get(name)
        if worker is not None:
            self.free_slot(worker, jid, index)
            worker.recent = jid
            self.refresh(worker)
        if job is None:
            return False
        if index not in job.copies:             # the usual: one run
            if job.running.get(index) != name:
                return False
            del job.running[index]
            began = job.started.pop(index, None)
        else:
            if name not in self.runners(job, index):
                return False
            if status != 0 and self.drop_run(job, index, name):
                return True                     # another run of it goes on
            began = job.started.get(index)
            self.end_runs(job, index, name)
        if status == 0:
            job.exit[index] = status
            job.set_state(index, DONE)
            if began is not None:
                job.runtimes.append(self.clock() - began)
        elif job.failures.get(index, 0) < job.spec.retries:
            job.failures[index] = job.failures.get(index, 0) + 1
            job.elsewhere[index] = name
            self.requeue(job, index)                # its exit stays -1 until it ends
        else:
            job.exit[index] = status
            job.reasons[index] = reason or (f"exit status {status}" if status > 0
                                            else f"killed by signal {-status}")
            job.set_state(index, FAILED)
        return True

    def report_of(self, name: str, jid: int, index: int) -> Job | None:
        """Worker `name` no longer holds the task: its room is free; the job if one
        of the task's runs was that worker's (else the report is stale)."""
        job = self.jobs.get(jid)
        worker = self.workers.get(name)
        if worker is not None:
            self.free_slot(worker, jid, index)
            self.refresh(worker)
        if job is None or name not in self.runners(job, index):
            return None
        return job

    def task_held(self, name: str, jid: int, index: int, reason: str) -> list[str]:
        """Worker `name` stopped the task for breaking its requests: it is held
        with `reason` (a run elsewhere would end the same way: the workers of its
        other runs are returned, to be told to kill them).  A stale report: []
        and nothing changes, as for `task_done`."""
        job = self.report_of(name, jid, index)
        if job is None:
            return []
        others = [w for w in self.runners(job, index) if w != name]
        self.end_runs(job, index, None)
        job.reasons[index] = reason
        job.set_state(index, HELD)
        return [name, *others]

    def task_vacated(self, name: str, jid: int, index: int) -> bool:
        """Worker `name`'s owner took the machine back: the task goes back to the
        queue, an eviction and not a failure (False: a stale report)."""
        job = self.report_of(name, jid, index)
        if job is None:
            return False
        job.evictions[index] = job.evictions.get(index, 0) + 1
        if not self.drop_run(job, index, name):
            job.elsewhere[index] = name
            self.unrun(job, index)
            self.requeue(job, index)
        return True

    def end_task(self, job: Job, index: int, reason: str) -> None:
        """A running task fails for a reason of the scheduler's (every run of it
        is to be killed), with no retry: it would end the same way."""
        self.end_runs(job, index, None)
        job.reasons[index] = reason
        job.set_state(index, FAILED)

    def reclaim(self, name: str, jid: int, index: int) -> bool:
        """A worker rejoining (say, after a scheduler restart) still runs this task:
        take it back as running there, unless it was handed out again meanwhile."""
        job = self.jobs.get(jid)
        worker = self.workers.get(name)
        if job is None or worker is None or not 0 <= index < job.spec.tasks \
                or job.state[index] != QUEUED or job.held:
            return False
        job.set_state(index, RUNNING)
        job.running[index] = name
        job.started[index] = self.clock()
        self.occupy(worker, jid, index)
        self.refresh(worker)
        return True

    def unassign(self, name: str, jid: int, index: int) -> None:
        """A task was given to a read that went away before it got it (or to a worker
        told to give it up): put it back in the queue, with no loss counted."""
        job = self.jobs.get(jid)
        worker = self.workers.get(name)
        if worker is not None:
            self.free_slot(worker, jid, index)
            self.refresh(worker)
        if job is not None and not self.drop_run(job, index, name) \
                and job.running.get(index) == name:
            self.unrun(job, index)
            self.requeue(job, index)

    def set_draining(self, name: str, draining: bool) -> None:
        """A drained worker keeps its running tasks but is given no new ones."""
        worker = self.workers[name]
        worker.draining = draining
        self.refresh(worker)

    # ------------------------------------------------------------ ctl verbs

    def kill(self, jid: int) -> list[tuple[str, int]]:
        """Kill every unfinished task; returns (worker, task) pairs to stop.  One
        pass in C over the states, whatever the number of tasks: an unfinished task's
        exit is already -1, and a killed task's reason goes without saying."""
        job = self.job(jid)
        stop = [(name, index) for index in list(job.running)
                for name in self.runners(job, index)]
        for index in list(job.running):
            self.end_runs(job, index, None)
        job.killed = True
        job.state = job.state.translate(KILL)    # one pass; nothing keeps the old one
        c = job.counts
        c[KILLED] += c[QUEUED] + c[RUNNING] + c[HELD]
        c[QUEUED] = c[RUNNING] = c[HELD] = 0
        return stop

    def hold(self, jid: int) -> None:
        job = self.job(jid)
        if job.finished:
            raise CoreError(f"job {jid} is finished")
        job.held = True
        job.state = job.state.translate(HOLD)    # one pass; nothing keeps the old one
        job.counts[HELD] += job.counts[QUEUED]
        job.counts[QUEUED] = 0

    def release(self, jid: int) -> None:
        """Queue the job's held tasks again: held by the job's owner, by a parent
        that failed, or one by one for breaking their requests."""
        job = self.job(jid)
        if not job.held and not job.counts[HELD]:
            raise CoreError(f"job {jid} is not held")
        job.held = False
        state = job.state
        for index in [i for i in job.reasons if state[i] == HELD]:
            del job.reasons[index]                  # the reasons of tasks held one by one
        job.state = state.translate(RELEASE)    # one pass; nothing keeps the old one
        job.counts[QUEUED] += job.counts[HELD]
        job.counts[HELD] = 0
        job.rewind()
        queues.enqueue(self, job)

    def set_request(self, jid: int, key: str, value: int) -> None:
        """Change what the job's tasks ask for (`request_memory` ...): the tasks
        not running yet are matched by the new requests (a group of their own);
        running ones keep what they were given."""
        job = self.job(jid)
        if job.finished:
            raise CoreError(f"job {jid} is finished")
        changes: dict[str, Any] = {key: value}
        spec = dataclasses.replace(job.spec, **changes)
        self.group_of(Job(jid, spec, job.owner, 0, bytearray(), array("i"), []))  # may refuse
        job.spec = spec
        queues.enqueue(self, job)

    def set_priority(self, jid: int, priority: int) -> None:
        job = self.job(jid)
        job.priority = priority
        queues.enqueue(self, job)

    def retry(self, jid: int) -> int:
        """Queue the failed tasks again; returns how many."""
        job = self.job(jid)
        if job.note:
            raise CoreError(f"job {jid} cannot run again: {job.note}")
        if job.killed:
            raise CoreError(f"job {jid} was killed: submit it again to run it")
        again = job.counts[FAILED]
        if not again:
            return 0
        state = job.state
        for counts in (job.losses, job.failures):   # entries only for tasks lost or retried
            for index in [i for i in counts if state[i] == FAILED]:
                del counts[index]
        job.reasons = {}                            # only failed tasks have a reason
        job.state = state.translate(RETRY[job.held])
        job.counts[HELD if job.held else QUEUED] += again
        job.counts[FAILED] = 0
        job.rewind()
        queues.enqueue(self, job)
        return again

    def remove(self, jid: int) -> None:
        job = self.job(jid)
        if not job.finished:
            raise CoreError(f"job {jid} is not finished: kill it first")
        del self.jobs[jid]
