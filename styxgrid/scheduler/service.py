"""`styxgrid scheduler`: the grid's state served over 9P on one listening address."""

from __future__ import annotations

from pathlib import Path

import trio

from ..ninep import serve_listeners
from ..ninep.transport import Address, open_listeners
from .grid import Grid
from .namespace import GridFS


async def serve_scheduler(state_dir: str | Path, addr: Address, *,
                          heartbeat_timeout: float = 10.0, trace: bool = False,
                          task_status: trio.TaskStatus[tuple[Grid, list]]
                          = trio.TASK_STATUS_IGNORED) -> None:
    """Load the state, listen, serve until cancelled; reports (grid, listeners)."""
    grid = Grid(state_dir, heartbeat_timeout=heartbeat_timeout)
    try:
        listeners = await open_listeners(addr)
        async with trio.open_nursery() as nursery:
            await nursery.start(grid.run)
            await nursery.start(lambda task_status: serve_listeners(
                GridFS(grid), listeners, trace=trace, task_status=task_status))
            task_status.started((grid, listeners))
    finally:
        grid.close()
