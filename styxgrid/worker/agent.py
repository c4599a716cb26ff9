"""The worker agent: one persistent connection out, a lease of tasks, K slots.

One read of /work is always waiting on the connection; the scheduler answers it
with as many tasks as the worker has room for under its lease (tasks held at once,
running or waiting their turn here).  K slot loops run the waiting tasks one after
another.  While tasks are short the worker leases a little ahead (about
`lease_ahead` seconds of work) and reports finished tasks in batches, so one
message each way carries many tasks; while they are long it leases no more than
it has slots, so no task waits here while another node idles.

The parts: `link` (the connection and what is said on it), `runner` (slots and
task processes), `sandbox` (where and as whom a task runs), `outputs` (its output
on the way up) and `policy` (the decisions, as arithmetic).  The slots live in
the worker's own nursery, not in the connection's: when the scheduler goes away
the tasks go on running while the link dials again.
"""

from __future__ import annotations

import os
import tempfile
from typing import Awaitable, Callable, TypeVar

import trio

from ..ninep.client import Client
from .ad import machine_ad, offer
from .config import WorkerConfig
from .link import JoinRefused, Linker, Replaced
from .owner import OwnerWatch
from .runner import Runner

T = TypeVar("T")

__all__ = ["JoinRefused", "Replaced", "Worker", "WorkerConfig"]


class Worker:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.workdir = os.path.abspath(config.workdir or os.path.join(
            tempfile.gettempdir(), f"styxgrid-worker-{config.name}"))
        os.makedirs(self.workdir, exist_ok=True)
        os.chmod(self.workdir, 0o711)           # task users reach their folders, list nothing
        offered, gpus = offer(config, self.workdir)
        self.runner = Runner(config, self.workdir, self.over_link, offered, gpus)
        users = self.runner.users
        ad = machine_ad(config, len(users.pool) if users else 0,
                        self.runner.env.get("PATH", ""), self.workdir, offered,
                        self.runner.limits.kind)
        self.linker = Linker(config, self.runner, ad)
        self.owner = OwnerWatch(config, self.runner, self.linker.owner_changed)

    def over_link(self, action: Callable[[Client], Awaitable[T]]) -> Awaitable[T]:
        return self.linker.over_link(action)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Serve the grid until cancelled (or replaced); ready once joined and its
        task users are its own (accounts.py).  However it ends, the tasks it
        still runs are killed with it."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.linker.run)
            if self.runner.users is not None:   # tasks leased meanwhile wait their slot
                await self.runner.users.claim(self.config.name)
            nursery.start_soon(self.runner.run)
            nursery.start_soon(self.owner.run)
            task_status.started()
