"""cgroup v2 (`cgroup2`): a cgroup per place with memory.max,
memory.swap.max, cpu.max, cpu.weight (its cpus at the worker's nice value; the
worker's cgroup of places weighs one process of that nice value), pids.max and
memory.events; v2 moves only whole processes, so the task is moved in right
after the spawn.  It needs a cgroup
delegated to the worker: the worker moves itself into a `worker` leaf of its
own cgroup, so that the places can have controllers beside it.
"""

from __future__ import annotations

import os

from ..resources import Need
from .places import (CPU_PERIOD, PIDS_MAX, CgroupPlace, Limits, MiB, clear_stale,
                     counter, cpu_weight, read_file, remove_cgroup, tag_of, write_file)


def v2_root() -> str:
    """Where the cgroup v2 hierarchy is mounted ("" if nowhere)."""
    for line in read_file("/proc/self/mountinfo").splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[:1] == ["cgroup2"]:
            return left.split()[4]
    return ""


class V2Place(CgroupPlace):
    def __init__(self, folder: str, nice: int) -> None:
        self.folder = folder
        self.nice = nice
        os.makedirs(folder, exist_ok=True)
        self.pids_max = f"{folder}/pids.max"
        write_file(self.pids_max, str(PIDS_MAX))
        self.cpu = os.path.exists(f"{folder}/cpu.max")
        self.memory = -1
        self.cpus = -1
        self.kills = self.oom_kills()
        self.usage = os.open(f"{folder}/memory.current", os.O_RDONLY | os.O_CLOEXEC)
        self.stat = f"{folder}/memory.stat"

    def prepare(self, need: Need) -> None:
        if need.memory != self.memory:
            write_file(f"{self.folder}/memory.max", str(need.memory * MiB))
            if os.path.exists(f"{self.folder}/memory.swap.max"):
                write_file(f"{self.folder}/memory.swap.max", "0")
            self.memory = need.memory
        if need.cpus != self.cpus and self.cpu:
            write_file(f"{self.folder}/cpu.max", f"{need.cpus * CPU_PERIOD} {CPU_PERIOD}")
            write_file(f"{self.folder}/cpu.weight", str(cpu_weight(self.nice, need.cpus)))
            self.cpus = need.cpus

    def after_spawn(self, pid: int | None) -> None:
        if pid is not None:
            write_file(f"{self.folder}/cgroup.procs", str(pid))

    def oom_kills(self) -> int:
        return counter(read_file(f"{self.folder}/memory.events"), "oom_kill")

    def pids(self) -> list[int]:
        return [int(word) for word in read_file(f"{self.folder}/cgroup.procs").split()]

    def remove(self) -> None:
        self.kill_all()
        os.close(self.usage)
        remove_cgroup(self.folder)


def enable(folder: str) -> None:
    """Give the cgroups below `folder` the memory, pids and (if it can) cpu
    controllers."""
    for controller in ("memory", "pids", "cpu"):
        try:
            write_file(f"{folder}/cgroup.subtree_control", f"+{controller}")
        except OSError:
            if controller != "cpu":     # cpu.max is a nicety; memory and pids are not
                raise


class CgroupV2(Limits):
    kind = "cgroup2"

    def __init__(self, name: str, folder: str, nice: int) -> None:
        """`folder`: the worker's own cgroup (delegated to it)."""
        super().__init__(nice)
        if "memory" not in read_file(f"{folder}/cgroup.controllers").split():
            raise OSError("cgroup v2 has no memory controller here")
        leaf = f"{folder}/worker"
        os.makedirs(leaf, exist_ok=True)
        write_file(f"{leaf}/cgroup.procs", str(os.getpid()))
        self.folder = folder
        self.tag = tag_of(name)
        clear_stale(folder)
        enable(folder)
        os.makedirs(f"{folder}/{self.tag}", exist_ok=True)
        if os.path.exists(f"{folder}/{self.tag}/cpu.weight"):
            write_file(f"{folder}/{self.tag}/cpu.weight", str(cpu_weight(nice, 1)))
        enable(f"{folder}/{self.tag}")
        self.free.append(self.take())

    def make(self, number: int) -> CgroupPlace:
        return V2Place(f"{self.folder}/{self.tag}/p{number}", self.nice)

    def close(self) -> None:
        super().close()
        remove_cgroup(f"{self.folder}/{self.tag}")
