"""`styxgrid scheduler`: the grid's state served over 9P on one listening address.

A unix socket needs nothing more: the kernel says who connects.  A TCP port
speaks TLS with the grid CA's certificates (`ca_dir`), or, only when asked with
`insecure`, plain 9P that believes every attach name.
"""

from __future__ import annotations

import functools
from pathlib import Path

import trio

from ..ninep import memory, serve_listeners
from ..ninep.transport import Address, open_listeners
from .grid import Grid
from .namespace import GridFS


class SetupError(ValueError):
    """The scheduler cannot start as asked; the text says why."""


async def serve_scheduler(state_dir: str | Path, addr: Address, *, ca_dir: str | None = None,
                          insecure: bool = False, heartbeat_timeout: float = 10.0,
                          trace: bool = False,
                          task_status: trio.TaskStatus[tuple[Grid, list]]
                          = trio.TASK_STATUS_IGNORED) -> None:
    """Load the state, listen, serve until cancelled; reports (grid, listeners)."""
    if addr.path is None and ca_dir is None and not insecure:
        raise SetupError("a TCP address needs --ca DIR (TLS with the grid's certificates); "
                         "--insecure serves plain 9P to anyone who can connect")
    grid = Grid(state_dir, heartbeat_timeout=heartbeat_timeout)
    try:
        listeners = await open_listeners(addr)
        async with trio.open_nursery() as nursery:
            await nursery.start(grid.run)
            nursery.start_soon(memory.give_back)
            if addr.path is None and ca_dir is not None:
                from ..security.ca import CA
                from ..security.enrol import EnrolRoot
                from ..security.gate import Gate
                ca = CA.open(ca_dir)
                gate = Gate(ca, (addr.host or "",))
                fs = GridFS(grid, enrolment=lambda: EnrolRoot(ca))
                nursery.start_soon(gate.watch_revocations)
                await nursery.start(functools.partial(
                    trio.serve_listeners, functools.partial(gate.serve, fs=fs, trace=trace),
                    listeners))
            else:
                await nursery.start(functools.partial(serve_listeners, GridFS(grid), listeners,
                                                      trace=trace))
            task_status.started((grid, listeners))
    finally:
        grid.close()
