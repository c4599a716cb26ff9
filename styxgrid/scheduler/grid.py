"""The running scheduler: the pure core, the store, the spool and the event log,
driven by what arrives through the 9P tree.

The tree (tree/) calls in here, and never into the core; this module never sees a
fid.  Every change that must survive a crash is written to the store before the
call that made it returns.  The workers' side of it is `labour` (labour.py).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import trio

from ..adtext import literal
from ..describe import DescriptionError, JobSpec
from ..exchange import Kill
from ..resources import UNLIMITED
from ..ninep.tree import Signal
from . import dependencies, store as rows
from .config import SchedulerConfig
from .core import Core
from .events import EventLog
from .labour import Labour, WorkerLink
from .model import EXITED, FAILED, FINISHED, KILLED, STATE_NAMES, CoreError, Job
from .shares import Share, Shares
from .spool import Spool
from .store import Store
from .why import explain


class Grid:
    """All of one scheduler's state.  Run `run` in a nursery before serving."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.state_dir = Path(config.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.lock = lock_state(self.state_dir)
        self.spool = Spool(str(self.state_dir / "spool"))
        self.core = Core(clock=trio.current_time, copy_files=self.spool,
                         shares=Shares(half_life=config.usage_half_life))
        self.store = Store(self.state_dir / "grid.db")
        self.store.load(self.core)
        for job in self.core.jobs.values():      # checkpoints of the tasks still to end
            if not job.finished and job.id in self.spool.with_files:
                job.checkpoints = self.spool.checkpoints(job.id)
        self.data_dir = str(self.state_dir / "data")
        os.makedirs(self.data_dir, exist_ok=True)
        keep_private(self.state_dir)
        self.events = EventLog()
        self.watchers: dict[int, Signal] = {}      # any change of a job
        self.end_watchers: dict[int, Signal] = {}  # its end (or its removal)
        self.first_event: dict[int, int] = {}    # where each job's event history starts
        self.announced = {jid for jid, job in self.core.jobs.items() if job.finished}
        self.labour = Labour(self.core, self.events, self.store, self.spool,
                             heartbeat_timeout=config.heartbeat_timeout, notify=self.notify,
                             announce=self.job_event_if_finished)

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """The store's writer and the heartbeat watchdog, until cancelled."""
        async with trio.open_nursery() as nursery:
            self.labour.nursery = nursery
            await nursery.start(self.store.writer)
            nursery.start_soon(self.labour.watchdog)
            nursery.start_soon(self.keep_usage)
            task_status.started()

    def close(self) -> None:
        """At a clean stop: users' usage as it is now, then the files closed."""
        shares = self.core.shares
        for share in shares.users.values():
            shares.settle(share)
        self.store.write_now([rows.user_row(s) for s in shares.users.values()])
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
        return explain(self.core, jid)

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
        jid = self.core.new_job_id()
        await self.store.write([rows.new_job_row(jid, owner, spec)])
        job = self.core.submit(spec, owner, job_id=jid)
        self.first_event[jid] = self.events.cursor()
        self.events.add(jid, f"job {jid} submitted tasks={spec.tasks} owner={owner}")
        self.labour.dispatch()
        return job

    def check_parents(self, spec: JobSpec, owner: str, admin: bool) -> None:
        """The jobs a new job waits for must exist and be the submitter's to read
        (their own or shared; an admin's: any).  A job can only wait for jobs
        older than itself, so no chain of them is a cycle."""
        for parent, _ in spec.after:
            job = self.core.jobs.get(parent)
            if job is None or not (admin or job.owner == owner or job.spec.share):
                raise DescriptionError(f"after: no job {parent} of yours to wait for")

    async def job_verb(self, jid: int, verb: str, arg: int | None = None) -> None:
        """A job ctl verb; CoreError (wrong state, no such job) says why it can't."""
        core = self.core
        job = core.job(jid)
        statements: list[rows.Statement] = []
        if verb == "kill":
            for name, index in core.kill(jid):
                self.labour.order(name, Kill(jid, index))
            statements = [rows.killed_row(job)]
        elif verb == "hold":
            core.hold(jid)
            statements = [rows.job_row(job)]
        elif verb == "release":
            core.release(jid)
            statements = [rows.job_row(job), rows.forget_held(job)]
        elif verb.startswith("request_"):
            assert arg is not None
            core.set_request(jid, verb, arg)
            self.labour.task_texts.pop(jid, None)       # workers are sent the new one
            statements = [rows.spec_row(job)]
        elif verb == "priority":
            assert arg is not None
            core.set_priority(jid, arg)
            statements = [rows.job_row(job)]
        elif verb == "retry":
            core.retry(jid)
            self.announced.discard(jid)
            statements = rows.forget_failed(job) + [rows.job_row(child)
                                                    for child in dependencies.wait_again(core, jid)]
        elif verb == "remove":
            core.remove(jid)
            statements = rows.forget_job(jid, job.spec.tasks)
        for statement in statements:      # each its own commit: others wait for one slice
            await self.store.write([statement], bulk=verb in ("retry", "remove"))
        if verb == "remove":
            self.spool.remove_job(jid)
            self.announced.discard(jid)
            self.first_event.pop(jid, None)
            self.labour.task_texts.pop(jid, None)
            self.events.add(jid, f"job {jid} removed")
        else:
            self.events.add(jid, f"job {jid} {verb}" + (f" {arg}" if arg is not None else ""))
            self.job_event_if_finished(job)
        self.notify(jid)
        self.labour.dispatch()

    def job_event_if_finished(self, job: Job) -> None:
        """Announce a job's end once it is committed; its event stream ends there."""
        if job.finished and job.id not in self.announced:
            self.announced.add(job.id)
            self.events.add(job.id, f"job {job.id} {job.state_name}")
            self.parent_ended(job)

    def parent_ended(self, parent: Job) -> None:
        """The jobs that waited for `parent` run now, or are held if it failed."""
        statements = []
        for child, held in dependencies.parent_ended(self.core, parent.id):
            statements.append(rows.job_row(child))
            if held:
                self.events.add(child.id, f"job {child.id} held (its parent job {parent.id} "
                                f"{parent.state_name})")
            elif not child.waiting:
                self.events.add(child.id, f"job {child.id} queued (its parent jobs ended)")
            self.notify(child.id)
        if statements and self.labour.nursery is not None:
            self.labour.nursery.start_soon(self.store.write, statements)
        self.labour.dispatch()

    # ------------------------------------------------------------ views

    def stats_line(self) -> str:
        counts = [0] * len(STATE_NAMES)
        for job in self.core.jobs.values():
            for state, n in enumerate(job.counts):
                counts[state] += n
        slots = sum(self.core.workers[name].slots for name in self.labour.links)
        idle = sum(w.idle for w in self.core.workers.values())
        parts = [f"{name}={counts[i]}" for i, name in enumerate(STATE_NAMES)]
        return (f"jobs={len(self.core.jobs)} " + " ".join(parts) +
                f" workers={len(self.labour.links)} slots={slots} idle={idle}\n")

    def node_names(self) -> list[str]:
        return sorted(self.labour.links)

    def has_node(self, name: str) -> bool:
        return name in self.labour.links

    def draining(self) -> list[str]:
        return [name for name, w in self.core.workers.items() if w.draining]

    def node_index(self) -> str:
        return "".join(self.node_status(name) for name in sorted(self.labour.links))

    def node_status(self, name: str) -> str:
        link = self.node(name)
        worker = self.core.workers[name]
        a = worker.attrs
        state = "draining" if worker.draining else \
            worker.owner if worker.owner in ("suspended", "vacating") else \
            "paused" if worker.lease == 0 else "busy" if worker.running else "idle"
        held = len(worker.running)
        seen = trio.current_time() - link.last_seen
        free = worker.free()
        offers = " ".join(f"{what}={free[i]}/{worker.total[i] if worker.total[i] < UNLIMITED else '-'}"
                          for i, what in enumerate(("cpus", "memory", "disk", "gpus")))
        return (f"{name} {state} {offers} load={a.get('LoadAvg', '?')} os={a.get('OpSys', '?')} "
                f"arch={a.get('Arch', '?')} slots={worker.slots} lease={worker.lease} "
                f"running={held} seen={seen:.1f}s\n")

    def node(self, name: str) -> WorkerLink:
        link = self.labour.links.get(name)
        if link is None:
            raise LookupError(f"no node {name}")
        return link

    def node_ad(self, name: str) -> str:
        """The node's ad, with what it has free now beside what it offers."""
        worker = self.core.workers[self.node(name).name]
        free = worker.free()
        attrs = {**worker.attrs, "FreeCpus": free.cpus, "FreeGpus": free.gpus}
        if worker.total.memory < UNLIMITED:
            attrs["FreeMemory"] = free.memory
        if worker.total.disk < UNLIMITED:
            attrs["FreeDisk"] = free.disk
        return "".join(f"{k} = {literal(v)}\n" for k, v in sorted(attrs.items()))

    # ------------------------------------------------------------ users

    def user_names(self) -> list[str]:
        """Users with a share or a job (a pass over the jobs: for `ls`, not dispatch)."""
        return sorted(set(self.core.shares.users) | {j.owner for j in self.core.jobs.values()})

    def user_status(self, name: str) -> str:
        shares = self.core.shares
        share = shares.of(name) if name in shares.users else Share(name)
        queued = sum(j.queued for j in self.core.jobs.values() if j.owner == name and not j.held)
        now = shares.clock()
        return (f"{name} usage={shares.usage(share, now):.1f} factor={share.factor:g} "
                f"priority={share.factor * (0.5 + shares.usage(share, now)):.1f} "
                f"running={share.running} queued={queued}\n")

    def users_index(self) -> str:
        return "".join(self.user_status(name) for name in self.user_names())

    async def set_factor(self, name: str, factor: float) -> None:
        """An admin's priority factor for a user: 2 gets half the share of 1."""
        shares = self.core.shares
        shares.set_factor(name, factor)
        share = shares.of(name)
        shares.settle(share)
        await self.store.write([rows.user_row(share)])
        self.events.add(0, f"user {name} factor {factor:g}")
        self.labour.dispatch()

    async def keep_usage(self) -> None:
        """Save every user's usage now and then (a restart loses at most that)."""
        while True:
            await trio.sleep(self.config.usage_saved_every)
            shares = self.core.shares
            for share in shares.users.values():
                shares.settle(share)
            if shares.users:
                await self.store.write([rows.user_row(s) for s in shares.users.values()])

    def task_status(self, jid: int, index: int) -> str:
        job = self.core.job(jid)
        state = job.state[index]
        line = f"{index} {STATE_NAMES[state]}"
        if index in job.running:
            line += f" node={job.running[index]}"
        if index in job.copies:
            line += f" copies={','.join(job.copies[index])}"
        if index in job.evictions:
            line += f" evictions={job.evictions[index]}"
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
        return " ".join([node, *job.copies.get(index, [])]) + "\n" if node else ""


def keep_private(folder: Path) -> None:
    """The state folder is the scheduler's alone: others may only reach the socket
    in it (0711); the database, the spool and the data are unreadable to them,
    whatever umask made them (a folder of an earlier version included)."""
    os.chmod(folder, 0o711)
    for name in ("spool", "data"):
        os.chmod(folder / name, 0o700)
    for name in ("grid.db", "grid.db-wal", "grid.db-shm", "lock"):
        try:
            os.chmod(folder / name, 0o600)
        except FileNotFoundError:
            pass


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
