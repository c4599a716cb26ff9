"""Desktop-grid behaviours with real workers and real processes: slow nodes,
runaway tasks (issue: slow tasks re-run elsewhere, owners reclaim their
machines, tasks checkpoint and move)."""

from __future__ import annotations

import os

import trio

from styxgrid.ninep.client import open_client

from ..helpers import submit, wait
from .test_rights import alive, tasks_of

SLOW_ON_ONE_NODE = ("cmd sh -c 'if [ $STYXGRID_NODE = slow ]; then exec sleep 61; fi; "
                    "sleep 0.3; echo task $STYXGRID_TASK on $STYXGRID_NODE'\ntasks 10\n")


async def test_a_task_stuck_on_a_slow_node_is_copied_and_the_fast_copy_counts(grid):
    """10 tasks on 3 nodes, one of which never finishes what it gets: the job
    ends in seconds, each task's output is recorded once, from a fast node, and
    the slow run is killed."""
    for name in ("fast1", "fast2", "slow"):
        grid.start_worker(name, 1)
    async with open_client(grid.sock) as c:
        job = await submit(c, SLOW_ON_ONE_NODE + "submit\n")
        with trio.fail_after(30):
            while not (stuck := tasks_of(("sleep 61",))):
                await trio.sleep(0.05)
            assert " done " in await wait(c, job)
        lines = (await c.read_file(f"jobs/{job}/stdout")).decode().splitlines()
        assert [int(line.split()[1]) for line in lines] == list(range(10))
        assert not any(line.endswith("on slow") for line in lines)
        events = (await c.read_file(f"jobs/{job}/events")).decode()
        assert "copy running node=fast" in events and "(first of 2 runs to end; " \
            "killed on slow)" in events, events
        with trio.fail_after(10):
            while alive(stuck):
                await trio.sleep(0.05)


async def test_without_speculation_the_job_waits_for_the_slow_node(grid):
    """The same job with `speculate off`: the stuck task holds the job."""
    for name in ("fast1", "slow"):
        grid.start_worker(name, 1)
    async with open_client(grid.sock) as c:
        job = await submit(c, SLOW_ON_ONE_NODE + "speculate off\nsubmit\n")
        with trio.fail_after(30):
            while b"done=9" not in await c.read_file(f"jobs/{job}/status"):
                await trio.sleep(0.05)
        why = (await c.read_file(f"jobs/{job}/why")).decode()
        assert why == f"job {job} has no queued tasks: 1 running\n"
        await c.write_file(f"jobs/{job}/ctl", b"kill")


async def test_max_runtime_ends_a_runaway_task_with_the_reason(grid):
    grid.start_worker("w1", 1)
    async with open_client(grid.sock) as c:
        job = await submit(c, "cmd sleep 62\nmax_runtime 1\nsubmit\n")
        with trio.fail_after(30):
            while not (pids := tasks_of(("sleep 62",))):
                await trio.sleep(0.05)
            assert " failed " in await wait(c, job)
        status = (await c.read_file(f"jobs/{job}/tasks/0/status")).decode()
        assert "reason=ran past its max_runtime of 1s (killed)" in status
        with trio.fail_after(10):
            while alive(pids):
                await trio.sleep(0.05)
        assert os.path.exists(grid.sock)
