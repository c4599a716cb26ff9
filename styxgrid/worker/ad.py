"""What a worker tells the scheduler about its machine: a ClassAd of attributes."""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

from ..adtext import parse_literal
from ..resources import MAX_GPUS, MAX_SIZE, Need
from .config import WorkerConfig


def memory_mb() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0


def find_gpus() -> tuple[str, ...]:
    """NVIDIA devices the kernel shows (/dev/nvidia0, /dev/nvidia1 ...)."""
    try:
        names = os.listdir("/dev")
    except OSError:
        return ()
    found = sorted(int(n[6:]) for n in names if n.startswith("nvidia") and n[6:].isdigit())
    return tuple(str(n) for n in found[:MAX_GPUS])


def offer(config: WorkerConfig, workdir: str) -> tuple[Need, tuple[str, ...]]:
    """What this node offers tasks: its cpus (slots), memory, disk and GPUs, as
    told or as found; and the GPUs' device numbers."""
    memory = config.memory or memory_mb() or MAX_SIZE
    if config.disk:
        disk = config.disk
    else:
        st = os.statvfs(workdir)
        disk = max(1, st.f_bavail * st.f_frsize >> 20)
    gpus = find_gpus() if config.gpus is None else config.gpus
    return Need(config.slots, min(memory, MAX_SIZE), min(disk, MAX_SIZE), len(gpus)), gpus


def machine_ad(config: WorkerConfig, task_users: int, task_path: str,
               folders: str, offered: Need, limits: str) -> dict[str, Any]:
    """Name, Cpus, Memory (MiB), Disk (MiB), Gpus (what it offers tasks), the
    machine's TotalCpus and TotalMemory, OpSys, Arch, LoadAvg, Slots and how tasks
    are held to their requests (Limits: cgroup1, cgroup2 or rlimit), then the
    owner's own attributes; last, what matchmaking must be able to believe: how
    many task users keep users' tasks apart (0: tasks run as the worker's user)
    and the owner's allow list with what it is matched against (allowlist.py)."""
    ad: dict[str, Any] = {
        "Name": config.name, "Machine": socket.gethostname(), "Cpus": offered.cpus,
        "Memory": offered.memory, "Disk": offered.disk, "Gpus": offered.gpus,
        "TotalCpus": os.cpu_count() or 1, "TotalMemory": memory_mb(),
        "OpSys": platform.system().upper(), "Arch": platform.machine().upper(),
        "LoadAvg": round(os.getloadavg()[0], 2), "Slots": config.slots, "Limits": limits,
    }
    ad.update(config.attrs)
    ad["TaskUsers"] = task_users
    if config.allow:
        ad.update(Allow=" ".join(config.allow), TaskPath=task_path, TaskFolders=folders)
    return ad


def parse_attr(text: str) -> tuple[str, Any]:
    """`--attr Key=value`: integers and reals as numbers, true/false, else a string."""
    key, eq, value = text.partition("=")
    key = key.strip()
    if not eq or not key.isidentifier():
        raise ValueError(f"bad attribute {text!r}: want Key=value")
    return key, parse_literal(value)
