"""The running scheduler: the pure core, the store, the spool and the event log,
driven by what arrives through the 9P tree.

The tree (tree/) calls in here; this module never sees a fid.  Every change
that must survive a crash is written to the store before the call that made it
returns.  Workers are `WorkerLink`s: the link of one joined connection, with its
waiting reads of /work (`WorkRead`) and a queue of commands (kill) for its control fid.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import trio

from ..adtext import literal
from ..ninep.tree import Signal
from ..exchange import REPLACED, Done, Heartbeat, Join, Kill, Output, TaskRecord
from . import store as rows
from .config import SchedulerConfig
from .core import EXITED, FAILED, FINISHED, KILLED, STATE_NAMES, Assignment, Core, CoreError, Job
from ..describe import JobSpec
from .events import EventLog
from .spool import Spool
from .store import Store

log = logging.getLogger("styxgrid.scheduler")

ELOST = "worker lost: join again"
ENOTJOINED = "not joined: write 'join NAME' to /work first"
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
    """A joined worker connection."""

    name: str
    attrs: dict[str, Any]
    slots: int
    last_seen: float
    parked: deque[WorkRead] = field(default_factory=deque)
    commands: list[Kill] = field(default_factory=list)
    command_ready: Signal = field(default_factory=Signal)
    gone: bool = False
    lost_reason: str = ELOST          # what its requests are answered once it is gone

    def send(self, command: Kill) -> None:
        self.commands.append(command)
        self.command_ready.fire()


class Grid:
    """All of one scheduler's state.  Run `run` in a nursery before serving."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.state_dir = Path(config.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.lock = lock_state(self.state_dir)
        self.core = Core()
        self.store = Store(self.state_dir / "grid.db")
        self.store.load(self.core)
        self.spool = Spool(str(self.state_dir / "spool"))
        self.data_dir = str(self.state_dir / "data")
        os.makedirs(self.data_dir, exist_ok=True)
        self.events = EventLog()
        self.links: dict[str, WorkerLink] = {}
        self.watchers: dict[int, Signal] = {}      # any change of a job
        self.end_watchers: dict[int, Signal] = {}  # its end (or its removal)
        self.task_texts: dict[int, bytes] = {}
        self.first_event: dict[int, int] = {}    # where each job's event history starts
        self.announced = {jid for jid, job in self.core.jobs.items() if job.finished}
        self.heartbeat_timeout = config.heartbeat_timeout
        self.nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """The store's writer and the heartbeat watchdog, until cancelled."""
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            await nursery.start(self.store.writer)
            nursery.start_soon(self.watchdog)
            task_status.started()

    def close(self) -> None:
        self.store.close()
        os.close(self.lock)

    # ------------------------------------------------------------ watching

    def changed(self, jid: int) -> Signal:
        """Fired when job `jid` changes (a task state, its output, its end)."""
        signal = self.watchers.get(jid)
        if signal is None:
            signal = self.watchers[jid] = Signal()
        return signal

    def ended(self, jid: int) -> Signal:
        """Fired when job `jid` is finished or removed: a reader of `wait` is not
        woken by each of a big job's task changes."""
        signal = self.end_watchers.get(jid)
        if signal is None:
            signal = self.end_watchers[jid] = Signal()
        return signal

    def notify(self, jid: int) -> None:
        """Job `jid` changed: wake who waits for that (every change goes through here)."""
        signal = self.watchers.pop(jid, None)
        if signal is not None:
            signal.fire()
        job = self.core.jobs.get(jid)
        if job is None or job.finished:
            signal = self.end_watchers.pop(jid, None)
            if signal is not None:
                signal.fire()

    def job(self, jid: int) -> Job:
        try:
            return self.core.job(jid)
        except CoreError as exc:
            raise LookupError(str(exc)) from None

    def find_job(self, jid: int) -> Job | None:
        return self.core.jobs.get(jid)

    def job_ids(self) -> list[int]:
        return sorted(self.core.jobs)

    def why(self, jid: int) -> str:
        return self.core.why(jid)

    def event_cursor(self, jid: int) -> int:
        """Where a reader of job `jid`'s events starts (0: the grid's, from now)."""
        now = self.events.cursor()
        return max(self.events.first_seq, self.first_event.get(jid, now)) if jid else now

    def has_events_coming(self, jid: int) -> bool:
        """Whether job `jid` has not yet announced its end (nor was removed)."""
        return jid not in self.announced and jid in self.core.jobs

    # ------------------------------------------------------------ jobs

    async def submit(self, spec: JobSpec, owner: str) -> Job:
        """Commit a new job, then queue it; returns once it is on disk."""
        jid = self.core.next_job
        self.core.next_job += 1
        await self.store.write([rows.new_job_row(jid, owner, spec)])
        job = self.core.submit(spec, owner, job_id=jid)
        self.first_event[jid] = self.events.cursor()
        self.events.add(jid, f"job {jid} submitted tasks={spec.tasks} owner={owner}")
        self.dispatch()
        return job

    async def job_verb(self, jid: int, verb: str, arg: int | None = None) -> None:
        """A job ctl verb; CoreError (wrong state, no such job) says why it can't."""
        core = self.core
        job = core.job(jid)
        statements: list[rows.Statement] = []
        if verb == "kill":
            for name, index in core.kill(jid):
                link = self.links.get(name)
                if link is not None:
                    link.send(Kill(jid, index))
            statements = [rows.killed_row(job)]
        elif verb == "hold":
            core.hold(jid)
            statements = [rows.job_row(job)]
        elif verb == "release":
            core.release(jid)
            statements = [rows.job_row(job)]
        elif verb == "priority":
            assert arg is not None
            core.set_priority(jid, arg)
            statements = [rows.job_row(job)]
        elif verb == "retry":
            core.retry(jid)
            self.announced.discard(jid)
            statements = rows.forget_failed(job)
        elif verb == "remove":
            core.remove(jid)
            statements = rows.forget_job(jid, job.spec.tasks)
        for statement in statements:      # each its own commit: others wait for one slice
            await self.store.write([statement], bulk=verb in ("retry", "remove"))
        if verb == "remove":
            self.spool.remove_job(jid)
            self.announced.discard(jid)
            self.first_event.pop(jid, None)
            self.task_texts.pop(jid, None)
            self.events.add(jid, f"job {jid} removed")
        else:
            self.events.add(jid, f"job {jid} {verb}" + (f" {arg}" if arg is not None else ""))
            self.job_event_if_finished(job)
        self.notify(jid)
        self.dispatch()

    def job_event_if_finished(self, job: Job) -> None:
        """Announce a job's end once it is committed; its event stream ends there."""
        if job.finished and job.id not in self.announced:
            self.announced.add(job.id)
            self.events.add(job.id, f"job {job.id} {job.state_name}")

    # ------------------------------------------------------------ dispatch

    def dispatch(self) -> None:
        """Hand queued tasks to waiting reads."""
        for assignment in self.core.dispatch():
            self.hand(self.links[assignment.worker], assignment)

    def hand(self, link: WorkerLink, a: Assignment) -> None:
        """Give a task to the worker's first waiting read (the core hands tasks only
        to a worker that has one)."""
        lease = link.parked[0]
        self.started(a)
        lease.assignments.append(a)
        lease.signal.fire()

    def fill(self, link: WorkerLink) -> None:
        """The worker has room again: its waiting read gets what fits."""
        if link.parked:
            for a in self.core.fill(link.name):
                self.hand(link, a)

    def started(self, a: Assignment) -> None:
        self.spool.reset(a.job, a.index)
        self.events.add(a.job, f"job {a.job} task {a.index} running node={a.worker}")
        self.notify(a.job)

    def take_work(self, link: WorkerLink, most: int) -> list[Assignment] | WorkRead:
        """A read of /work: up to `most` tasks now, or a `WorkRead` to wait on."""
        if link.gone:
            raise LookupError(link.lost_reason)
        if not link.parked:
            got = self.core.ask(link.name, most)
            if got:
                for a in got:
                    self.started(a)
                return got
        lease = WorkRead(link)
        link.parked.append(lease)
        return lease

    def answer(self, lease: WorkRead) -> list[Assignment]:
        """A woken read takes its tasks (none: its worker was lost)."""
        link = lease.link
        self.forget_lease(lease)
        return [] if link.gone else lease.assignments

    def unpark(self, lease: WorkRead) -> None:
        """A waiting read went away (flushed, connection closed): the tasks handed
        to it go back to the queue."""
        link = lease.link
        self.forget_lease(lease)
        if not link.gone:
            self.give_back(link, lease.assignments, "read went away")
        lease.assignments = []

    def give_back(self, link: WorkerLink, unsent: list[Assignment], why: str) -> None:
        """Tasks handed to a read that did not return them go back to the queue, with
        no loss counted."""
        for a in unsent:
            self.core.unassign(link.name, a.job, a.index)
            self.events.add(a.job, f"job {a.job} task {a.index} queued ({why})")
            self.notify(a.job)
        if unsent:
            self.dispatch()

    def forget_lease(self, lease: WorkRead) -> None:
        link = lease.link
        try:
            link.parked.remove(lease)
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
        """One task's record: `task J T N SIZE` (N: the job's task count), then SIZE
        bytes of the job's description lines, less requirements and rank."""
        text = self.task_texts.get(a.job)
        if text is None:
            spec = self.core.jobs[a.job].spec
            lines = [line for line in spec.lines().split("\n")
                     if line and not line.startswith(("requirements ", "rank "))]
            text = self.task_texts[a.job] = ("\n".join(lines) + "\n").encode()
        tasks = self.core.jobs[a.job].spec.tasks
        return TaskRecord.head(a.job, a.index, tasks, len(text)) + text

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
        attrs = {**dict(join.attrs), "Name": name, "Slots": slots}  # its own words lose
        self.core.worker_join(name, attrs, slots, join.lease)
        link = WorkerLink(name, attrs, slots, trio.current_time())
        self.links[name] = link
        self.events.add(0, f"node {name} joined slots={slots}")
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
                self.job_event_if_finished(job)
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

    async def tasks_done(self, link: WorkerLink, reports: Sequence[Done],
                         outputs: Sequence[Output] = ()) -> None:
        """A worker's reports, committed together before this returns, after the
        output that came with them is in the spool; watchers hear of them after
        the commit.  Stale ones (a task no longer leased to this worker) are ignored."""
        if link.gone:            # its tasks are queued again; it states them when it rejoins
            raise LookupError(link.lost_reason)
        link.last_seen = trio.current_time()
        for out in outputs:
            job = self.core.jobs.get(out.job)
            if job is not None and job.running.get(out.task) == link.name:
                try:
                    self.spool.write(out.job, out.task, out.stream, out.offset, out.data)
                except OSError as exc:
                    log.error("job=%s task=%s %s from node=%s not stored: %s", out.job, out.task,
                              out.stream, link.name, exc)
        statements, changed, requeued = [], {}, False
        for done in reports:
            jid, index, status = done.job, done.task, done.status
            if not self.core.task_done(link.name, jid, index, status, done.reason):
                continue
            job = changed[jid] = self.core.jobs[jid]
            state = job.state[index]
            self.events.add(jid, f"job {jid} task {index} {STATE_NAMES[state]} exit={status}")
            if state in FINISHED:
                statements.append(rows.result_row(job, index, link.name))
            else:
                requeued = True
        self.fill(link)
        if statements:
            await self.store.write(statements)
        for jid, job in changed.items():
            self.job_event_if_finished(job)
            self.notify(jid)
        if requeued:
            self.dispatch()

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
        link = self.node(name)
        worker = self.core.workers[name]
        for jid, index in sorted(worker.running):
            link.send(Kill(jid, index))
            self.core.unassign(name, jid, index)
            self.events.add(jid, f"job {jid} task {index} queued (node {name} disabled)")
            self.notify(jid)
        self.dispatch()

    # ------------------------------------------------------------ views

    def stats_line(self) -> str:
        counts = [0] * len(STATE_NAMES)
        for job in self.core.jobs.values():
            for state, n in enumerate(job.counts):
                counts[state] += n
        slots = sum(link.slots for link in self.links.values())
        idle = sum(w.idle for w in self.core.workers.values())
        parts = [f"{name}={counts[i]}" for i, name in enumerate(STATE_NAMES)]
        return (f"jobs={len(self.core.jobs)} " + " ".join(parts) +
                f" workers={len(self.links)} slots={slots} idle={idle}\n")

    def node_names(self) -> list[str]:
        return sorted(self.links)

    def has_node(self, name: str) -> bool:
        return name in self.links

    def draining(self) -> list[str]:
        return [name for name, w in self.core.workers.items() if w.draining]

    def node_index(self) -> str:
        return "".join(self.node_status(name) for name in sorted(self.links))

    def node_status(self, name: str) -> str:
        link = self.node(name)
        worker = self.core.workers[name]
        a = link.attrs
        state = "draining" if worker.draining else "paused" if worker.lease == 0 else \
            "busy" if worker.running else "idle"
        held = len(worker.running)
        seen = trio.current_time() - link.last_seen
        return (f"{name} {state} cpus={a.get('Cpus', '?')} mem={a.get('Memory', '?')} "
                f"load={a.get('LoadAvg', '?')} os={a.get('OpSys', '?')} "
                f"arch={a.get('Arch', '?')} slots={link.slots} lease={worker.lease} running={held} "
                f"seen={seen:.1f}s\n")

    def node(self, name: str) -> WorkerLink:
        link = self.links.get(name)
        if link is None:
            raise LookupError(f"no node {name}")
        return link

    def node_ad(self, name: str) -> str:
        attrs = self.node(name).attrs
        return "".join(f"{k} = {literal(v)}\n" for k, v in sorted(attrs.items()))

    def task_status(self, jid: int, index: int) -> str:
        job = self.core.job(jid)
        state = job.state[index]
        line = f"{index} {STATE_NAMES[state]}"
        if index in job.running:
            line += f" node={job.running[index]}"
        if state in EXITED:
            line += f" exit={job.exit_of(index)}"
        reason = job.reasons.get(index) or ("killed" if state == KILLED else "") or \
            (job.note if state == FAILED else "")
        if reason:
            line += f" reason={reason}"
        return line + "\n"

    def task_node(self, jid: int, index: int) -> str:
        job = self.core.job(jid)
        node = job.running.get(index)
        if node is None and job.state[index] in FINISHED:
            node = self.store.task_node(jid, index)
        return (node or "") + "\n" if node else ""


class StateInUse(OSError):
    """Another scheduler serves this state folder."""


def lock_state(folder: Path) -> int:
    """Hold an exclusive lock on the state folder for as long as this scheduler
    runs (the kernel drops it when the process ends, however it ends); a second
    scheduler on the same folder learns which process holds it."""
    fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StateInUse(f"state folder {folder} is in use by process {holder}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd



