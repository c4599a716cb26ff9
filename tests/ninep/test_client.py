"""The trio client against the framework: multiplexing, cancellation, streams."""

import functools

import trio
import trio.testing

from styxgrid.ninep import serve_listeners
from styxgrid.ninep.client import open_client
from styxgrid.ninep.transport import open_listeners, parse_address

from .apps import TestTree


async def serve(nursery, tree) -> str:
    listeners = await open_listeners(parse_address("127.0.0.1:0"))
    await nursery.start(functools.partial(serve_listeners, tree, listeners))
    return "127.0.0.1:%d" % listeners[0].socket.getsockname()[1]


async def test_cancelled_read_sends_flush_and_connection_goes_on(nursery):
    tree = TestTree()
    async with open_client(await serve(nursery, tree), uname="grid") as c:
        f = await c.open("parked")
        async with trio.open_nursery() as inner:
            inner.start_soon(f.read)
            await trio.testing.wait_all_tasks_blocked()
            assert tree.parked == 1
            inner.cancel_scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert tree.cancelled == 1 and tree.parked == 0
        assert await c.read_file("fast") == b"fast\n"
        await f.close()
        assert sorted(c.free_tags) == list(range(c.next_tag)) and not c.pending   # none leaked


async def test_many_requests_in_flight_on_one_connection(nursery):
    tree = TestTree()
    async with open_client(await serve(nursery, tree), uname="grid") as c:
        results = []

        async def parked():
            results.append(await c.read_file("parked"))

        async with trio.open_nursery() as inner:
            for _ in range(20):
                inner.start_soon(parked)
            await trio.testing.wait_all_tasks_blocked()
            assert tree.parked == 20
            for i in range(20):          # fast reads pass the 20 parked ones
                assert await c.read_file(f"many/f{i:02d}") == b"x"
            tree.release.set()
        assert results == [b"late\n"] * 20


async def test_stream_and_ls(nursery):
    async with open_client(await serve(nursery, TestTree()), uname="grid") as c:
        chunks = [chunk async for chunk in c.stream("fast")]
        assert b"".join(chunks) == b"fast\n"
        assert [s.name for s in await c.ls("many")][:3] == ["f00", "f01", "f02"]
