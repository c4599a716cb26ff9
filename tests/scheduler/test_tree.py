"""The grid and its served tree in one process: a real Grid (SQLite file, spool)
served over trio's memory streams, with the clock under the test's control for
heartbeats and timeouts."""

from __future__ import annotations

from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import AsyncIterator, Awaitable, Callable

import pytest
import trio
import trio.testing

from styxgrid.api import GridClient
from styxgrid.exchange import Done, Heartbeat, Join
from styxgrid.ninep.client import Client, open_client
from styxgrid.ninep.errors import NinePError
from styxgrid.ninep.messages import ORDWR
from styxgrid.ninep.server import serve_stream
from styxgrid.scheduler.config import SchedulerConfig
from styxgrid.scheduler.grid import Grid
from styxgrid.scheduler.tree import GridFS
from styxgrid.scheduler.tree.qids import Kind, node_path, qpath
from styxgrid.scheduler.tree.verbs import Verb, Verbs

Connect = Callable[..., Awaitable[Client]]


@asynccontextmanager
async def served_grid(folder, **options) -> AsyncIterator[tuple[Grid, Connect]]:
    """A Grid in `folder` and a way to attach to its tree over a memory stream
    (the attach name is believed, as on an --insecure port)."""
    grid = Grid(SchedulerConfig(folder, **options))
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(grid.run)
            fs = GridFS(grid)
            async with AsyncExitStack() as clients:

                async def connect(uname: str = "alice", aname: str = "") -> Client:
                    ours, theirs = trio.testing.memory_stream_pair()
                    nursery.start_soon(partial(serve_stream, theirs, fs,
                                               peer={"transport": "memory"}))
                    return await clients.enter_async_context(
                        open_client(ours, uname=uname, aname=aname))

                yield grid, connect
            nursery.cancel_scope.cancel()
    finally:
        grid.close()


async def submit(client: Client, description: str) -> int:
    return await GridClient(client).submit(description)


async def join(client: Client, name: str, slots: int = 1):
    ctl = await client.open("work", ORDWR)
    await ctl.pwrite(0, Join(name, slots).encode())
    return ctl


async def test_a_silent_worker_is_lost_after_the_heartbeat_timeout(tmp_path, autojump_clock):
    async with served_grid(tmp_path, heartbeat_timeout=10.0) as (grid, connect):
        user, worker = await connect(), await connect("w1", "worker")
        ctl = await join(worker, "w1")
        job = await submit(user, "cmd /bin/true\nsubmit\n")
        work = await worker.open("work")
        record = await work.pread(0, 8192)
        assert record.startswith(f"task {job} 0 1 ".encode())
        assert (await user.read_file(f"jobs/{job}/tasks/0/status")).startswith(b"0 running")
        await trio.sleep(9)                     # silent, but not yet for long enough
        assert await user.read_file("nodes/index")
        await trio.sleep(3)
        assert await user.read_file("nodes/index") == b""
        assert (await user.read_file(f"jobs/{job}/tasks/0/status")).startswith(b"0 queued")
        with pytest.raises(NinePError, match="worker lost"):
            await ctl.pwrite(0, Heartbeat().encode())


async def test_heartbeats_keep_a_worker_and_its_task(tmp_path, autojump_clock):
    async with served_grid(tmp_path, heartbeat_timeout=10.0) as (grid, connect):
        user, worker = await connect(), await connect("w1", "worker")
        ctl = await join(worker, "w1")
        job = await submit(user, "cmd /bin/true\nsubmit\n")
        work = await worker.open("work")
        assert await work.pread(0, 8192)
        for _ in range(20):
            await ctl.pwrite(0, Heartbeat(0.5).encode())
            await trio.sleep(3)
        assert (await user.read_file("nodes/w1/status")).startswith(b"w1 busy")
        await ctl.pwrite(0, Done(job, 0, 0).encode())
        assert (await user.read_file(f"jobs/{job}/wait")).startswith(f"{job} done ".encode())


async def test_a_flushed_read_of_work_gives_its_task_back(tmp_path):
    async with served_grid(tmp_path) as (grid, connect):
        user, worker = await connect(), await connect("w1", "worker")
        await join(worker, "w1")
        work = await worker.open("work")
        with trio.move_on_after(0.2):
            await work.pread(0, 8192)           # waits: nothing queued; then flushed
        job = await submit(user, "cmd /bin/true\nsubmit\n")
        assert (await user.read_file(f"jobs/{job}/tasks/0/status")).startswith(b"0 queued")
        again = await worker.open("work")
        assert (await again.pread(0, 8192)).startswith(f"task {job} 0 ".encode())


