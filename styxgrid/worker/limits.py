"""Each task held to what it asked for: memory, cpus, processes.

Three ways, chosen once when the worker starts (`choose`), said in its ad
(`Limits`):

- cgroup v1 (`cgroup1`): a cgroup per place in the memory, cpu and pids
  hierarchies, under the worker's own; a thread of the worker lives in the
  place's cgroups (v1 lets a thread be in other cgroups than its process) and
  spawns the place's tasks, which are born there: no process of a task ever
  runs outside it, and no spawn pays for a move between cgroups.  memory.limit_in_bytes is the request (and memory+swap too):
  the kernel stops a task that goes past it, and the place's oom_kill count
  says so.  cpu.cfs_quota_us is the request's cpus; pids.max bounds forks.
- cgroup v2 (`cgroup2`): the same with memory.max, memory.swap.max, cpu.max,
  pids.max and memory.events; v2 moves only whole processes, so the task is
  moved in right after the spawn.  It needs a cgroup delegated to the worker:
  the worker moves itself into a `worker` leaf of its own cgroup, so that the
  places can have controllers beside it.
- rlimits (`rlimit`), where neither can be written: the memory a task's
  process group holds is looked at every POLL seconds; over the request, the
  task is stopped and held.  RLIMIT_DATA at twice the request stops a runaway
  between two looks (its allocation fails).

A place is reused by one task after another (making and removing cgroups for
every task would cost more than a tiny task), so its settings are written
only when they change.  Whatever is still in a place when its task ends is
killed, even processes that left the task's process group.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import resource
import signal
import threading
from typing import Callable, TypeVar

import outcome

from ..resources import Need, mib

log = logging.getLogger("styxgrid.worker")
T = TypeVar("T")
MODES = ("auto", "cgroup", "rlimit")
PIDS_MAX = 4096             # processes and threads of one task (cgroups)
POLL = 0.5                  # seconds between looks at a task's memory (rlimits)
CPU_PERIOD = 100_000        # microseconds: the cpu quota's period
RLIMIT_TRIES = 200
V1 = "/sys/fs/cgroup"
V1_CONTROLLERS = ("memory", "cpu", "pids")
MiB = 1 << 20


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _counter(text: str, key: str) -> int:
    """A `key N` line of memory.oom_control / memory.events (0 if none)."""
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2 and words[0] == key:
            return int(words[1])
    return 0


def over_memory_reason(need: Need, used: int | None = None) -> str:
    """Why a task is held: in the words its owner acts on."""
    if used is None:
        return (f"went past its memory request of {mib(need.memory)} and was stopped: raise "
                "request_memory and release it")
    return (f"used {mib(used)} of its {mib(need.memory)} memory request and was stopped: "
            "raise request_memory and release it")


class Place:
    """Where one task at a time runs, held to its request."""

    async def spawn(self, start: Callable[[], T]) -> T:
        """Run `start` (which spawns the task, calling the hooks below) where the
        task is to be born."""
        return start()

    def prepare(self, need: Need) -> None:
        """Set the limits for the next task's request."""

    def limit(self, pid: int) -> None:
        """Just after the spawn, in the spawning thread still acting as the task's
        user (a process's rlimits may be lowered by its own user)."""

    def after_spawn(self, pid: int | None) -> None:
        """In the spawning thread, just after, as itself (None: the spawn failed)."""

    def over_memory(self) -> bool:
        """Whether the task that ran here last went past its memory (asked once
        it has ended)."""
        return False

    def pids(self) -> list[int]:
        """Every process in the place (for a cgroup: those that left the task's
        process group too)."""
        return []

    def signal(self, sig: int) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def remove(self) -> None:
        """At the worker's end."""


class Limits:
    """The worker's way of holding tasks to their requests; `kind` goes in its ad."""

    kind = "rlimit"

    def __init__(self) -> None:
        self.free: list[Place] = []
        self.made: list[Place] = []

    def take(self) -> Place:
        if self.free:
            return self.free.pop()
        place = self.make(len(self.made))
        self.made.append(place)
        return place

    def give_back(self, place: Place) -> None:
        place.signal(signal.SIGKILL)          # what the task left behind
        self.free.append(place)

    def make(self, number: int) -> Place:
        return RlimitPlace()

    def close(self) -> None:
        for place in self.made:
            try:
                place.remove()
            except OSError as exc:
                log.warning("cannot remove a task's cgroup: %s", exc)


