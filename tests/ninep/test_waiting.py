"""Reads that wait on a Signal are records, not tasks: many of them cost little,
and every way a waiting read can end (answered, flushed, its fid clunked, its
connection gone, its handle failing) is answered once or not at all, as flush(5)
and clunk(5) say."""

from __future__ import annotations

import functools
import gc
import logging

import trio
import trio.testing

from styxgrid.ninep import messages as M
from styxgrid.ninep.errors import EINTERNAL, EINTERRUPTED
from styxgrid.ninep.server import Connection, Limits

from .apps import TestTree
from .test_server import start


def task_count() -> int:
    def count(task: trio.lowlevel.Task) -> int:
        return 1 + sum(count(child) for nursery in task.child_nurseries
                       for child in nursery.child_tasks)
    return count(trio.lowlevel.current_root_task())


async def test_a_thousand_waiting_reads_start_no_task_and_are_all_answered(nursery):
    tree = TestTree()
    c = await (await start(nursery, tree, Limits(max_waiting_fid=1000)))()
    await c.session()
    await c.walk_open(2, "signalled")
    await trio.testing.wait_all_tasks_blocked()
    tasks = task_count()
    await c.send(*(M.Tread(tag, 2, 0, 100) for tag in range(10, 1010)))
    assert isinstance(await c.rpc(M.Tstat(5, 2)), M.Rstat)     # answered past them
    await trio.testing.wait_all_tasks_blocked()
    assert len(tree.signal.waiters) == 1000
    assert task_count() == tasks
    tree.signal.fire()                  # nothing ready yet: they all wait again
    await trio.testing.wait_all_tasks_blocked()
    assert len(tree.signal.waiters) == 1000
    tree.ready = b"now\n"
    tree.signal.fire()
    replies = [await c.recv() for _ in range(1000)]
    assert {r.tag for r in replies} == set(range(10, 1010))
    assert all(isinstance(r, M.Rread) and r.data == b"now\n" for r in replies)
    assert not tree.signal.waiters and tree.signal_cancelled == 0


async def test_a_flushed_waiting_read_is_never_answered(nursery):
    tree = TestTree()
    c = await (await start(nursery, tree))()
    await c.session()
    await c.walk_open(2, "signalled")
    await c.send(M.Tread(10, 2, 0, 100), M.Tread(11, 2, 0, 100))
    flushed = await c.rpc(M.Tflush(12, 10))
    assert isinstance(flushed, M.Rflush)
    assert tree.signal_cancelled == 1 and len(tree.signal.waiters) == 1
    tree.ready = b"late\n"
    tree.signal.fire()
    reply = await c.recv()
    assert reply.tag == 11 and reply.data == b"late\n"
    assert (await c.rpc(M.Tread(10, 2, 0, 100))).data == b"late\n"    # the tag is free


async def test_clunk_answers_the_reads_waiting_on_the_fid_interrupted(nursery):
    tree = TestTree()
    c = await (await start(nursery, tree))()
    await c.session()
    await c.walk_open(2, "signalled")
    await c.walk_open(3, "signalled")
    await c.send(M.Tread(10, 2, 0, 100), M.Tread(11, 3, 0, 100), M.Tclunk(12, 2))
    replies = {r.tag: r for r in [await c.recv(), await c.recv()]}
    assert isinstance(replies[12], M.Rclunk)
    assert isinstance(replies[10], M.Rerror) and replies[10].ename == EINTERRUPTED
    assert tree.signal_cancelled == 1 and len(tree.signal.waiters) == 1
    tree.ready = b"x"
    tree.signal.fire()
    assert (await c.recv()).tag == 11


async def test_a_handle_failing_when_asked_again_is_an_internal_error(nursery, caplog):
    tree = TestTree()
    c = await (await start(nursery, tree))()
    await c.session()
    await c.walk_open(2, "signalled")
    await c.send(M.Tread(10, 2, 0, 100))
    await trio.testing.wait_all_tasks_blocked()
    tree.ready = ZeroDivisionError("boom")
    with caplog.at_level(logging.ERROR, "styxgrid.ninep"):
        tree.signal.fire()
        reply = await c.recv()
    assert isinstance(reply, M.Rerror) and reply.ename == EINTERNAL
    assert "ZeroDivisionError" in caplog.text
    tree.ready = b"fine\n"
    assert (await c.rpc(M.Tread(11, 2, 0, 100))).data == b"fine\n"


