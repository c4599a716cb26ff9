"""Where a task runs, held to its request: the place, the worker's way of
holding (`Limits`), and the fallback that needs no cgroup (rlimits).

A place is reused by one task after another (making and removing cgroups for
every task would cost more than a tiny task), so its settings are written
only when they change.  Whatever is still in a cgroup place when its task ends
is killed, even processes that left the task's process group (an rlimit place
knows only the process group, which the task's end kills).  With rlimits the
memory a task's process group holds is looked at every POLL seconds; over the
request, the task is stopped and held; RLIMIT_DATA at twice the request stops a
runaway between two looks (its allocation fails).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import resource
import signal
import threading
import time
from typing import Callable, TypeVar

from ..resources import Need, mib

log = logging.getLogger("styxgrid.worker")
T = TypeVar("T")
PIDS_MAX = 4096             # processes and threads of one task (cgroups)
POLL = 0.5                  # seconds between looks at a task's memory (rlimits)
CPU_PERIOD = 100_000        # microseconds: the cpu quota's period
RLIMIT_TRIES = 200
KILL_FOR = 2.0              # seconds of SIGKILL passes over what a task left in its place
MAX_PID = 1 << 22           # the kernel's PID_MAX_LIMIT
STALE = re.compile(r"styxgrid-[0-9a-f]{12}-([1-9][0-9]{0,6})")    # a worker's, by tag_of
MiB = 1 << 20
LEFT_CHARGED = 8 * MiB      # unfreeable memory a task may leave to the next in its place


def cpu_shares(nice: int, cpus: int) -> int:
    """cgroup v1 cpu.shares for tasks of `cpus` cpus niced to `nice`: the weight
    the kernel gives a process of that nice value (1024 at 0, 110 at 10), for
    each cpu.  A task's nice value counts only among the processes of its own
    cgroup; without this its cgroup would weigh as much as the owner's
    programs."""
    return max(2, round(1024 / 1.25 ** nice)) * cpus


def cpu_weight(nice: int, cpus: int) -> int:
    """The same as a cgroup v2 cpu.weight (100 where v1 says 1024)."""
    return max(1, min(10_000, round(cpu_shares(nice, cpus) * 100 / 1024)))


def write_file(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def read_file(path: str) -> str:
    with open(path) as f:
        return f.read()


def counter(text: str, key: str) -> int:
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

    session = False             # whether its task starts a session of its own

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

    def holds_memory(self) -> bool:
        """Whether what ran here left memory charged to the place that no kill
        frees (files in a tmpfs, shared memory): the next task would pay for it."""
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

    def kill_all(self) -> None:
        """SIGKILL whatever is in the place.  A process that forks and exits in a
        loop outruns a pass over the list, so forks are barred meanwhile (where
        the place can bar them) and the passes go on while anything is left: a
        killed process is listed until it has exited, which may take a moment."""
        if not self.pids():
            return
        self.bar_forks(True)
        try:
            given_up = time.monotonic() + KILL_FOR
            while time.monotonic() < given_up:
                self.signal(signal.SIGKILL)
                if not self.pids():
                    return
                time.sleep(0.001)
            log.warning("processes are still in a task's place after %gs of SIGKILL",
                        KILL_FOR)
        finally:
            self.bar_forks(False)

    def bar_forks(self, barred: bool) -> None:
        """No process may fork in the place while `barred` (a cgroup: pids.max 0)."""

    def remove(self) -> None:
        """At the worker's end."""


class CgroupPlace(Place):
    """A place that is a cgroup (v1 or v2): the kernel counts its OOM kills and
    bounds its processes in `pids_max`, and charges it what its tasks left."""

    pids_max = ""
    kills = 0
    usage = -1                  # an open file of the cgroup's memory charge, in bytes
    stat = ""                   # the file of its memory.stat

    def holds_memory(self) -> bool:
        if int(os.pread(self.usage, 32, 0)) < LEFT_CHARGED:     # the usual: one read
            return False
        return counter(read_file(self.stat), "shmem") >= LEFT_CHARGED

    def oom_kills(self) -> int:
        """The cgroup's count of processes the kernel killed past its memory."""
        raise NotImplementedError

    def over_memory(self) -> bool:
        kills, self.kills = self.kills, self.oom_kills()
        return self.kills > kills

    def bar_forks(self, barred: bool) -> None:
        write_file(self.pids_max, "0" if barred else str(PIDS_MAX))


