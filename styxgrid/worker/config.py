"""Everything a worker can be told, with its default written once: the CLI and
`styxgrid up` only map their arguments onto a `WorkerConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..security.identity import Identity


@dataclass
class WorkerConfig:
    scheduler: str
    name: str
    slots: int = 1                            # cpus it offers tasks
    memory: int = 0                           # MiB it offers (0: the machine's memory)
    disk: int = 0                             # MiB (0: what is free in its work folder)
    gpus: tuple[str, ...] | None = None       # device numbers (None: those in /dev)
    limits: str = "auto"                      # how tasks are held to requests (limits.py)
    workdir: str = ""                         # default: a folder in the system's temp
    attrs: dict[str, Any] = field(default_factory=dict)
    nice: int = 10
    heartbeat: float = 3.0                    # seconds between heartbeats
    identity: Identity | None = None          # TLS certificate for a TCP scheduler
    allow: tuple[str, ...] = ()               # globs of programs this node runs (all if none)
    task_users: tuple[str, ...] = ()          # started as root: the accounts tasks run as
    max_load: float | None = None             # the owner is back at this load of others'
    busy_file: str = ""                       # the owner is back while this file exists
    idle_after: float = 0.0                   # ...or input was used this recently (0: not)
    suspend_for: float = 600.0                # seconds tasks stay suspended, then vacated
    vacate_grace: float = 10.0                # seconds from SIGTERM to SIGKILL on vacate
    owner_poll: float = 0.25                  # how often the owner's signals are looked at
    # how the exchange is paced (styxgrid-worker(8) explains each)
    stream_interval: float = 0.25             # how often a running task's new output is sent
    lease_ahead: float = 0.05                 # seconds of work leased beyond the slots
    ahead_per_slot: int = 8                   # and at most this many tasks per slot
    inline_output: int = 64 * 1024            # a finished task's output sent in its report
    load_window: float = 60.0                 # seconds: the kernel's 1-minute load average
    reports_per_write: int = 512
    upload_piece: int = 1 << 20               # bytes of an output file read and sent at once
    passed_env: tuple[str, ...] = ("PATH", "HOME", "LANG", "LC_ALL", "USER", "LOGNAME", "TZ")
