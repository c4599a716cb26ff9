"""The worker agent: one persistent connection out, a lease of tasks, K slots.

One read of /work is always waiting on the connection; the scheduler answers it
with as many tasks as the worker has room for under its lease (tasks held at once,
running or waiting their turn here).  K slot loops run the waiting tasks one after
another.  While tasks are short the worker leases a little ahead (about
LEASE_AHEAD seconds of work) and reports finished tasks in batches, so one message
each way carries many tasks; while they are long it leases no more than it has
slots, so no task waits here while another node idles.

Slots and tasks live in the worker's own nursery, not in the connection's: when
the scheduler goes away the tasks go on running, the agent dials again with
backoff, names the tasks it still holds in its `join` (the scheduler takes them
back), and reports them on the new connection.  A task is kept (and named in a
`join`) until the scheduler has taken its report.
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import math
import os
import pwd
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, TypeVar

import trio

from ..errgroups import leaves, sole
from ..ninep.client import Client, ConnectionLost, File, open_client
from ..ninep.errors import NinePError
from ..ninep.messages import OREAD, ORDWR, OWRITE
from ..security.dial import dial
from ..security.identity import Identity
from ..describe import JobSpec
from ..exchange import (REPLACED, STREAMS, Done, ExchangeError, Heartbeat, Join, Lease, Output,
                        parse_orders, parse_tasks)
from .ad import machine_ad
from .process import Process

log = logging.getLogger("styxgrid.worker")
T = TypeVar("T")

PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "USER", "LOGNAME", "TZ")
STREAM_INTERVAL = 0.25      # how often a running task's new output is sent
LEASE_AHEAD = 0.05          # seconds of work leased beyond the slots, when tasks are short
AHEAD_PER_SLOT = 8          # and at most this many tasks per slot
INLINE_OUTPUT = 64 * 1024   # a finished task's output up to this size goes in its report
LOAD_WINDOW = 60.0          # seconds: the kernel's 1-minute load average
REPORTS_PER_WRITE = 512
UPLOAD_PIECE = 1 << 20      # bytes of an output file read (off the loop) and sent at once
OUTPUT_NOT_STORED = 125    # a task's status when it ran but an output of it was refused


def open_output(folder: str, path: str) -> int:
    """An output file of the task, opened for reading: a regular file whose real
    path is inside the task's folder (no symbolic link out of it, no FIFO or
    device that would hold the worker)."""
    local = os.path.join(folder, path)
    real, inside = os.path.realpath(local), os.path.realpath(folder)
    if not os.path.lexists(local):
        raise FileNotFoundError(local)
    if not real.startswith(inside + os.sep):
        raise OSError(errno.EPERM, "it leads outside the task's folder")
    fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EPERM, "it is not a regular file")
    return fd


async def upload(client: Client, fd: int, remote: str) -> None:
    """Copy an open local file to `remote` (made or truncated), a piece at a time."""
    f = await client.open_or_create(remote)
    async with f:
        offset = 0
        while chunk := await trio.to_thread.run_sync(os.pread, fd, UPLOAD_PIECE, offset,
                                                     abandon_on_cancel=True):
            offset += await f.pwrite(offset, chunk)


class Replaced(Exception):
    """A newer worker joined under this worker's name: this one stops (the
    scheduler's message says so); rejoining would only evict that one in turn."""


class JoinRefused(Exception):
    """The scheduler answered the join and refused it (a bad name, slots out of
    range, another's name): asking again would get the same answer."""


@dataclass
class WorkerConfig:
    scheduler: str
    name: str
    slots: int = 1
    workdir: str = ""
    attrs: dict[str, Any] = field(default_factory=dict)
    nice: int = 10
    heartbeat: float = 3.0
    identity: Identity | None = None          # TLS certificate for a TCP scheduler
    allow: tuple[str, ...] = ()               # globs of programs this node runs (all if none)
    run_as: str | None = None                 # started as root: run tasks as this user
    max_load: float | None = None             # take tasks only while others' load is below


@dataclass(eq=False)
class Link:
    """The current connection: its client and its control fid on /work."""

    client: Client
    ctl: File