async def test_ctl_verbs_refused_with_the_table_help(tmp_path):
    async with served_grid(tmp_path) as (grid, connect):
        user = await connect()
        job = await submit(user, "cmd /bin/true\nsubmit\n")
        with pytest.raises(NinePError, match="^unknown verb 'explode': expected kill, hold, "
                           "release, priority P, retry, remove, request_cpus N, "
                           "request_memory SIZE, request_disk SIZE or request_gpus N$"):
            await user.write_file(f"jobs/{job}/ctl", b"explode\n")
        with pytest.raises(NinePError, match="^bad verb 'priority high': want 'priority P' "
                           "with P in -1000..1000$"):
            await user.write_file(f"jobs/{job}/ctl", b"priority high\n")
        with pytest.raises(NinePError, match="^bad verb 'drain a b': want 'drain \\[NODE\\]'$"):
            await user.write_file("ctl", b"drain a b\n")
        with pytest.raises(NinePError, match="^no node ghost$"):
            await user.write_file("ctl", b"drain ghost\n")
        worker = await connect("w1", "worker")
        await join(worker, "w1")
        with pytest.raises(NinePError, match="^no node ghost$"):
            await user.write_file("ctl", b"drain w1\ndrain ghost\n")
        assert await user.read_file("ctl") == b"running\n"      # nothing was drained
        await user.write_file(f"jobs/{job}/ctl", b"priority 5\n")
        assert grid.job(job).priority == 5


async def test_node_qid_paths_survive_a_restart(tmp_path):
    paths = []
    for _ in range(2):
        async with served_grid(tmp_path) as (grid, connect):
            worker, user = await connect("w1", "worker"), await connect()
            await join(worker, "w1")
            paths.append([(await user.stat(f"nodes/w1{leaf}")).qid.path
                          for leaf in ("", "/status", "/ad", "/ctl")])
    assert paths[0] == paths[1] == [node_path(kind, "w1") for kind in
                                    (Kind.NODE, Kind.NSTATUS, Kind.NAD, Kind.NCTL)]
    assert node_path(Kind.NODE, "w1") & 0xFF == Kind.NODE
    assert len({node_path(Kind.NODE, f"w{i}") for i in range(10000)}) == 10000


def test_qid_kinds_have_fixed_distinct_values():
    assert [k.value for k in Kind] == list(range(len(Kind)))
    assert qpath(Kind.TASK, 3, 0) == Kind.TASK | 3 << 8 | 1 << 40


VERBS = Verbs(Verb("go"), Verb("wait", "[S]", int), Verb("set", "N", int, "N a number"))


@pytest.mark.parametrize("line, parsed", [
    ("go", ("go", None)), ("  go \n", ("go", None)), ("wait", ("wait", None)),
    ("wait 3", ("wait", 3)), ("set 7", ("set", 7)),
])
def test_verbs_parse(line, parsed):
    assert VERBS.parse(line) == parsed


@pytest.mark.parametrize("line, message", [
    ("", "unknown verb '': expected go, wait [S] or set N"),
    ("go now", "unknown verb 'go now': expected go, wait [S] or set N"),
    ("\u00a0", "unknown verb '\\xa0': expected go, wait [S] or set N"),
    ("go\u00a0", "unknown verb 'go\\xa0': expected go, wait [S] or set N"),
    ("set\u20285", "unknown verb 'set\\u20285': expected go, wait [S] or set N"),
    ("set", "bad verb 'set': want 'set N' with N a number"),
    ("set x", "bad verb 'set x': want 'set N' with N a number"),
    ("wait 1 2", "bad verb 'wait 1 2': want 'wait [S]'"),
])
def test_verbs_refuse_with_help(line, message):
    with pytest.raises(NinePError) as refused:
        VERBS.parse(line)
    assert refused.value.ename == message


def test_verbs_check_every_line_before_any():
    with pytest.raises(NinePError, match="unknown verb 'bogus'"):
        VERBS.lines("go\nbogus\n")
    assert VERBS.lines("go\n\nset 2\n") == [("go", None), ("set", 2)]
