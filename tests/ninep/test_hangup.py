"""A connection that hangs up with reads parked is freed by reference counting alone
(the scheduler's collector thresholds make full collections rare)."""

from __future__ import annotations

import gc

import trio
import trio.testing

from styxgrid.ninep import messages as M
from styxgrid.ninep.server import Connection

from .apps import TestTree
from .test_server import start


async def test_hangup_with_parked_reads_leaves_no_cycle(nursery):
    tree = TestTree()
    connect = await start(nursery, tree)
    gc.collect()
    gc.disable()
    try:
        c = await connect()
        await c.session()
        await c.walk_open(2, "parked")
        await c.send(*(M.Tread(tag, 2, 0, 100) for tag in range(10, 60)))
        assert isinstance(await c.rpc(M.Tstat(5, 2)), M.Rstat)
        await trio.testing.wait_all_tasks_blocked()
        assert tree.parked == 50
        await c.stream.aclose()                     # hang up, no Tflush
        await trio.testing.wait_all_tasks_blocked()
        assert tree.cancelled == 50
        assert not [o for o in gc.get_objects() if type(o) is Connection]
    finally:
        gc.enable()
