"""Each task held to what it asked for: memory, cpus, processes, in one of
three ways chosen once when the worker starts, said in its ad (`Limits`):
cgroup v2 (cgroup2.py), cgroup v1 (cgroup1.py), else rlimits (places.py).
"""

from __future__ import annotations

import logging

from .cgroup1 import CgroupV1
from .cgroup2 import CgroupV2, v2_root
from .places import Limits, own_cgroups, read_file

log = logging.getLogger("styxgrid.worker")


def choose(mode: str, name: str, nice: int = 10) -> Limits:
    """`auto`: cgroup v2 if it can be used, else v1, else rlimits; `cgroup`: a
    cgroup or the worker does not start; `rlimit`: rlimits only.  `nice`
    weighs the task cgroups against the owner's programs."""
    if mode == "rlimit":
        return Limits(nice)
    tried = []
    try:
        root = v2_root()
        if root:
            own = own_cgroups(read_file("/proc/self/cgroup")).get("", "/")
            return CgroupV2(name, root + own.rstrip("/"), nice)
    except (OSError, ValueError) as exc:
        tried.append(f"cgroup v2: {exc}")
    try:
        return CgroupV1(name, nice)
    except (OSError, ValueError) as exc:
        tried.append(f"cgroup v1: {exc}")
    if mode == "cgroup":
        raise OSError("cannot hold tasks to their requests with cgroups: " + "; ".join(tried))
    log.info("tasks are held to their requests by rlimits (%s)", "; ".join(tried))
    return Limits(nice)
