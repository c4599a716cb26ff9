"""cgroup v1 (`cgroup1`): a cgroup per place in the memory, cpu and pids
hierarchies, under the worker's own.  A thread of the worker lives in the
place's cgroups (v1 lets a thread be in other cgroups than its process) and
spawns the place's tasks, which are born there: no process of a task ever runs
outside it, and no spawn pays for a move between cgroups.
memory.limit_in_bytes is the request (and memory+swap too): the kernel stops a
task that goes past it, and the place's oom_kill count says so.
cpu.cfs_quota_us is the request's cpus and cpu.shares the weight of its cpus
at the worker's nice value (the worker's cgroup of places weighs one process of
that nice value, however many cpus the node has: a busy task on one cpu would
otherwise carry the weight of them all); pids.max bounds forks.  What is left
to pay is the switch to the place's thread and back for each spawn.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Callable

import outcome

from ..resources import Need
from .places import (CPU_PERIOD, PIDS_MAX, CgroupPlace, Limits, MiB, T, clear_stale,
                     counter, cpu_shares, own_cgroups, read_file, remove_cgroup, tag_of, write_file)

V1 = "/sys/fs/cgroup"
V1_CONTROLLERS = ("memory", "cpu", "pids")


class V1Place(CgroupPlace):
    """A place of cgroup v1 with a thread of the worker's that lives in it: the
    tasks it spawns are born there.  (Moving a thread in and out around every
    spawn costs more than the spawn while other processes fork and exit: each
    move waits for them, on the kernel's lock of every process's cgroups.)"""

    def __init__(self, dirs: dict[str, str], nice: int) -> None:
        self.dirs = dirs
        self.nice = nice
        for folder in dirs.values():
            os.makedirs(folder, exist_ok=True)
        self.pids_max = f"{dirs['pids']}/pids.max"
        write_file(self.pids_max, str(PIDS_MAX))
        self.jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        entered = queue.SimpleQueue[BaseException | None]()
        self.thread = threading.Thread(target=self.serve, args=(entered,), daemon=True,
                                       name=f"spawns in {os.path.basename(dirs['pids'])}")
        self.thread.start()
        failed = entered.get()
        self.resident = 1                     # our thread, in pids.current
        if failed is not None:
            self.thread.join()
            raise failed
        self.memsw = os.path.exists(f"{dirs['memory']}/memory.memsw.limit_in_bytes")
        # read after every task (open once: a read at 0 of an open file is fresh)
        self.oom_control = os.open(f"{dirs['memory']}/memory.oom_control",
                                   os.O_RDONLY | os.O_CLOEXEC)
        self.pids_current = os.open(f"{dirs['pids']}/pids.current", os.O_RDONLY | os.O_CLOEXEC)
        self.usage = os.open(f"{dirs['memory']}/memory.usage_in_bytes", os.O_RDONLY | os.O_CLOEXEC)
        self.stat = f"{dirs['memory']}/memory.stat"
        self.memory = 1 << 50                 # MiB: a new cgroup has no limit
        self.cpus = -1
        self.kills = self.oom_kills()

    def prepare(self, need: Need) -> None:
        memory = self.dirs["memory"]
        if need.memory != self.memory:
            value = str(need.memory * MiB)
            # memory+swap is never below memory: which goes first depends on the way
            # (and on what an earlier worker of this name left: one order fails)
            files = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"] if self.memsw \
                else ["memory.limit_in_bytes"]
            if need.memory > self.memory:
                files.reverse()
            try:
                for name in files:
                    write_file(f"{memory}/{name}", value)
            except OSError:
                for name in reversed(files):
                    write_file(f"{memory}/{name}", value)
            self.memory = need.memory
        if need.cpus != self.cpus:
            write_file(f"{self.dirs['cpu']}/cpu.cfs_period_us", str(CPU_PERIOD))
            write_file(f"{self.dirs['cpu']}/cpu.cfs_quota_us", str(need.cpus * CPU_PERIOD))
            write_file(f"{self.dirs['cpu']}/cpu.shares", str(cpu_shares(self.nice, need.cpus)))
            self.cpus = need.cpus

    def serve(self, entered: "queue.SimpleQueue[BaseException | None]") -> None:
        """The place's thread: into the place's cgroups once, then spawn there."""
        try:
            tid = str(threading.get_native_id())
            for folder in self.dirs.values():
                write_file(f"{folder}/tasks", tid)
        except OSError as exc:
            entered.put(exc)
            return
        entered.put(None)
        while (job := self.jobs.get()) is not None:
            job()

    async def spawn(self, start: Callable[[], T]) -> T:
        """Spawn in the place's thread and wait for it, blocking: the spawn holds
        the interpreter's lock while the child execs anyway, and two thread
        switches cost less than waking the event loop from the thread."""
        done = threading.Lock()
        done.acquire()
        result: list[outcome.Outcome[T]] = []

        def job() -> None:
            result.append(outcome.capture(start))
            done.release()
        self.jobs.put(job)
        done.acquire()
        return result[0].unwrap()

    def oom_kills(self) -> int:
        return counter(os.pread(self.oom_control, 4096, 0).decode(), "oom_kill")

    def pids(self) -> list[int]:
        """The task's processes (not the worker, whose spawning thread is here).
        Asked after every task: the usual answer, none, costs one read of a
        counter instead of the list (which the kernel builds and sorts)."""
        if int(os.pread(self.pids_current, 32, 0)) <= self.resident:    # our thread alone
            return []
        me = os.getpid()
        return [pid for pid in map(int, read_file(f"{self.dirs['memory']}/cgroup.procs").split())
                if pid != me]

    def remove(self) -> None:
        self.jobs.put(None)
        self.thread.join()
        self.resident = 0                     # our thread is out of pids.current now
        self.kill_all()
        for fd in (self.oom_control, self.pids_current, self.usage):
            os.close(fd)
        for folder in self.dirs.values():
            remove_cgroup(folder)


class CgroupV1(Limits):
    kind = "cgroup1"

    def __init__(self, name: str, nice: int, root: str = V1) -> None:
        super().__init__(nice)
        own = own_cgroups(read_file("/proc/self/cgroup"))
        tag = tag_of(name)
        folders = {c: f"{root}/{c}{own.get(c, '/').rstrip('/')}" for c in V1_CONTROLLERS}
        self.bases = {c: f"{folder}/{tag}" for c, folder in folders.items()}
        for folder in folders.values():
            clear_stale(folder)
        for base in self.bases.values():
            os.makedirs(base, exist_ok=True)
        write_file(f"{self.bases['cpu']}/cpu.shares", str(cpu_shares(nice, 1)))
        self.free.append(self.take())        # a first place: does it work at all?

    def make(self, number: int) -> CgroupPlace:
        return V1Place({c: f"{b}/p{number}" for c, b in self.bases.items()}, self.nice)

    def close(self) -> None:
        super().close()
        for base in self.bases.values():
            remove_cgroup(base)
