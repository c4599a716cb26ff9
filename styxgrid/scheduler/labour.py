"""The labour exchange, the scheduler's side: workers join, keep reads of /work
waiting for tasks, report, and are lost; the tree's /work file (tree/work.py)
calls in here.

Workers are `WorkerLink`s: the link of one joined connection, with its waiting
reads of /work (`WorkRead`) and a queue of orders (kill) for its control fid.
The core keeps the worker's record (attributes, slots, lease, tasks); a link
keeps only what the connection knows.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Sequence

import trio

from ..exchange import (REPLACED, Checkpoint, Done, Heartbeat, Held, Join, Kill, Output,
                        TaskRecord, Vacated)
from ..resources import UNLIMITED
from ..ninep.tree import Signal
from . import store as rows
from .core import Core
from .events import EventLog
from . import runs
from .model import FINISHED, RUNNING, STATE_NAMES, Assignment, Job
from .spool import Spool
from .store import Store

log = logging.getLogger("styxgrid.scheduler")

ELOST = "worker lost: join again"
ENOTJOINED = "not joined: write 'join NAME' to /work first"
# a node's attributes the scheduler writes (at join, heartbeat, the ad's read); of
# these a worker may say only MAY_SAY, spelt so (ClassAd names ignore case)
SCHEDULER_WORDS = {"name", "slots", "memory", "disk", "gpus", "loadavg", "freecpus",
                   "freegpus", "freememory", "freedisk"}
MAY_SAY = ("Memory", "Disk", "LoadAvg")
MIN_RECORD = 48             # no task record is shorter: a read of N bytes wants <= N/48


@dataclass(eq=False)
class WorkRead:
    """One waiting read of /work: gathers the tasks handed to it until it is
    answered (or its worker is lost)."""

    link: "WorkerLink"
    signal: Signal = field(default_factory=Signal)     # fired when handed tasks or lost
    assignments: list[Assignment] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return bool(self.assignments) or self.link.gone


@dataclass(eq=False)
class WorkerLink:
    """A joined worker connection: what only the connection knows (the worker's
    attributes, slots and tasks are the core's record of it)."""

    name: str
    last_seen: float
    parked: deque[WorkRead] = field(default_factory=deque)
    commands: list[Kill] = field(default_factory=list)
    command_ready: Signal = field(default_factory=Signal)
    gone: bool = False
    lost_reason: str = ELOST          # what its requests are answered once it is gone

    def send(self, command: Kill) -> None:
        self.commands.append(command)
        self.command_ready.fire()


class Labour:
    """The grid's workers and the tasks handed to them."""

    def __init__(self, core: Core, events: EventLog, store: Store, spool: Spool, *,
                 heartbeat_timeout: float, notify: Callable[[int], None],
                 announce: Callable[[Job], None]) -> None:
        self.core = core
        self.events = events
        self.store = store
        self.spool = spool
        self.heartbeat_timeout = heartbeat_timeout
        self.notify = notify                # job N changed: wake who waits for that
        self.announce = announce            # a job's end, once it is committed
        self.nursery: trio.Nursery | None = None     # the grid's, once it runs
        self.links: dict[str, WorkerLink] = {}
        self.task_texts: dict[int, bytes] = {}     # per job: its task records' body

    def order(self, name: str, order: Kill) -> None:
        """Tell a connected worker (none connected: it is told when it rejoins)."""
        link = self.links.get(name)
        if link is not None:
            link.send(order)

    # ------------------------------------------------------------ dispatch

    def dispatch(self) -> None:
        """Hand queued tasks to waiting reads."""
        for assignment in self.core.dispatch():
            self.hand(self.links[assignment.worker], assignment)

    def hand(self, link: WorkerLink, a: Assignment) -> None:
        """Give a task to the worker's first waiting read (the core hands tasks only
        to a worker that has one)."""
        read = link.parked[0]
        self.started(a)
        read.assignments.append(a)
        read.signal.fire()

    def fill(self, link: WorkerLink) -> None:
        """The worker has room again: its waiting read gets what fits."""
        if link.parked:
            for a in self.core.fill(link.name):
                self.hand(link, a)
            self.hand_over()

    def hand_over(self) -> None:
        """Tasks the core gave to other workers than the one asking (core.instead)."""
        handed, self.core.handed = self.core.handed, []
        for a in handed:
            self.hand(self.links[a.worker], a)

    def started(self, a: Assignment) -> None:
        if not a.copy:
            self.spool.reset(a.job, a.index)
            self.events.add(a.job, f"job {a.job} task {a.index} running node={a.worker}")
        else:
            self.spool.reset(a.job, a.index, a.worker)
            job = self.core.jobs[a.job]
            ran = self.core.clock() - job.started[a.index]
            self.events.add(a.job, f"job {a.job} task {a.index} copy running node={a.worker} "
                            f"(slow: {ran:.1f}s on {job.running[a.index]}, over "
                            f"{job.spec.speculate:g} x the median {runs.median_run(job):.2f}s)")
        self.notify(a.job)

    def take_work(self, link: WorkerLink, most: int) -> list[Assignment] | WorkRead:
        """A read of /work: up to `most` tasks now, or a `WorkRead` to wait on."""
        if link.gone:
            raise LookupError(link.lost_reason)
        if not link.parked:
            got = self.core.ask(link.name, most)
            self.hand_over()
            if got:
                for a in got:
                    self.started(a)
                return got
        read = WorkRead(link)
        link.parked.append(read)
        return read

    def answer(self, read: WorkRead) -> list[Assignment]:
        """A woken read takes its tasks (none: its worker was lost)."""
        link = read.link
        self.forget_read(read)
        return [] if link.gone else read.assignments

    def unpark(self, read: WorkRead) -> None:
        """A waiting read went away (flushed, connection closed): the tasks handed
        to it go back to the queue."""
        link = read.link
        self.forget_read(read)
        if not link.gone:
            self.give_back(link, read.assignments, "read went away")
        read.assignments = []

    def give_back(self, link: WorkerLink, unsent: list[Assignment], why: str) -> None:
        """Tasks handed to a read that did not return them go back to the queue, with
        no loss counted."""
        for a in unsent:
            self.core.unassign(link.name, a.job, a.index)
            self.events.add(a.job, f"job {a.job} task {a.index} queued ({why})")
            self.notify(a.job)
        if unsent:
            self.dispatch()

    def forget_read(self, read: WorkRead) -> None:
        link = read.link
        try:
            link.parked.remove(read)
        except ValueError:
            return
        if not link.parked and not link.gone:
            self.core.set_asking(link.name, False)

    def lease_text(self, link: WorkerLink, got: list[Assignment], count: int) -> bytes:
        """What a read of /work returns: one record per task, as many as fit in
        `count` bytes (at least one); the rest go back to the queue."""
        out: list[bytes] = []
        size = 0
        for i, a in enumerate(got):
            record = self.task_text(a)
            if size + len(record) > count:
                self.give_back(link, got[i:], "read too small")
                if not out:
                    raise LookupError(f"a read of /work of {count} bytes is too small for "
                                      f"task {a.job}.{a.index} ({len(record)} bytes)")
                break
            out.append(record)
            size += len(record)
        return b"".join(out)

    def task_text(self, a: Assignment) -> bytes:
        """One task's record: `task J T N OWNER SIZE` (N: the job's task count),
        then SIZE bytes of the job's description lines, less requirements and rank."""
        text = self.task_texts.get(a.job)
        if text is None:
            spec = self.core.jobs[a.job].spec
            lines = [line for line in spec.lines().split("\n")
                     if line and not line.startswith(("requirements ", "rank "))]
            text = self.task_texts[a.job] = ("\n".join(lines) + "\n").encode()
        job = self.core.jobs[a.job]
        return TaskRecord.head(a.job, a.index, job.spec.tasks, job.owner, len(text),
                               a.index in job.checkpoints) + text

    # ------------------------------------------------------------ workers

    def join(self, join: Join) -> WorkerLink:
        """A worker joins: its name, slots, lease, attributes, and the tasks it
        still holds.  A newer worker of a name takes over; the older one is told so
        and stops (one that only restarted joins at once, and an orphan does not
        fight it forever)."""
        name, slots = join.name, join.slots
        old = self.links.get(name)
        if old is not None:
            old.lost_reason = f"{REPLACED} {name}; this one stops"
            self.lose(old, "another worker joined under its name")
        # its own words lose to ours; `name = "x"` would stand beside our Name
        attrs = {k: v for k, v in join.attrs if k.lower() not in SCHEDULER_WORDS or k in MAY_SAY}
        attrs.update(Name=name, Slots=slots)
        offer = join.offer
        if offer.memory < UNLIMITED:            # what requirements read is what it offers
            attrs["Memory"] = offer.memory
        if offer.disk < UNLIMITED:
            attrs["Disk"] = offer.disk
        attrs["Gpus"] = offer.gpus
        self.core.worker_join(name, attrs, slots, join.lease, offer)
        link = WorkerLink(name, trio.current_time())
        self.links[name] = link
        self.events.add(0, f"node {name} joined slots={slots} offers {offer.words()}")
        for jid, index in join.running:
            if self.core.reclaim(name, jid, index):
                self.events.add(jid, f"job {jid} task {index} running node={name} (reclaimed)")
                self.notify(jid)
            else:
                link.send(Kill(jid, index))
        return link

    def heartbeat(self, link: WorkerLink, beat: Heartbeat) -> None:
        if link.gone:
            raise LookupError(link.lost_reason)
        link.last_seen = trio.current_time()
        worker = self.core.workers[link.name]
        if beat.owner != worker.owner:
            worker.owner = beat.owner
            self.events.add(0, f"node {link.name} owner {beat.owner}" + (
                {"suspended": " (its tasks are stopped)",
                 "vacating": " (its tasks are being vacated)",
                 "back": " (it takes no work)", "away": " (it works again)"}[beat.owner]))
        if beat.load is not None and self.core.worker_update(link.name, {"LoadAvg": beat.load}):
            self.dispatch()                 # it may match a job it did not match before

    def set_lease(self, link: WorkerLink, lease: int) -> None:
        """The worker now holds up to `lease` tasks at once."""
        if link.gone:
            raise LookupError(link.lost_reason)
        self.core.set_lease(link.name, lease)
        self.fill(link)

    def lose(self, link: WorkerLink, why: str) -> None:
        """The worker is gone: its running tasks go back to the queue (or fail after
        too many losses), its parked reads end with an error."""
        if link.gone:
            return
        link.gone = True
        if self.links.get(link.name) is link:
            del self.links[link.name]
        lost = self.core.worker_lost(link.name)
        self.events.add(0, f"node {link.name} lost: {why}")
        statements = []
        for jid, index in lost:
            job = self.core.jobs.get(jid)
            if job is None:
                continue
            state = STATE_NAMES[job.state[index]]
            self.events.add(jid, f"job {jid} task {index} {state} (worker {link.name} lost)")
            if job.state[index] in FINISHED:
                statements.append(rows.result_row(job, index, link.name))
                self.announce(job)
            self.notify(jid)
        while link.parked:
            link.parked.popleft().signal.fire()
        link.command_ready.fire()
        if statements and self.nursery is not None:
            self.nursery.start_soon(self.store.write, statements)
        self.dispatch()

    async def watchdog(self) -> None:
        """Workers silent for longer than the heartbeat timeout are lost."""
        while True:
            await trio.sleep(min(1.0, self.heartbeat_timeout / 4))
            now = trio.current_time()
            for link in list(self.links.values()):
                if now - link.last_seen > self.heartbeat_timeout:
                    self.lose(link, f"no heartbeat for {self.heartbeat_timeout:g}s")
            self.ticks()

    async def tasks_done(self, link: WorkerLink,
                         reports: Sequence[Done | Vacated | Held | Checkpoint],
                         outputs: Sequence[Output] = ()) -> None:
        """A worker's reports, committed together before this returns, after the
        output that came with them is in the spool; watchers hear of them after
        the commit.  Stale ones (a task no longer leased to this worker) are ignored."""
        if link.gone:            # its tasks are queued again; it states them when it rejoins
            raise LookupError(link.lost_reason)
        link.last_seen = trio.current_time()
        for out in outputs:
            job = self.core.jobs.get(out.job)
            if job is None:
                continue
            if job.running.get(out.task) == link.name:
                copy = ""
            elif link.name in job.copies.get(out.task, ()):
                copy = link.name
            else:
                continue
            try:
                self.spool.write(out.job, out.task, out.stream, out.offset, out.data, copy)
            except OSError as exc:
                log.error("job=%s task=%s %s from node=%s not stored: %s", out.job, out.task,
                          out.stream, link.name, exc)
        statements, changed, requeued = [], {}, False
        for done in reports:
            if isinstance(done, Checkpoint):
                self.checkpointed(link, done)
                continue
            if isinstance(done, Held):
                kill = self.core.task_held(link.name, done.job, done.task, done.reason)
                if kill:
                    job = changed[done.job] = self.core.jobs[done.job]
                    statements.append(rows.result_row(job, done.task, link.name))
                    for other in kill[1:]:
                        self.order(other, Kill(done.job, done.task))
                    self.events.add(done.job, f"job {done.job} task {done.task} held on "
                                    f"{link.name}: {done.reason}")
                continue
            if isinstance(done, Vacated):
                if self.core.task_vacated(link.name, done.job, done.task):
                    changed[done.job] = self.core.jobs[done.job]
                    requeued = True
                    self.events.add(done.job, f"job {done.job} task {done.task} queued "
                                    f"(vacated from {link.name}: {done.reason or 'owner back'})")
                continue
            jid, index, status = done.job, done.task, done.status
            job = self.core.jobs.get(jid)
            copied = self.core.runners(job, index) if job and index in job.copies else None
            if not self.core.task_done(link.name, jid, index, status, done.reason):
                continue
            job = changed[jid] = self.core.jobs[jid]
            state = job.state[index]
            if copied is not None and self.copy_ended(link.name, job, index, status, copied):
                continue
            self.events.add(jid, f"job {jid} task {index} {STATE_NAMES[state]} exit={status}")
            if state in FINISHED:
                statements.append(rows.result_row(job, index, link.name))
            else:
                requeued = True
        self.fill(link)
        if statements:
            await self.store.write(statements)
        for jid, job in changed.items():
            self.announce(job)
            self.notify(jid)
        if requeued:
            self.dispatch()

    def checkpointed(self, link: WorkerLink, report: Checkpoint) -> None:
        """A run of the task uploaded a whole checkpoint: it is the task's now."""
        jid, index = report.job, report.task
        job = self.core.jobs.get(jid)
        if job is None or link.name not in self.core.runners(job, index):
            return
        if self.spool.commit_checkpoint(jid, index, link.name, report.size):
            job.checkpoints[index] = report.size
            self.events.add(jid, f"job {jid} task {index} checkpoint saved on {link.name} "
                            f"({report.size} bytes)")

    def copy_ended(self, name: str, job: Job, index: int, status: int,
                   runners: list[str]) -> bool:
        """One run of a task that had copies ended (`runners`: all its runs, before):
        if it decided the task, the other runs are killed; if not (it failed, the
        others go on), that is all there is to say (True)."""
        others = [w for w in runners if w != name]
        if job.state[index] == RUNNING:
            self.events.add(job.id, f"job {job.id} task {index} run on {name} ended "
                            f"exit={status}; its other run goes on")
            return True
        for other in others:
            self.order(other, Kill(job.id, index))
        self.events.add(job.id, f"job {job.id} task {index} {STATE_NAMES[job.state[index]]} "
                        f"exit={status} node={name} (first of {len(runners)} runs to end; "
                        f"killed on {','.join(others)})")
        return False

    def ticks(self) -> None:
        """What time alone brings: copies of tasks that became slow, and the end of
        tasks past their max_runtime."""
        for a in runs.copies(self.core):
            self.hand(self.links[a.worker], a)
        late = runs.overdue(self.core)
        statements = []
        for job, index in late:
            runners = self.core.runners(job, index)
            limit = job.spec.max_runtime
            self.core.end_task(job, index, f"ran past its max_runtime of {limit}s (killed)")
            for name in runners:
                self.order(name, Kill(job.id, index))
            self.events.add(job.id, f"job {job.id} task {index} failed (past max_runtime "
                            f"{limit}s on {','.join(runners)})")
            statements.append(rows.result_row(job, index, runners[0] if runners else ""))
        if statements and self.nursery is not None:
            self.nursery.start_soon(self.commit_ends, statements, list({j for j, _ in late}))
        if late:
            self.dispatch()

    async def commit_ends(self, statements: list, jobs: list[Job]) -> None:
        await self.store.write(statements)
        for job in jobs:
            self.announce(job)
            self.notify(job.id)

    def drain(self, name: str | None, draining: bool) -> None:
        """Stop (or resume) handing tasks to one worker, or to all."""
        names = [name] if name is not None else list(self.links)
        for n in names:
            if n not in self.links:
                raise LookupError(f"no node {n}")
            self.core.set_draining(n, draining)
            self.events.add(0, f"node {n} {'draining' if draining else 'resumed'}")
        if not draining:
            self.dispatch()

    def vacate(self, name: str) -> None:
        """Drain a node and send its running tasks back to the queue (`disable`)."""
        self.drain(name, True)
        link = self.links[name]
        worker = self.core.workers[name]
        for jid, index in sorted(worker.running):
            link.send(Kill(jid, index))
            self.core.unassign(name, jid, index)
            self.events.add(jid, f"job {jid} task {index} queued (node {name} disabled)")
            self.notify(jid)
        self.dispatch()