@dataclass(eq=False)
class TaskRun:
    job: int
    index: int
    tasks: int
    spec: JobSpec
    sandbox: str = ""                         # given when a slot starts it
    process: Process | None = None
    killed: bool = False
    sent: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})
    uploads: int = 0                          # output uploads in flight: keep the folder
    over: bool = False                        # ended and reported: the folder may go

    def expand(self, text: str) -> str:
        """$STYXGRID_TASK / $STYXGRID_JOB in args and file names, like Condor's $(Process)."""
        for name, value in (("STYXGRID_TASK", self.index), ("STYXGRID_JOB", self.job)):
            text = text.replace("${" + name + "}", str(value)).replace("$" + name, str(value))
        return text

    @property
    def cwd(self) -> str:
        return self.spec.dir or self.sandbox

    def local(self, stream: str) -> str:
        """Where the task's stdout/stderr go: beside its sandbox, not in it."""
        return f"{self.sandbox}.{stream}"


class TaskParser:
    """Reads the records of a lease, `task J T N SIZE` + SIZE bytes of description;
    a job's description is parsed once."""

    def __init__(self, keep: int = 64) -> None:
        self.specs: dict[bytes, JobSpec] = {}
        self.keep = keep

    def parse(self, data: bytes) -> list[tuple[int, int, int, JobSpec]]:
        out = []
        try:
            records = parse_tasks(data)
        except ExchangeError as exc:
            raise NinePError(f"from the scheduler: {exc}") from None
        for r in records:
            spec = self.specs.get(r.description)
            if spec is None:
                if len(self.specs) >= self.keep:
                    self.specs.clear()
                spec = self.specs[r.description] = JobSpec.from_lines(r.description.decode())
            out.append((r.job, r.task, r.tasks, spec))
        return out


class Sandboxes:
    """Task folders, emptied and reused: making and deleting a folder per task costs
    more than a tiny task does.  A reused folder is empty, as a fresh one is."""

    def __init__(self, root: str, keep: int, owner: tuple[int, int] | None = None) -> None:
        self.root = root
        self.keep = keep
        self.owner = owner                    # the tasks' user, when it is not ours
        self.free: list[str] = []

    def take(self) -> str:
        if self.free:
            return self.free.pop()
        path = tempfile.mkdtemp(prefix="task.", dir=self.root)
        if self.owner is not None:
            os.chown(path, *self.owner)
        return path

    def chown(self, path: str) -> None:
        """A file the worker put in a sandbox (an input) belongs to the task's user."""
        if self.owner is not None:
            os.chown(path, *self.owner)

    def give_back(self, path: str) -> None:
        try:
            with os.scandir(path) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        raise IsADirectoryError(entry.path)
                    os.unlink(entry.path)
        except OSError:
            shutil.rmtree(path, ignore_errors=True)
            return
        if len(self.free) < self.keep:
            self.free.append(path)
        else:
            os.rmdir(path)
            for stream in STREAMS:
                try:
                    os.unlink(f"{path}.{stream}")
                except FileNotFoundError:
                    pass


class InputCache:
    """A job's inputs, fetched once per worker: every task of the job here gets a
    copy of the same file, as Condor sends a job's input files once.  An input
    named per task ($STYXGRID_TASK) is not kept.  Files of the last `keep` jobs
    are kept; older ones are deleted."""

    def __init__(self, root: str, keep: int = 8) -> None:
        self.root = root
        self.keep = keep
        self.files: dict[tuple[int, str], str] = {}     # (job, path in /data) -> here
        self.jobs: list[int] = []                       # least recently used first

    def get(self, job: int, path: str) -> str | None:
        return self.files.get((job, path))

    def put(self, job: int, path: str, data: bytes) -> str:
        if job in self.jobs:
            self.jobs.remove(job)
        self.jobs.append(job)
        while len(self.jobs) > self.keep:
            old = self.jobs.pop(0)
            shutil.rmtree(os.path.join(self.root, str(old)), ignore_errors=True)
            self.files = {k: v for k, v in self.files.items() if k[0] != old}
        folder = os.path.join(self.root, str(job))
        os.makedirs(folder, exist_ok=True)
        fd, local = tempfile.mkstemp(dir=folder, suffix="." + os.path.basename(path))
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        self.files[(job, path)] = local
        return local


@dataclass(eq=False)
class Report:
    """What a finished task's report says (its last output, then its `done` line),
    and the task."""

    data: bytes
    run: "TaskRun"


def task_user(run_as: str | None) -> tuple[int, int] | None:
    """Whom tasks run as: a worker started as root runs them as `run_as` (default
    nobody) and never as root; any other worker runs them as itself."""
    if os.geteuid() != 0:
        if run_as not in (None, pwd.getpwuid(os.geteuid()).pw_name):
            raise ValueError(f"--run-as {run_as} needs the worker to be started as root")
        return None
    try:
        entry = pwd.getpwnam(run_as or "nobody")
    except KeyError:
        raise ValueError(f"--run-as: no user {run_as or 'nobody'}") from None
    if entry.pw_uid == 0:
        raise ValueError("refusing to run tasks as root: give --run-as an unprivileged user")
    return entry.pw_uid, entry.pw_gid