class Limits:
    """The worker's way of holding tasks to their requests; `kind` goes in its ad."""

    kind = "rlimit"

    def __init__(self, nice: int) -> None:
        self.nice = nice
        self.free: list[Place] = []
        self.made: list[Place] = []
        self.numbered = 0
        self.sessions: bool | None = None     # whether autogroups weigh our tasks

    def take(self) -> Place:
        if self.free:
            return self.free.pop()
        place = self.make(self.numbered)
        self.numbered += 1
        self.made.append(place)
        return place

    def take_for(self, need: Need) -> Place:
        """A place set for `need`.  One that cannot be (its memory limit cannot
        go below what is charged to it) is removed and a new one made."""
        place = self.take()
        try:
            place.prepare(need)
        except OSError as exc:
            log.info("a task's place refused the limits of %s (%s): a new one", need.words(),
                     exc)
            self.retire(place)
            place = self.take()
            place.prepare(need)
        return place

    def give_back(self, place: Place) -> None:
        place.kill_all()                      # what the task left behind
        if place.holds_memory():
            self.retire(place)
        else:
            self.free.append(place)

    def retire(self, place: Place) -> None:
        """Remove a place the next task must not inherit (the memory charged to it
        stays with the removed cgroup)."""
        self.made.remove(place)
        try:
            place.remove()
        except OSError as exc:
            log.warning("cannot remove a task's cgroup: %s", exc)

    def make(self, number: int) -> Place:
        if self.sessions is None:
            self.sessions = sessions_weigh()
        return RlimitPlace(self.nice, self.sessions)

    def close(self) -> None:
        for place in self.made:
            try:
                place.remove()
            except OSError as exc:
                log.warning("cannot remove a task's cgroup: %s", exc)


class RlimitPlace(Place):
    """With no cgroup, where the kernel groups processes by session (autogroup),
    a task's nice value would count only inside the worker's session, against
    the worker alone: the task starts a session of its own, whose group is given
    the nice value.  (A new session costs the kernel a group: only where they
    weigh.)"""

    def __init__(self, nice: int, session: bool) -> None:
        self.need = Need()
        self.nice = nice
        self.session = session

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
                if self.session:
                    write_file(f"/proc/{pid}/autogroup", str(self.nice))
                return
            except FileNotFoundError:           # a kernel without autogroups, or it ended
                return
            except PermissionError:
                os.sched_yield()
            except (OSError, ValueError):      # it has ended already
                return
        if not RlimitPlace.warned:
            RlimitPlace.warned = True
            log.warning("cannot set the rlimits of task process %s (refused); its memory "
                        "is still looked at", pid)


def sessions_weigh() -> bool:
    """Whether the kernel weighs this worker's tasks by session (autogroup on,
    and the worker in the root cpu group, the only one autogroups apply in)."""
    try:
        if read_file("/proc/sys/kernel/sched_autogroup_enabled").strip() != "1":
            return False
        own = own_cgroups(read_file("/proc/self/cgroup"))
    except OSError:
        return False
    return own.get("cpu", own.get("", "/")) == "/"


def group_memory(pgid: int) -> int:
    """Bytes resident in the processes of process group `pgid` (rlimit mode's look)."""
    total = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = read_file(f"/proc/{name}/stat")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 21 and int(fields[2]) == pgid:
            total += int(fields[21]) * page
    return total


def own_cgroups(text: str) -> dict[str, str]:
    """Controller -> this process's cgroup path, from /proc/self/cgroup."""
    out = {}
    for line in text.splitlines():
        number, _, rest = line.partition(":")
        names, _, path = rest.partition(":")
        for name in names.split(",") if names else [""]:
            out[name] = path
    return out


def tag_of(name: str) -> str:
    """The cgroups of this worker process, named after its name and pid."""
    return f"styxgrid-{hashlib.sha256(name.encode()).hexdigest()[:12]}-{os.getpid()}"


def clear_stale(folder: str) -> None:
    """Remove what workers that ended without cleaning (SIGKILL) left in
    `folder`: their places, and what still ran in them.  A place's name carries
    its worker's pid, so any worker clears any gone worker's places; two workers
    of one name, one taking over from the other, keep apart.  Two workers
    starting at once may both clear one: what the other removed is gone."""
    for name in os.listdir(folder):
        found = STALE.fullmatch(name)
        if found is None or int(found[1]) >= MAX_PID or alive(int(found[1])):
            continue
        base = os.path.join(folder, name)
        try:
            for place in [os.path.join(base, p) for p in os.listdir(base)
                          if os.path.isdir(os.path.join(base, p))]:
                for word in read_file(f"{place}/cgroup.procs").split():
                    try:
                        os.kill(int(word), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                remove_cgroup(place)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENODEV):   # removed meanwhile
                raise
        remove_cgroup(base)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_cgroup(folder: str) -> None:
    """Remove an emptied cgroup (its killed processes may take a moment to leave)."""
    for _ in range(50):
        try:
            os.rmdir(folder)
            return
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENODEV):
                return
            threading.Event().wait(0.02)
    log.warning("cannot remove cgroup %s", folder)
