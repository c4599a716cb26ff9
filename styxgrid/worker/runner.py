"""The worker's side of its tasks: leased tasks started, in the order they came,
as soon as what they ask for fits in what the node has free (pool.py), each in
its sandbox and held to its requests (places.py), and the reports of the tasks
that ended.

The runner knows nothing of connections: it fetches inputs and sends output
through `over_link`, which runs an action on whichever connection is up, and it
leaves its reports in the outbox for the link to send.  It decides how many tasks
it wants to hold (`wanted_lease`) from how long the job's tasks take (policy.py).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

import trio

from .. import allowlist
from ..checks import shown
from ..exchange import Checkpoint, Done, Held, Vacated
from ..resources import Need, mib
from ..ninep.client import Client
from ..ninep.errors import NinePError
from . import checkpoints, limits, places, policy
from .config import WorkerConfig
from .outputs import last_output, send_outputs, upload_streams
from .accounts import task_users
from .keeper import Keeper
from .pool import Pool
from .process import Process
from .removal import remove_tree
from .sandbox import (InputCache, Sandboxes, TaskRun, folder_size, make_folder,
                      place_input)

log = logging.getLogger("styxgrid.worker")
T = TypeVar("T")
OverLink = Callable[[Callable[[Client], Awaitable[T]]], Awaitable[T]]
PLAIN_PATH = "/usr/local/bin:/usr/bin:/bin"      # a task's PATH when it runs as another user
OUTPUT_NOT_STORED = 125    # a task's status when it ran but an output of it was refused
RERUN_EVERY = 1.0          # seconds: a checkpoint exit's re-run starts at most this often
DISK_EVERY = 5.0           # seconds between looks at a running task's folder size


@dataclass(eq=False)
class Report:
    """What a finished task's report says (its last output, then its `done` line),
    and the task; or a `checkpoint` line of a task that goes on (not `final`)."""

    data: bytes
    run: TaskRun
    final: bool = True


class Runner:
    def __init__(self, config: WorkerConfig, workdir: str, over_link: OverLink,
                 offered: Need | None = None, gpus: tuple[str, ...] = ()) -> None:
        self.config = config
        self.over_link = over_link
        self.pool = Pool(offered or Need(config.slots), gpus)
        self.limits = limits.choose(config.limits, config.name, config.nice)
        self.room = trio.Event()                # fired when a task may start now
        self.users = task_users(config.task_users, config.name, config.slots)
        if self.users is not None:
            os.setgroups([])                  # tasks get no supplementary groups of root's
        self.sandboxes = Sandboxes(workdir, keep=2 * config.slots)
        self.inputs = InputCache(os.path.join(workdir, "inputs"))
        self.scratch = os.path.join(workdir, "scratch")       # checkpoints going and coming
        for folder in (self.inputs.root, self.scratch):
            remove_tree(folder)                               # an earlier run's
            os.mkdir(folder, 0o700)
        self.tasks: dict[tuple[int, int], TaskRun] = {}      # held: waiting, running, reported
        self.waiting_in, self.waiting_out = trio.open_memory_channel[TaskRun](math.inf)
        self.outbox: list[Report] = []          # reports for the next write
        self.outbox_ready = trio.Event()
        self.mean_run: dict[int, float] = {}    # per job: how long a task holds a slot
        self.lease = config.slots               # what we want to hold at once
        self.lease_told = 0                     # what the scheduler was last told
        self.paused = False                     # the owner is back: lease 0, start nothing
        self.suspended = False                  # the running tasks are stopped
        self.inline = config.inline_output      # output sent in a report, at most
        self.env = {k: os.environ[k] for k in config.passed_env if k in os.environ}
        if self.users is not None:              # not root's PATH
            self.env["PATH"] = PLAIN_PATH
        self.nursery: trio.Nursery | None = None
        # ends the tasks if this process is killed
        users = self.users
        self.keeper = Keeper([a.uid for a in users.pool], users.lock) if users else Keeper([])

    async def run(self) -> None:
        """The slots, until cancelled; however it ends, the tasks still running are
        killed with it."""
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                nursery.start_soon(self.starter)
                nursery.start_soon(self.watch_limits)
                if self.users is not None:
                    nursery.start_soon(self.users.sweep)
        finally:
            self.kill_all()
            self.limits.close()

    # ------------------------------------------------------------ the lease

    def wanted_lease(self) -> int:
        """How many tasks to hold: none while paused."""
        return 0 if self.paused else self.lease

    # ------------------------------------------------------------ the owner's say

    def hold(self, paused: bool) -> None:
        """While the owner is back: lease nothing and start nothing (owner.py)."""
        if paused == self.paused:
            return
        self.paused = paused
        if not paused:
            self.wake()
        self.outbox_ready.set()                 # the reporter says the new lease

    def working(self) -> int:
        """Tasks running and not suspended: the load this worker makes."""
        return 0 if self.suspended else self.running()

    def suspend(self) -> None:
        self.suspended = True
        self.signal_running(signal.SIGSTOP)

    def resume(self) -> None:
        self.suspended = False
        self.signal_running(signal.SIGCONT)

    def signal_running(self, sig: int) -> None:
        """Signal the running tasks: their process groups, and in a cgroup,
        their processes that left the group too."""
        for run in self.tasks.values():
            if run.running:
                self.signal_task(run, sig)

    @staticmethod
    def signal_task(run: TaskRun, sig: int) -> None:
        """A task's process group, and in a cgroup, its processes that left it."""
        if run.process is not None:
            run.process.signal(sig)
        if run.place is not None:
            run.place.signal(sig)

    async def vacate(self, grace: float) -> None:
        """Give every task back: those waiting here at once, the running ones after
        SIGTERM and up to `grace` seconds to end (then SIGKILL)."""
        self.suspended = False
        running = []
        for run in list(self.tasks.values()):
            if run.over or run.vacated:
                continue
            run.vacated = True
            if run.running:
                running.append(run)
            elif run.process is None and not run.sandbox:   # waiting for room: the
                self.post(run, -1, "")                      # starter passes it over
        self.wake()                             # a task waiting to start: pass it over
        for run in running:
            self.signal_task(run, signal.SIGCONT)
            self.signal_task(run, signal.SIGTERM)
        with trio.move_on_after(grace):
            for run in running:
                assert run.process is not None
                await run.process.ended.wait()
        for run in running:
            assert run.process is not None
            run.process.kill()

    def queued(self) -> int:
        """Leased tasks waiting here for a slot."""
        return self.waiting_in.statistics().current_buffer_used

    def report_due(self) -> bool:
        return policy.report_due(len(self.outbox), self.queued(), self.lease,
                                 self.config.slots, self.wanted_lease() != self.lease_told)

    def running(self) -> int:
        return sum(1 for run in self.tasks.values() if run.running)

    def take(self, run: TaskRun) -> None:
        """A leased task, to run when a slot is free."""
        self.tasks[(run.job, run.index)] = run
        self.waiting_in.send_nowait(run)

    def kill(self, job: int, index: int) -> None:
        run = self.tasks.get((job, index))
        if run is not None:
            run.killed = True
            self.wake()
            if run.process is not None:
                run.process.kill()

    def kill_all(self) -> None:
        for run in self.tasks.values():
            if run.process is not None:
                run.process.kill()

    def batch(self, room: int) -> list[Report]:
        """The next reports to send, as many as fit in a write of `room` bytes."""
        n = policy.batch([len(r.data) for r in self.outbox], room,
                         self.config.reports_per_write)
        taken = self.outbox[:n]
        del self.outbox[:n]
        return taken

    def reported(self, batch: list[Report], lease: int) -> None:
        """The scheduler has the batch (or refused it): its tasks are not ours."""
        self.lease_told = lease
        for r in batch:
            if r.final:
                self.forget(r.run)

    # ------------------------------------------------------------ one task

    def wake(self) -> None:
        """Something that a task waiting to start waits for has changed."""
        self.room.set()
        self.room = trio.Event()

    async def starter(self) -> None:
        """Start leased tasks in the order they came, each once what it asks for
        fits in what is free (tasks of one cpu on a node of K cpus: K slots).  A
        task already waiting whose request fits starts at once, with no pass of
        the run loop before it."""
        assert self.nursery is not None
        while True:
            try:
                run = self.waiting_out.receive_nowait()
            except trio.WouldBlock:
                run = await self.waiting_out.receive()
            if not self.queued():
                self.outbox_ready.set()
            need = run.spec.need
            if not self.pool.ever_fits(need):       # a scheduler sends none of these
                self.post(run, 127, f"it asks for {need.words()}; node {self.config.name} "
                          f"offers {self.pool.offer.words()}")
                continue
            while not run.killed and not run.vacated and (self.paused or
                                                          not self.pool.fits(need)):
                await self.room.wait()
            if run.killed:
                self.forget(run)
                continue
            if run.vacated:                     # given back while it waited here
                continue
            run.gpus = self.pool.take(need)
            self.nursery.start_soon(self.run_task, run)

    async def run_task(self, run: TaskRun) -> None:
        """One task, from its start to its report.  What it holds of the node is
        free again the moment its process ends: output still to upload goes up
        beside the next task, and the `done` is left to the reporter, which
        forgets the task once the scheduler has taken it."""
        try:
            if self.users is not None:
                run.account = await self.users.take(run.owner)
            run.sandbox = self.sandboxes.take(run.account)
            started = trio.current_time()
            tell = log.isEnabledFor(logging.DEBUG)         # -vv: each task, as key=value
            if tell:
                log.debug("job=%s task=%s started folder=%s", run.job, run.index,
                          shown(run.cwd))
            status, reason = await self.execute(run)
            if tell:
                log.debug("job=%s task=%s ended status=%s%s", run.job, run.index, status,
                          f" reason={shown(reason)!r}" if reason else "")
            self.pace(run.job, trio.current_time() - started)
        finally:
            if run.place is not None:
                self.limits.give_back(run.place)       # what it left in its cgroup ends
                run.place = None
            self.pool.give_back(run.spec.need, run.gpus)
            self.wake()
        if run.killed:
            self.forget(run)
            return
        if run.vacated and run.process is not None:
            await self.save_checkpoint(run)      # after SIGTERM: what it saved goes up
        if run.process is None or run.vacated or run.held:  # never started, or its files
            self.post(run, status, reason)                  # go with it: none are sent
            return
        output = None if run.spec.outputs else last_output(run, self.inline)
        if output is None:
            await self.finish(run, status, reason)
        else:
            self.post(run, status, reason, output)

    def pace(self, job: int, seconds: float) -> None:
        """Learn how long the job's tasks take and lease ahead accordingly (the
        scheduler leases ahead only tasks of the job last reported)."""
        known = self.mean_run.get(job)
        if known is None and len(self.mean_run) >= 64:
            self.mean_run.clear()
        mean = self.mean_run[job] = policy.mean_run(known, seconds)
        self.lease = policy.lease_for(self.config.slots, mean, self.config.lease_ahead,
                                      self.config.ahead_per_slot)

    def forget(self, run: TaskRun) -> None:
        if self.tasks.get((run.job, run.index)) is run:    # not a later lease of it
            del self.tasks[(run.job, run.index)]
        self.clear(run)

    def clear(self, run: TaskRun) -> None:
        """The task's folder (and its output files beside it) is free for the next
        task once the task is over and no upload of its output is in flight."""
        run.over = True
        if run.sandbox and not run.uploads:
            self.sandboxes.give_back(run.sandbox, run.account)
            run.sandbox = ""
            if run.account is not None and self.users is not None:
                self.users.give_back(run.account)
                run.account = None

    def task_env(self, run: TaskRun) -> dict[str, str]:
        env = dict(self.env)
        if run.account is not None:             # its user's name; a home it may write
            env.update(USER=run.account.name, LOGNAME=run.account.name, HOME=run.sandbox,
                       TMPDIR=run.sandbox)
        env.update(STYXGRID_JOB=str(run.job), STYXGRID_TASK=str(run.index),
                   STYXGRID_TASKS=str(run.tasks), STYXGRID_NODE=self.config.name,
                   STYXGRID_CHECKPOINT=checkpoints.folder(run),
                   STYXGRID_CPUS=str(run.spec.request_cpus))
        if self.pool.offer.gpus:                # only the GPUs it was given are seen
            env["CUDA_VISIBLE_DEVICES"] = env["STYXGRID_GPUS"] = ",".join(run.gpus)
        env.update((k, run.expand(v)) for k, v in run.spec.env)
        env.update(self.keeper.env)             # last: a job cannot unmark itself
        return env

    async def execute(self, run: TaskRun) -> tuple[int, str]:
        """Fetch the inputs, run the program, stream its output; (status, reason)."""
        spec, config = run.spec, self.config
        env = self.task_env(run)
        found = None if "/" in spec.cmd else shutil.which(spec.cmd, path=env.get("PATH"))
        program = allowlist.program_path(spec.cmd, run.cwd, found)
        if not allowlist.allowed(program, config.allow):
            return 126, (f"program {spec.cmd} is not allowed on node {config.name} "
                         f"(allowed: {' '.join(config.allow)})")
        if program is None:
            return 127, f"cannot run {spec.cmd}: not found on the task's PATH"
        if "/" in spec.cmd and not spec.cmd.startswith("/"):
            # the same file, named from the task's folder as the job names it (a
            # script's $0 reads ./sim, not the worker's path to its folder)
            program = "./" + os.path.relpath(program, run.cwd)
        try:
            await self.fetch_inputs(run)
            if run.checkpoint:
                await self.over_link(lambda client: checkpoints.restore(
                    client, run, self.scratch_for(run)))
            if run.vacated:
                return -1, ""
            argv = [spec.cmd, *(run.expand(a) for a in spec.args)]
            place = run.place = self.limits.take_for(spec.need)

            async def start(again: bool = False) -> Process:
                process = await place.spawn(lambda: Process(
                    program, argv, env, run.cwd, run.local("stdout"), run.local("stderr"),
                    config.nice, run.user, again, place))
                if self.suspended:              # the owner came back meanwhile
                    process.signal(signal.SIGSTOP)
                return process
            run.process = await start()

        except OSError as exc:
            return 127, f"cannot run {spec.cmd}: {exc.strerror or exc}"
        except NinePError as exc:
            return 127, f"cannot fetch inputs or checkpoint: {exc}"
        except Exception as exc:        # the worker never dies of a task: the task fails
            log.exception("job=%s task=%s cannot start", run.job, run.index)
            return 127, f"cannot start the task: {type(exc).__name__}: {str(exc)[:200]}"
        if run.killed:
            run.process.kill()
        status = await self.watch(run, start)
        if run.place is not None and run.place.over_memory() and not run.held \
                and not run.killed:     # the kernel killed it, or one of its processes
            run.held = places.over_memory_reason(spec.need)
        return status, ""

    async def watch(self, run: TaskRun, start: Callable[[bool], Awaitable[Process]]) -> int:
        """The task's exit status.  An exit with the job's `checkpoint_exit` saves
        the checkpoint and starts the task again here at once; with
        `checkpoint_every`, the task is asked to save (SIGUSR1) that often."""
        spec = run.spec
        while True:
            assert run.process is not None
            began = trio.current_time()
            if not spec.checkpoint_every:     # the usual: no nursery for a tiny task
                status = await run.process.wait()
            else:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.save_every, run, spec.checkpoint_every)
                    status = await run.process.wait()
                    nursery.cancel_scope.cancel()
            if not spec.checkpoint_exit or status != spec.checkpoint_exit or run.killed \
                    or run.vacated:
                return status
            await self.save_checkpoint(run)
            await trio.sleep_until(began + RERUN_EVERY)     # a task that only exits
            if run.killed or run.vacated:                   # does not loop flat out
                return status
            run.process = await start(True)

    async def save_every(self, run: TaskRun, seconds: int) -> None:
        while True:
            await trio.sleep(seconds)
            if run.process is not None and not self.suspended:
                run.process.signal(signal.SIGUSR1)
                await trio.sleep(checkpoints.SAVE_PAUSE)
                await self.save_checkpoint(run)

    def scratch_for(self, run: TaskRun) -> str:
        return os.path.join(self.scratch, f"{run.job}.{run.index}")

    async def save_checkpoint(self, run: TaskRun) -> None:
        """Upload the task's checkpoint folder (if it holds anything), and report
        it whole; one that cannot go up is logged, and the task goes on."""
        try:
            size = await self.over_link(lambda client: checkpoints.save(
                client, run, self.scratch_for(run), self.config.upload_piece))
        except (NinePError, OSError) as exc:
            log.warning("job=%s task=%s checkpoint not saved: %s", run.job, run.index, exc)
            return
        except Exception:       # the worker never dies of a task's folder
            log.exception("job=%s task=%s checkpoint not saved", run.job, run.index)
            return
        if size:
            record = Checkpoint(run.job, run.index, size).encode()
            self.outbox.append(Report(record, run, final=False))
            self.outbox_ready.set()

    async def fetch_inputs(self, run: TaskRun) -> None:
        """Make `dir` and copy the inputs into it (off the loop, as the task's
        user), from this worker's copy of the job's input, else from /data over
        whichever connection is up; never through a link (sandbox.py)."""
        if not run.spec.inputs:
            if run.spec.dir:
                await trio.to_thread.run_sync(make_folder, run.sandbox, run.spec.dir, run.user)
            return
        for named in run.spec.inputs:
            path = run.expand(named)
            kept = self.inputs.get(run.job, path)
            if kept is not None:
                data = await trio.to_thread.run_sync(_read, kept)
            else:
                data = await self.over_link(
                    lambda client: client.read_file(f"data/{path.lstrip('/')}"))
                if path == named:                         # the same for every task
                    await trio.to_thread.run_sync(self.inputs.put, run.job, path, data)
            name = os.path.basename(path)
            mode = 0o755 if os.path.basename(run.spec.cmd) == name else 0o644
            await trio.to_thread.run_sync(place_input, run.sandbox, run.spec.dir, name, data,
                                          mode, run.user)

    async def stream_output(self, client: Client) -> None:
        """Every `stream_interval`, send what running tasks wrote since last time (one
        loop for all tasks: a tiny task never pays for a timer of its own)."""
        while True:
            await trio.sleep(self.config.stream_interval)
            for run in list(self.tasks.values()):
                if run.running:
                    try:
                        await self.send_output(client, run)
                    except NinePError as exc:
                        log.info("job=%s task=%s output not sent: %s", run.job, run.index,
                                 exc)

    async def send_output(self, client: Client, run: TaskRun) -> None:
        """Send what the task wrote since last time; its folder stays till then."""
        run.uploads += 1
        try:
            await upload_streams(client, run, self.config.upload_piece)
        finally:
            run.uploads -= 1
            if run.over:
                self.clear(run)

    async def finish(self, run: TaskRun, status: int, reason: str) -> None:
        """Output and outputs, then the `done`.  Output the scheduler refuses (the
        task was given to another worker meanwhile) drops the report and the task;
        an output file it refuses fails the task with the reason (status 125)."""
        try:
            await self.over_link(lambda client: self.send_output(client, run))
        except NinePError as exc:
            log.warning("job=%s task=%s output refused: %s", run.job, run.index, exc)
            self.forget(run)
            return
        try:
            await self.over_link(lambda client: send_outputs(client, run,
                                                             self.config.upload_piece))
        except (NinePError, OSError) as exc:
            log.info("job=%s task=%s %s", run.job, run.index, exc)
            status, reason = OUTPUT_NOT_STORED, str(exc)
        self.post(run, status, reason)

    def post(self, run: TaskRun, status: int, reason: str, output: bytes = b"") -> None:
        """Put the task's report in the outbox: output not sent yet, then `done`."""
        self.clear(run)
        if run.vacated:                         # its output goes with it: it runs again
            record = Vacated(run.job, run.index, "the owner took the machine back").encode()
            output = b""
        elif run.held:
            record = Held(run.job, run.index, run.held).encode()
        else:
            record = Done(run.job, run.index, status, reason).encode()
        self.outbox.append(Report(output + record, run))
        if self.report_due():
            self.outbox_ready.set()


    async def watch_limits(self) -> None:
        """Every POLL seconds: with rlimits, the memory of each running task's
        process group; every DISK_EVERY, the size of its folder.  A task past its
        request is stopped, to be held with the reason."""
        checked = trio.current_time()
        while True:
            await trio.sleep(places.POLL)
            disk = trio.current_time() - checked >= DISK_EVERY
            if disk:
                checked = trio.current_time()
            for run in [r for r in self.tasks.values() if r.running and not r.held]:
                need = run.spec.need
                if self.limits.kind == "rlimit" and run.process is not None:
                    used = await trio.to_thread.run_sync(places.group_memory, run.process.pid)
                    if used > need.memory << 20:
                        self.stop_held(run, places.over_memory_reason(need, used >> 20))
                        continue
                if disk and run.sandbox:
                    size = await trio.to_thread.run_sync(task_disk, run, (need.disk + 1) << 20)
                    if size > need.disk << 20 and run.running:
                        self.stop_held(run, f"used more than {mib(size >> 20)} of disk, past "
                                       f"its {mib(need.disk)} request, and was stopped: "
                                       "raise request_disk and release it")

    def stop_held(self, run: TaskRun, reason: str) -> None:
        log.info("job=%s task=%s stopped: %s", run.job, run.index, reason)
        run.held = reason
        if run.process is not None:
            run.process.kill()
        if run.place is not None:
            run.place.signal(signal.SIGKILL)


def task_disk(run: TaskRun, stop: int) -> int:
    """Bytes the task takes on disk: its folder, and its output and error files
    beside it (a task writing without end to its output fills the disk too)."""
    total = 0
    for stream in ("stdout", "stderr"):
        try:
            total += os.stat(run.local(stream)).st_blocks * 512
        except OSError:
            continue
    return total + folder_size(run.sandbox, stop - total)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
