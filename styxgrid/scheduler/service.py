"""`styxgrid scheduler`: the grid's state served over 9P on one listening address.

A unix socket needs nothing more: the kernel says who connects.  A TCP port
speaks TLS with the grid CA's certificates (`ca_dir`), or, only when asked with
`insecure`, plain 9P that believes every attach name.
"""

from __future__ import annotations

import functools
import gc
import logging
import os

import trio

from ..ninep import memory, serve_listeners
from ..ninep.transport import open_listeners
from .config import SchedulerConfig
from .grid import Grid
from .tree import GridFS


log = logging.getLogger("styxgrid.scheduler")


class SetupError(ValueError):
    """The scheduler cannot start as asked; the text says why."""


async def serve_scheduler(config: SchedulerConfig, *,
                          task_status: trio.TaskStatus[tuple[Grid, list[trio.SocketListener]]]
                          = trio.TASK_STATUS_IGNORED) -> None:
    """Load the state, listen, serve until cancelled; reports (grid, listeners)."""
    addr = config.address
    if addr.path is None and config.ca_dir is None and not config.insecure:
        raise SetupError("a TCP address needs --ca DIR (TLS with the grid's certificates); "
                         "--insecure serves plain 9P to anyone who can connect")
    gc.set_threshold(*config.gc_thresholds)
    os.umask(0o077)                 # what the scheduler writes is its own (the socket: 0666)
    grid = Grid(config)
    try:
        listeners = await open_listeners(addr)
        async with trio.open_nursery() as nursery:
            await nursery.start(grid.run)
            nursery.start_soon(memory.give_back)
            if addr.path is None and config.ca_dir is not None:
                from ..security.ca import CA
                from ..security.enrol import enrol_root
                from ..security.gate import Gate
                ca = CA.open(config.ca_dir)
                gate = Gate(ca, (addr.host or "",))
                fs = GridFS(grid, enrolment=lambda: enrol_root(ca))
                nursery.start_soon(gate.watch_revocations)
                await nursery.start(functools.partial(
                    trio.serve_listeners, functools.partial(
                        gate.serve, fs=fs, limits=config.limits, trace=config.trace),
                    listeners))
            else:
                await nursery.start(functools.partial(
                    serve_listeners, GridFS(grid), listeners, limits=config.limits,
                    trace=config.trace))
            log.info("serving %s on %s", config.state_dir, addr)
            task_status.started((grid, listeners))
    finally:
        grid.close()