class RlimitPlace(Place):
    def __init__(self) -> None:
        self.need = Need()

    def prepare(self, need: Need) -> None:
        self.need = need

    warned = False

    def limit(self, pid: int) -> None:
        """The spawn returns once the child has begun its exec, which may not yet
        have made the child's saved uid its user's (the kernel then refuses us
        for a moment): a few tries, for at most about a millisecond."""
        limit = 2 * self.need.memory * MiB
        for _ in range(RLIMIT_TRIES):
            try:
                resource.prlimit(pid, resource.RLIMIT_DATA, (limit, limit))
                return
            except PermissionError:
                os.sched_yield()
            except (OSError, ValueError):      # it has ended already
                return
        if not RlimitPlace.warned:
            RlimitPlace.warned = True
            log.warning("cannot set the rlimits of task process %s (refused); its memory "
                        "is still looked at", pid)


def group_memory(pgid: int) -> int:
    """Bytes resident in the processes of process group `pgid` (rlimit mode's look)."""
    total = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = _read(f"/proc/{name}/stat")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 21 and int(fields[2]) == pgid:
            total += int(fields[21]) * page
    return total


# ------------------------------------------------------------------ cgroup v1

def own_cgroups(text: str) -> dict[str, str]:
    """Controller -> this process's cgroup path, from /proc/self/cgroup."""
    out = {}
    for line in text.splitlines():
        number, _, rest = line.partition(":")
        names, _, path = rest.partition(":")
        for name in names.split(",") if names else [""]:
            out[name] = path
    return out


class V1Place(Place):
    """A place of cgroup v1 with a thread of the worker's that lives in it: the
    tasks it spawns are born there.  (Moving a thread in and out around every
    spawn costs more than the spawn while other processes fork and exit: each
    move waits for them, on the kernel's lock of every process's cgroups.)"""

    def __init__(self, dirs: dict[str, str]) -> None:
        self.dirs = dirs
        for folder in dirs.values():
            os.makedirs(folder, exist_ok=True)
        _write(f"{dirs['pids']}/pids.max", str(PIDS_MAX))
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
                    _write(f"{memory}/{name}", value)
            except OSError:
                for name in reversed(files):
                    _write(f"{memory}/{name}", value)
            self.memory = need.memory
        if need.cpus != self.cpus:
            _write(f"{self.dirs['cpu']}/cpu.cfs_period_us", str(CPU_PERIOD))
            _write(f"{self.dirs['cpu']}/cpu.cfs_quota_us", str(need.cpus * CPU_PERIOD))
            self.cpus = need.cpus

    def serve(self, entered: "queue.SimpleQueue[BaseException | None]") -> None:
        """The place's thread: into the place's cgroups once, then spawn there."""
        try:
            tid = str(threading.get_native_id())
            for folder in self.dirs.values():
                _write(f"{folder}/tasks", tid)
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
        return _counter(os.pread(self.oom_control, 4096, 0).decode(), "oom_kill")

    def over_memory(self) -> bool:
        kills, self.kills = self.kills, self.oom_kills()
        return self.kills > kills

    def pids(self) -> list[int]:
        """The task's processes (not the worker, whose spawning thread is here).
        Asked after every task: the usual answer, none, costs one read of a
        counter instead of the list (which the kernel builds and sorts)."""
        if int(os.pread(self.pids_current, 32, 0)) <= self.resident:    # our thread alone
            return []
        me = os.getpid()
        return [pid for pid in map(int, _read(f"{self.dirs['memory']}/cgroup.procs").split())
                if pid != me]

    def remove(self) -> None:
        self.jobs.put(None)
        self.thread.join()
        self.resident = 0                     # our thread is out of pids.current now
        self.signal(signal.SIGKILL)
        os.close(self.oom_control)
        os.close(self.pids_current)
        for folder in self.dirs.values():
            _rmdir(folder)


def tag_of(name: str) -> str:
    """The cgroups of this worker process, named after its name and pid."""
    return f"styxgrid-{hashlib.sha256(name.encode()).hexdigest()[:12]}-{os.getpid()}"