async def test_hangup_leaves_no_waiter_and_no_cycle(nursery):
    tree = TestTree()
    connect = await start(nursery, tree, Limits(max_waiting_fid=500))
    gc.collect()
    gc.disable()
    try:
        c = await connect()
        await c.session()
        await c.walk_open(2, "signalled")
        await c.send(*(M.Tread(tag, 2, 0, 100) for tag in range(10, 510)))
        assert isinstance(await c.rpc(M.Tstat(5, 2)), M.Rstat)
        assert len(tree.signal.waiters) == 500
        await c.stream.aclose()                     # hang up, no Tflush
        await trio.testing.wait_all_tasks_blocked()
        assert tree.signal_cancelled == 500
        assert not tree.signal.waiters
        assert not [o for o in gc.get_objects() if type(o) is Connection]
    finally:
        gc.enable()


async def test_waiting_reads_are_limited_per_fid_and_per_connection_and_reading_goes_on(
        nursery):
    tree = TestTree()
    c = await (await start(nursery, tree, Limits(max_waiting=20, max_waiting_fid=16)))()
    await c.session()
    await c.walk_open(2, "signalled")
    await c.walk_open(3, "signalled")
    await c.send(*(M.Tread(tag, 2, 0, 100) for tag in range(10, 27)))
    refused = await c.recv()
    assert refused.tag == 26 and refused.ename == "too many reads waiting on this fid (at most 16)"
    await c.send(*(M.Tread(tag, 3, 0, 100) for tag in range(30, 35)))
    refused = await c.recv()
    assert refused.tag == 34
    assert refused.ename == "too many reads waiting on this connection (at most 20)"
    assert isinstance(await c.rpc(M.Tstat(5, 2)), M.Rstat)     # not back-pressure
    assert len(tree.signal.waiters) == 20


async def test_tversion_aborts_waiting_reads_unanswered(nursery):
    tree = TestTree()
    c = await (await start(nursery, tree))()
    await c.session()
    await c.walk_open(2, "signalled")
    await c.send(M.Tread(10, 2, 0, 100), M.Tread(11, 2, 0, 100))
    assert isinstance(await c.rpc(M.Tversion(M.NOTAG, 65536, "9P2000")), M.Rversion)
    assert tree.signal_cancelled == 2 and not tree.signal.waiters
    tree.ready = b"late\n"
    tree.signal.fire()
    assert isinstance(await c.rpc(M.Tattach(10, 0, M.NOFID, "glenda", "")), M.Rattach)
    assert isinstance(await c.rpc(M.Tstat(11, 2)), M.Rerror)    # fid 2 went with the session


async def test_a_client_sending_thousands_at_once_lets_another_in_between(nursery):
    """Served FAIR_SHARE at a time: the other client's stat is served before the
    flood's last one."""
    tree = TestTree()
    order: list[str] = []
    for name in ("fast", "ro"):
        node = tree.root.kids[name]
        node.stat = functools.partial(lambda stat, name: order.append(name) or stat(),
                                      node.stat, name)
    connect = await start(nursery, tree)
    flood, other = await connect(), await connect()
    await flood.session()
    await other.session()
    assert isinstance(await flood.rpc(M.Twalk(1, 0, 2, ("fast",))), M.Rwalk)
    assert isinstance(await other.rpc(M.Twalk(1, 0, 2, ("ro",))), M.Rwalk)
    order.clear()
    await flood.send(*(M.Tstat(tag, 2) for tag in range(10, 4010)))
    await other.send(M.Tstat(7, 2))
    assert isinstance(await other.recv(), M.Rstat)
    for _ in range(4000):
        assert isinstance(await flood.recv(), M.Rstat)
    assert order.index("ro") < 4000, "the flood was served whole before the other client"