class Worker:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.workdir = os.path.abspath(config.workdir or os.path.join(
            tempfile.gettempdir(), f"styxgrid-worker-{config.name}"))
        os.makedirs(self.workdir, exist_ok=True)
        self.run_as = task_user(config.run_as)
        if self.run_as is not None:
            os.setgroups([])                  # tasks get no supplementary groups of root's
        self.sandboxes = Sandboxes(self.workdir, keep=2 * config.slots, owner=self.run_as)
        self.inputs = InputCache(os.path.join(self.workdir, "inputs"))
        shutil.rmtree(self.inputs.root, ignore_errors=True)      # an earlier run's
        self.parser = TaskParser()
        self.outbox: list[Report] = []          # reports for the next write
        self.outbox_ready = trio.Event()
        self.tasks: dict[tuple[int, int], TaskRun] = {}      # held: waiting, running, reported
        self.waiting_in, self.waiting_out = trio.open_memory_channel[TaskRun](math.inf)
        self.mean_run: dict[int, float] = {}    # per job: how long a task holds a slot
        self.lease = config.slots               # what we want to hold at once
        self.lease_told = 0                     # what the scheduler was last told
        self.inline = INLINE_OUTPUT             # output sent in a report, at most
        self.own_load = 0.0                     # our running tasks, averaged like the load
        self.paused = self.owner_busy()         # the owner's machine is busy: lease 0
        self.link: Link | None = None
        self.linked = trio.Event()
        self.nursery: trio.Nursery | None = None
        self.ad = machine_ad(config.name, config.slots, config.attrs)
        self.env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}

    # ------------------------------------------------------------ the connection

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the grid until cancelled, dialling again whenever the link drops.
        However it ends, the tasks it still runs are killed with it."""
        try:
            await self.serve(task_status)
        finally:
            for held in self.tasks.values():
                if held.process is not None:
                    held.process.kill()

    async def serve(self, task_status: trio.TaskStatus) -> None:
        backoff = 0.05
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            for _ in range(self.config.slots):
                nursery.start_soon(self.slot)
            while True:
                try:
                    await self.connect(task_status)
                    backoff = 0.05
                except* (ConnectionLost, OSError, NinePError, trio.BrokenResourceError,
                         trio.TooSlowError) as lost:
                    replaced = lost.subgroup(lambda e: isinstance(e, NinePError) and
                                             e.ename.startswith(REPLACED))
                    if replaced is not None:
                        raise Replaced(leaves(replaced)[0].args[0]) from None
                    log.warning("worker %s: %s: %s; dialling again in %.1fs",
                                self.config.name, self.config.scheduler,
                                sole(lost.exceptions[0]), backoff)
                task_status = trio.TASK_STATUS_IGNORED
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def join(self) -> Join:
        self.ad["LoadAvg"] = round(os.getloadavg()[0], 2)
        return Join(self.config.name, self.config.slots, self.wanted_lease(),
                    tuple(self.ad.items()), tuple(self.tasks))

    async def connect(self, task_status: trio.TaskStatus) -> None:
        stream, uname = await dial(self.config.scheduler, self.config.identity)
        async with open_client(stream, uname=uname, aname="worker") as client:
            ctl = await client.open("work", ORDWR)
            lease = self.wanted_lease()
            try:
                await ctl.pwrite(0, self.join().encode())
            except NinePError as exc:
                raise JoinRefused(f"{self.config.scheduler} refused the join: {exc.ename}") \
                    from None
            self.lease_told = lease
            self.inline = min(INLINE_OUTPUT, ctl.iounit // 4)
            self.link = Link(client, ctl)
            self.linked.set()
            task_status.started()
            log.info("worker %s joined %s", self.config.name, self.config.scheduler)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.heartbeats, ctl)
                    nursery.start_soon(self.commands, ctl)
                    nursery.start_soon(self.stream_output, client)
                    nursery.start_soon(self.reporter, ctl)
                    nursery.start_soon(self.leaser, client)
            finally:
                self.link = None
                self.linked = trio.Event()

    async def heartbeats(self, ctl: File) -> None:
        """Say we are alive; look at the owner's load, and pause or resume leasing."""
        decay = math.exp(-self.config.heartbeat / LOAD_WINDOW)
        while True:
            await trio.sleep(self.config.heartbeat)
            running = sum(1 for run in self.tasks.values()
                          if run.process is not None and run.process.status is None)
            self.own_load = self.own_load * decay + running * (1 - decay)
            await ctl.pwrite(0, Heartbeat(os.getloadavg()[0]).encode())
            paused = self.owner_busy()
            if paused != self.paused:
                self.paused = paused
                log.info("worker %s: %s", self.config.name,
                         "owner's machine busy: pausing" if paused else "resuming")
                self.outbox_ready.set()              # the reporter says the new lease

    def owner_busy(self) -> bool:
        """The owner's say: with --max-load, whether the load not from our own tasks
        (the 1-minute load average less our running tasks, averaged alike) is at or
        above it."""
        if self.config.max_load is None:
            return False
        return os.getloadavg()[0] - self.own_load >= self.config.max_load

    def wanted_lease(self) -> int:
        """How many tasks to hold: none while paused."""
        return 0 if self.paused else self.lease

    def report_due(self) -> bool:
        """Reports go in batches of about half the tasks leased ahead, and at once
        when no task waits here (the last ones of a job, or a long task's); a new
        lease goes at once."""
        if self.wanted_lease() != self.lease_told:
            return True
        batch = max(1, (self.lease - self.config.slots) // 2)
        return bool(self.outbox) and (len(self.outbox) >= batch or not self.queued())

    def queued(self) -> int:
        """Leased tasks waiting here for a slot."""
        return self.waiting_in.statistics().current_buffer_used

    async def reporter(self, ctl: File) -> None:
        """Send the due reports in one write (as many as fit), with a `lease` line
        when the wanted lease changed: while one batch is committed the next one
        gathers.  Their tasks are forgotten once the scheduler has them.  A batch
        cut off by a lost connection is sent again on the next one (the scheduler
        ignores a report it already has); till then its tasks are still ours, and
        `join` names them."""
        while True:
            while not self.report_due():
                self.outbox_ready = trio.Event()
                await self.outbox_ready.wait()
            batch, size, room = [], 0, ctl.iounit - 64
            for r in self.outbox[:REPORTS_PER_WRITE]:
                if batch and size + len(r.data) > room:
                    break
                batch.append(r)
                size += len(r.data)
            del self.outbox[:len(batch)]
            lease = self.wanted_lease()
            head = Lease(lease).encode() if lease != self.lease_told else b""
            try:
                await ctl.pwrite(0, head + b"".join(r.data for r in batch))
            except NinePError as exc:       # not taken: a lost worker states it in its join
                log.warning("worker %s: reports of %s refused: %s", self.config.name,
                            " ".join(f"{r.run.job}.{r.run.index}" for r in batch), exc)
            except BaseException:
                self.outbox[:0] = batch
                raise
            self.lease_told = lease
            for r in batch:
                self.forget(r.run)

    async def commands(self, ctl: File) -> None:
        """The scheduler's orders: `kill J T`."""
        while True:
            try:
                orders = parse_orders(await ctl.pread(0, ctl.iounit))
            except ExchangeError as exc:
                raise NinePError(f"from the scheduler: {exc}") from None
            for order in orders:
                run = self.tasks.get((order.job, order.task))
                if run is not None:
                    run.killed = True
                    if run.process is not None:
                        run.process.kill()

    async def leaser(self, client: Client) -> None:
        """Keep one read of /work waiting: the scheduler answers it whenever this
        worker has room under its lease and tasks for it are queued."""
        f = await client.open("work", OREAD)
        async with f:
            while True:
                data = await f.pread(0, f.iounit)
                for job, index, tasks, spec in self.parser.parse(data):
                    run = self.tasks[(job, index)] = TaskRun(job, index, tasks, spec)
                    self.waiting_in.send_nowait(run)

    async def current_link(self) -> Link:
        while self.link is None:
            await self.linked.wait()
        return self.link

    async def over_link(self, action: Callable[[Client], Awaitable[T]]) -> T:
        """`action` on whichever connection is up; on the next one if that is lost."""
        while True:
            client = (await self.current_link()).client
            try:
                return await action(client)
            except ConnectionLost:
                await trio.sleep(0.05)

    # ------------------------------------------------------------ one task

    async def slot(self) -> None:
        """Run leased tasks one after another.  The slot is free again the moment a
        task's process ends: output still to upload goes up beside the next task,
        and the `done` is left to the reporter, which forgets the task once the
        scheduler has taken it.  A task already waiting starts at once, with no
        pass of the run loop before it."""
        while True:
            try:
                run = self.waiting_out.receive_nowait()
            except trio.WouldBlock:
                run = await self.waiting_out.receive()
            if not self.queued():
                self.outbox_ready.set()
            if run.killed:
                self.forget(run)
                continue
            run.sandbox = self.sandboxes.take()
            started = trio.current_time()
            status, reason = await self.execute(run)
            self.pace(run.job, trio.current_time() - started)
            if run.killed:
                self.forget(run)
                continue
            output = None if run.spec.outputs else self.last_output(run)
            if output is None:
                assert self.nursery is not None
                self.nursery.start_soon(self.finish, run, status, reason)
            else:
                self.post(run, status, reason, output)

    def pace(self, job: int, seconds: float) -> None:
        """Learn how long the job's tasks take and lease ahead accordingly (the
        scheduler leases ahead only tasks of the job last reported): about
        LEASE_AHEAD seconds of work, a power of two so that the lease changes
        seldom, and none once tasks take longer than that."""
        known = self.mean_run.get(job)
        if known is None and len(self.mean_run) >= 64:
            self.mean_run.clear()
        mean = self.mean_run[job] = seconds if known is None else 0.9 * known + 0.1 * seconds
        slots = self.config.slots
        ahead = min(AHEAD_PER_SLOT * slots, int(LEASE_AHEAD * slots / max(mean, 1e-6)))
        self.lease = slots + (1 << (ahead.bit_length() - 1) if ahead else 0)

    def forget(self, run: TaskRun) -> None:
        if self.tasks.get((run.job, run.index)) is run:    # not a later lease of it
            del self.tasks[(run.job, run.index)]
        self.clear(run)

    def clear(self, run: TaskRun) -> None:
        """The task's folder (and its output files beside it) is free for the next
        task once the task is over and no upload of its output is in flight."""
        run.over = True
        if run.sandbox and not run.uploads:
            self.sandboxes.give_back(run.sandbox)
            run.sandbox = ""

    def task_env(self, run: TaskRun) -> dict[str, str]:
        env = dict(self.env)
        env.update(STYXGRID_JOB=str(run.job), STYXGRID_TASK=str(run.index),
                   STYXGRID_TASKS=str(run.tasks), STYXGRID_NODE=self.config.name)
        env.update((k, run.expand(v)) for k, v in run.spec.env)
        return env

    def allowed(self, run: TaskRun, env: dict[str, str]) -> bool:
        """The owner's say: with --allow globs, only programs matching one run
        (the program as named, or its resolved path)."""
        if not self.config.allow:
            return True
        cmd = run.spec.cmd
        resolved = os.path.normpath(os.path.join(run.cwd, cmd)) if "/" in cmd else \
            (shutil.which(cmd, path=env.get("PATH")) or cmd)
        return any(fnmatch.fnmatchcase(name, glob) for glob in self.config.allow
                   for name in (cmd, resolved))

    async def execute(self, run: TaskRun) -> tuple[int, str]:
        """Fetch the inputs, run the program, stream its output; (status, reason)."""
        spec = run.spec
        env = self.task_env(run)
        if not self.allowed(run, env):
            return 126, (f"program {spec.cmd} is not allowed on node {self.config.name} "
                         f"(allowed: {' '.join(self.config.allow)})")
        try:
            await self.fetch_inputs(run)
            argv = [spec.cmd, *(run.expand(a) for a in spec.args)]
            run.process = Process(argv, env, run.cwd, run.local("stdout"),
                                  run.local("stderr"), self.config.nice, self.run_as)
        except OSError as exc:
            return 127, f"cannot run {spec.cmd}: {exc.strerror or exc}"
        except NinePError as exc:
            return 127, f"cannot fetch inputs: {exc}"
        except Exception as exc:        # the worker never dies of a task: the task fails
            log.exception("task %s.%s cannot start", run.job, run.index)
            return 127, f"cannot start the task: {type(exc).__name__}: {str(exc)[:200]}"
        if run.killed:
            run.process.kill()
        return await run.process.wait(), ""

    async def fetch_inputs(self, run: TaskRun) -> None:
        """Copy the inputs into the task's folder: from this worker's copy of the
        job's input, else from /data over whichever connection is up."""
        for named in run.spec.inputs:
            path = run.expand(named)
            kept = self.inputs.get(run.job, path)
            local = os.path.join(run.cwd, os.path.basename(path))
            if kept is not None:
                shutil.copyfile(kept, local)
            else:
                data = await self.over_link(
                    lambda client: client.read_file(f"data/{path.lstrip('/')}"))
                if path == named:                         # the same for every task
                    self.inputs.put(run.job, path, data)
                with open(local, "wb") as f:
                    f.write(data)
            self.sandboxes.chown(local)
            if os.path.basename(run.spec.cmd) == os.path.basename(path):
                os.chmod(local, 0o755)

    async def stream_output(self, client: Client) -> None:
        """Every STREAM_INTERVAL, send what running tasks wrote since last time (one
        loop for all tasks: a tiny task never pays for a timer of its own)."""
        while True:
            await trio.sleep(STREAM_INTERVAL)
            for run in list(self.tasks.values()):
                if run.process is not None and run.process.status is None:
                    try:
                        await self.send_output(client, run)
                    except NinePError as exc:
                        log.info("task %s.%s: output not sent: %s", run.job, run.index, exc)

    async def send_output(self, client: Client, run: TaskRun) -> None:
        """Send what the task wrote since last time, at the same offsets."""
        run.uploads += 1
        try:
            await self.upload_streams(client, run)
        finally:
            run.uploads -= 1
            if run.over:
                self.clear(run)

    async def upload_streams(self, client: Client, run: TaskRun) -> None:
        for stream in STREAMS:
            try:
                size = os.stat(run.local(stream)).st_size
            except FileNotFoundError:
                continue
            if size <= run.sent[stream]:
                continue
            remote = await client.open(f"jobs/{run.job}/tasks/{run.index}/{stream}", OWRITE)
            async with remote:
                with open(run.local(stream), "rb") as f:
                    f.seek(run.sent[stream])
                    while run.sent[stream] < size:
                        chunk = f.read(min(remote.iounit, size - run.sent[stream]))
                        if not chunk:
                            break
                        run.sent[stream] += await remote.pwrite(run.sent[stream], chunk)

    async def send_outputs(self, client: Client, run: TaskRun) -> None:
        """Each output the task left, a regular file inside its folder, sent in
        pieces read off the event loop (a task decides what its files are)."""
        for path in run.spec.outputs:
            name = os.path.basename(run.expand(path))
            try:
                fd = open_output(run.cwd, run.expand(path))
            except FileNotFoundError:
                continue                          # not left: not an error
            except OSError as exc:
                raise OSError(f"output {name} not sent: {exc.strerror or exc}") from None
            try:
                await upload(client, fd, f"jobs/{run.job}/outputs/{name}")
            except NinePError as exc:
                raise NinePError(f"output {name} not stored: {exc.ename}") from None
            except OSError as exc:
                raise OSError(f"output {name} not read: {exc.strerror or exc}") from None
            finally:
                os.close(fd)

    def last_output(self, run: TaskRun) -> bytes | None:
        """The ended task's output not sent yet, as `output J T STREAM OFFSET SIZE`
        records for its report; None when there is more than fits a report (then
        it goes up as files)."""
        records, total = [], 0
        for stream in STREAMS:
            start, path = run.sent[stream], run.local(stream)
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:
                continue
            if size <= start:
                continue
            total += size - start
            if total > self.inline:
                return None
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                chunk = os.pread(fd, size - start, start)
            finally:
                os.close(fd)
            records.append(Output(run.job, run.index, stream, start, chunk).encode())
        return b"".join(records)

    async def finish(self, run: TaskRun, status: int, reason: str) -> None:
        """Output and outputs, then the `done`.  Output the scheduler refuses (the
        task was given to another worker meanwhile) drops the report and the task;
        an output file it refuses fails the task with the reason (status 125)."""
        try:
            await self.over_link(lambda client: self.send_output(client, run))
        except NinePError as exc:
            log.warning("task %s.%s: output refused: %s", run.job, run.index, exc)
            self.forget(run)
            return
        try:
            await self.over_link(lambda client: self.send_outputs(client, run))
        except (NinePError, OSError) as exc:
            log.info("task %s.%s: %s", run.job, run.index, exc)
            status, reason = OUTPUT_NOT_STORED, str(exc)
        self.post(run, status, reason)

    def post(self, run: TaskRun, status: int, reason: str, output: bytes = b"") -> None:
        """Put the task's report in the outbox: output not sent yet, then `done`."""
        self.clear(run)
        done = Done(run.job, run.index, status, reason).encode()
        self.outbox.append(Report(output + done, run))
        if self.report_due():
            self.outbox_ready.set()
