"""What a worker tells the scheduler about its machine: a ClassAd of attributes."""

from __future__ import annotations

import os
import platform
import socket
from typing import Any

from ..adtext import parse_literal
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


def machine_ad(config: WorkerConfig, task_users: int, task_path: str,
               folders: str) -> dict[str, Any]:
    """Name, Cpus, Memory (MiB), OpSys, Arch, LoadAvg, Slots, then the owner's own
    attributes; last, what matchmaking must be able to believe: how many task
    users keep users' tasks apart (0: tasks run as the worker's user) and the
    owner's allow list with what it is matched against (allowlist.py)."""
    ad: dict[str, Any] = {
        "Name": config.name, "Machine": socket.gethostname(), "Cpus": os.cpu_count() or 1,
        "Memory": memory_mb(), "OpSys": platform.system().upper(),
        "Arch": platform.machine().upper(), "LoadAvg": round(os.getloadavg()[0], 2),
        "Slots": config.slots,
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