def clear_stale(folder: str) -> None:
    """Remove what workers that ended without cleaning (SIGKILL) left in
    `folder`: their places, and what still ran in them.  A place's name carries
    its worker's pid, so any worker clears any gone worker's places; two workers
    of one name, one taking over from the other, keep apart."""
    for name in os.listdir(folder):
        words = name.split("-")
        if len(words) != 3 or words[0] != "styxgrid" or not words[2].isdigit() \
                or _alive(int(words[2])):
            continue
        base = os.path.join(folder, name)
        for place in [os.path.join(base, p) for p in os.listdir(base)
                      if os.path.isdir(os.path.join(base, p))]:
            for word in _read(f"{place}/cgroup.procs").split():
                try:
                    os.kill(int(word), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            _rmdir(place)
        _rmdir(base)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _rmdir(folder: str) -> None:
    """Remove an emptied cgroup (its killed processes may take a moment to leave)."""
    for _ in range(50):
        try:
            os.rmdir(folder)
            return
        except FileNotFoundError:
            return
        except OSError:
            threading.Event().wait(0.02)
    log.warning("cannot remove cgroup %s", folder)


class CgroupV1(Limits):
    kind = "cgroup1"

    def __init__(self, name: str, root: str = V1) -> None:
        super().__init__()
        own = own_cgroups(_read("/proc/self/cgroup"))
        tag = tag_of(name)
        folders = {c: f"{root}/{c}{own.get(c, '/').rstrip('/')}" for c in V1_CONTROLLERS}
        self.bases = {c: f"{folder}/{tag}" for c, folder in folders.items()}
        for folder in folders.values():
            clear_stale(folder)
        for base in self.bases.values():
            os.makedirs(base, exist_ok=True)
        self.free.append(self.take())        # a first place: does it work at all?

    def make(self, number: int) -> Place:
        return V1Place({c: f"{b}/p{number}" for c, b in self.bases.items()})

    def close(self) -> None:
        super().close()
        for base in self.bases.values():
            _rmdir(base)


# ------------------------------------------------------------------ cgroup v2

def v2_root() -> str:
    """Where the cgroup v2 hierarchy is mounted ("" if nowhere)."""
    for line in _read("/proc/self/mountinfo").splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[:1] == ["cgroup2"]:
            return left.split()[4]
    return ""


class V2Place(Place):
    def __init__(self, folder: str) -> None:
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        _write(f"{folder}/pids.max", str(PIDS_MAX))
        self.cpu = os.path.exists(f"{folder}/cpu.max")
        self.memory = -1
        self.cpus = -1
        self.kills = self.oom_kills()

    def prepare(self, need: Need) -> None:
        if need.memory != self.memory:
            _write(f"{self.folder}/memory.max", str(need.memory * MiB))
            if os.path.exists(f"{self.folder}/memory.swap.max"):
                _write(f"{self.folder}/memory.swap.max", "0")
            self.memory = need.memory
        if need.cpus != self.cpus and self.cpu:
            _write(f"{self.folder}/cpu.max", f"{need.cpus * CPU_PERIOD} {CPU_PERIOD}")
            self.cpus = need.cpus

    def after_spawn(self, pid: int | None) -> None:
        if pid is not None:
            _write(f"{self.folder}/cgroup.procs", str(pid))

    def oom_kills(self) -> int:
        return _counter(_read(f"{self.folder}/memory.events"), "oom_kill")

    def over_memory(self) -> bool:
        kills, self.kills = self.kills, self.oom_kills()
        return self.kills > kills

    def pids(self) -> list[int]:
        return [int(word) for word in _read(f"{self.folder}/cgroup.procs").split()]

    def remove(self) -> None:
        self.signal(signal.SIGKILL)
        _rmdir(self.folder)


def enable(folder: str) -> None:
    """Give the cgroups below `folder` the memory, pids and (if it can) cpu
    controllers."""
    for controller in ("memory", "pids", "cpu"):
        try:
            _write(f"{folder}/cgroup.subtree_control", f"+{controller}")
        except OSError:
            if controller != "cpu":     # cpu.max is a nicety; memory and pids are not
                raise


class CgroupV2(Limits):
    kind = "cgroup2"

    def __init__(self, name: str, folder: str) -> None:
        """`folder`: the worker's own cgroup (delegated to it)."""
        super().__init__()
        if "memory" not in _read(f"{folder}/cgroup.controllers").split():
            raise OSError("cgroup v2 has no memory controller here")
        leaf = f"{folder}/worker"
        os.makedirs(leaf, exist_ok=True)
        _write(f"{leaf}/cgroup.procs", str(os.getpid()))
        self.folder = folder
        self.tag = tag_of(name)
        clear_stale(folder)
        enable(folder)
        os.makedirs(f"{folder}/{self.tag}", exist_ok=True)
        enable(f"{folder}/{self.tag}")
        self.free.append(self.take())

    def make(self, number: int) -> Place:
        return V2Place(f"{self.folder}/{self.tag}/p{number}")

    def close(self) -> None:
        super().close()
        _rmdir(f"{self.folder}/{self.tag}")


def choose(mode: str, name: str) -> Limits:
    """`auto`: cgroup v2 if it can be used, else v1, else rlimits; `cgroup`: a
    cgroup or the worker does not start; `rlimit`: rlimits only."""
    if mode == "rlimit":
        return Limits()
    tried = []
    try:
        root = v2_root()
        if root:
            own = own_cgroups(_read("/proc/self/cgroup")).get("", "/")
            return CgroupV2(name, root + own.rstrip("/"))
    except (OSError, ValueError) as exc:
        tried.append(f"cgroup v2: {exc}")
    try:
        return CgroupV1(name)
    except (OSError, ValueError) as exc:
        tried.append(f"cgroup v1: {exc}")
    if mode == "cgroup":
        raise OSError("cannot hold tasks to their requests with cgroups: " + "; ".join(tried))
    log.info("tasks are held to their requests by rlimits (%s)", "; ".join(tried))
    return Limits()
