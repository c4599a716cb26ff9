"""Requests on partitionable workers, limits enforced, jobs that wait for jobs:
a real scheduler, real workers (as root: task users, cgroup v1 here), real
programs that allocate and write, and a restart of the scheduler."""

from __future__ import annotations

import os
import signal

import pytest

from styxgrid.ninep.client import open_client

from ..helpers import submit, wait
from .test_grid import wait_for_event



def hog(mib: int, seconds: float) -> str:
    """A task that allocates `mib` MiB a MiB at a time, touching it, then sleeps."""
    return ("cmd python3 -c 'import sys, time; b = [bytearray(1 << 20) for _ in "
            "range(int(sys.argv[1]))]; time.sleep(float(sys.argv[2])); "
            f"print(\"kept\", len(b))' {mib} {seconds}\n")


async def read(c, path: str) -> str:
    return (await c.read_file(path)).decode()


async def test_a_two_cpu_task_keeps_one_cpu_tasks_off_a_two_cpu_node(grid):
    grid.start_worker("duo", 2)
    async with open_client(grid.sock) as c:
        wide = await submit(c, "cmd sh -c 'echo start $(date +%s.%N); sleep 1; "
                               "echo end $(date +%s.%N)'\nrequest_cpus 2\nsubmit\n")
        await wait_for_event(c, f"jobs/{wide}/events", f"job {wide} task 0 running")
        narrow = await submit(c, "cmd sh -c 'echo start $(date +%s.%N)'\ntasks 2\nsubmit\n")
        assert "busy" in await read(c, f"jobs/{narrow}/why")
        assert "cpus=0/2" in await read(c, "nodes/duo/status")
        assert " done " in await wait(c, wide)
        assert " done " in await wait(c, narrow)
        wide_end = float((await read(c, f"jobs/{wide}/stdout")).split()[-1])
        for line in (await read(c, f"jobs/{narrow}/stdout")).splitlines():
            assert float(line.split()[1]) >= wide_end          # none ran beside it
        assert "STYXGRID_CPUS" not in await read(c, f"jobs/{wide}/desc")


async def test_a_job_asking_more_than_any_node_waits_with_the_reason(grid):
    grid.start_worker("small", 1, "--memory", "4G", "--disk", "10G")
    async with open_client(grid.sock) as c:
        job = await submit(c, "cmd true\nrequest_memory 8 GB\nsubmit\n")
        why = await read(c, f"jobs/{job}/why")          # the node joined before the submit
        assert "needs 8 GiB memory; the largest node offers 4 GiB" in why
        assert "Memory = 4096\n" in await read(c, "nodes/small/ad")
        await c.write_file(f"jobs/{job}/ctl", b"request_memory 2GB\n")
        assert " done " in await wait(c, job)
        assert "request_memory 2048 MiB" in await read(c, f"jobs/{job}/desc")


async def held_for_memory(grid, c, mib: int = 300) -> int:
    """A task that allocates `mib` MiB with a request of 100 MiB: held, with the
    reason in its status and the job's why."""
    job = await submit(c, hog(mib, 5) + "request_memory 100M\nsubmit\n")
    await wait_for_event(c, f"jobs/{job}/events", f"job {job} task 0 held on")
    status = await read(c, f"jobs/{job}/tasks/0/status")
    assert " held " in status and "memory request" in status and "raise request_memory" in status, status
    assert "held" in await read(c, f"jobs/{job}/status")
    why = await read(c, f"jobs/{job}/why")
    assert "1 tasks are held" in why and "memory request" in why
    await wait_for_event(c, f"jobs/{job}/events", f"job {job} task 0 held on")
    return job


async def test_a_task_past_its_memory_request_is_held_then_raised_and_released(grid):
    worker = grid.start_worker("cg", 1, "--limits", "cgroup")
    async with open_client(grid.sock) as c:
        assert 'Limits = "cgroup1"' in await read(c, "nodes/cg/ad")
        job = await held_for_memory(grid, c)
        status = await read(c, f"jobs/{job}/tasks/0/status")
        assert "went past its memory request of 100 MiB" in status, status
        await c.write_file(f"jobs/{job}/ctl", b"request_memory 1G\n")
        await c.write_file(f"jobs/{job}/ctl", b"release\n")
        assert " done " in await wait(c, job)
        assert (await read(c, f"jobs/{job}/stdout")).endswith("kept 300\n")
    assert worker.popen.poll() is None


async def test_a_child_process_killed_past_the_request_holds_the_task(grid):
    """The kernel kills the greedy child, the task's own process lives on and
    exits 0: the task is held all the same."""
    grid.start_worker("cg", 1, "--limits", "cgroup")
    async with open_client(grid.sock) as c:
        job = await submit(c, "cmd sh -c '" + hog(300, 0).removeprefix("cmd ").strip()
                           .replace("'", "\"") + "; echo survived'\nrequest_memory 100M\nsubmit\n")
        await wait_for_event(c, f"jobs/{job}/events", f"job {job} task 0 held on")
        status = await read(c, f"jobs/{job}/tasks/0/status")
        assert "went past its memory request of 100 MiB" in status, status


async def test_the_rlimit_fallback_holds_a_task_past_its_memory_request_too(grid):
    """With rlimits the worker looks: 150 MiB is seen (an allocation past twice
    the request, 200 MiB, would fail inside the task)."""
    grid.start_worker("rl", 1, "--limits", "rlimit")
    async with open_client(grid.sock) as c:
        assert 'Limits = "rlimit"' in await read(c, "nodes/rl/ad")
        job = await held_for_memory(grid, c, 150)
        status = await read(c, f"jobs/{job}/tasks/0/status")
        assert "MiB of its 100 MiB memory request" in status, status


async def test_a_hold_and_its_reason_survive_a_restart(grid):
    grid.start_worker("cg", 1)
    async with open_client(grid.sock) as c:
        job = await held_for_memory(grid, c)
    grid.scheduler.popen.send_signal(signal.SIGKILL)
    grid.scheduler.popen.wait()
    grid.start_scheduler()
    async with open_client(grid.sock) as c:
        status = await read(c, f"jobs/{job}/tasks/0/status")
        assert " held " in status and "memory request" in status


@pytest.mark.parametrize("cmd", [
    "sh -c 'head -c 8000000 /dev/urandom > big; sleep 30'",
    # its output and error files are on the worker's disk too (and go to the
    # scheduler's): a task writing on and on must not fill them
    "sh -c 'while :; do head -c 1000000 /dev/zero; sleep 0.2; done 1>&2'",
])
async def test_a_task_past_its_disk_request_is_held(grid, cmd):
    grid.start_worker("disk", 1)
    async with open_client(grid.sock) as c:
        job = await submit(c, f"cmd {cmd}\nrequest_disk 2M\nsubmit\n")
        await wait_for_event(c, f"jobs/{job}/events", f"job {job} task 0 held on")
        status = await read(c, f"jobs/{job}/tasks/0/status")
        assert "past its 2 MiB request" in status and "raise request_disk" in status


async def test_gpu_tasks_see_only_the_devices_they_were_given(grid):
    grid.start_worker("gpu", 4, "--gpus", "0,3")
    async with open_client(grid.sock) as c:
        job = await submit(c, "cmd sh -c 'echo $CUDA_VISIBLE_DEVICES; sleep 0.5'\ntasks 2\n"
                              "request_gpus 1\nsubmit\n")
        plain = await submit(c, "cmd sh -c 'echo [$CUDA_VISIBLE_DEVICES]'\nsubmit\n")
        assert " done " in await wait(c, job)
        assert " done " in await wait(c, plain)
        assert sorted((await read(c, f"jobs/{job}/stdout")).split()) == ["0", "3"]
        assert await read(c, f"jobs/{plain}/stdout") == "[]\n"
        assert "gpus=2/2" in await read(c, "nodes/gpu/status")


async def test_a_chain_and_a_diamond_run_in_order_across_a_restart(grid):
    grid.start_worker("w", 4)
    async with open_client(grid.sock) as c:
        log = "/tmp/" + os.path.basename(grid.dir) + ".order"
        step = "cmd sh -c 'sleep 0.3; echo {0} >> " + log + "'\n"
        a = await submit(c, step.format("a") + "submit\n")
        b = await submit(c, step.format("b") + f"after {a}\nsubmit\n")
        c1 = await submit(c, step.format("c1") + f"after {b}\nsubmit\n")
        c2 = await submit(c, step.format("c2") + f"after {b}\nsubmit\n")
        d = await submit(c, step.format("d") + f"after {c1} {c2}\nsubmit\n")
        assert "waiting" in await read(c, f"jobs/{d}/status")
        assert f"waiting for jobs {c1} {c2} to end" in await read(c, f"jobs/{d}/why")
        await wait_for_event(c, f"jobs/{b}/events", f"job {b} task 0 running")
    grid.scheduler.popen.send_signal(signal.SIGKILL)       # in the middle: b runs
    grid.scheduler.popen.wait()
    grid.start_scheduler()
    async with open_client(grid.sock) as c:
        assert "waiting" in await read(c, f"jobs/{d}/status")
        assert " done " in await wait(c, d)
        with open(log) as f:
            order = f.read().split()
        os.unlink(log)
        assert order[:2] == ["a", "b"] and sorted(order[2:4]) == ["c1", "c2"] \
            and order[4:] == ["d"], order
        for child in (b, c1, c2, d):
            assert " done " in await wait(c, child)


async def test_a_failed_parent_holds_its_child_with_the_reason_and_any_runs(grid):
    grid.start_worker("w", 2)
    async with open_client(grid.sock) as c:
        a = await submit(c, "cmd sh -c 'sleep 0.3; exit 3'\nsubmit\n")
        b = await submit(c, f"cmd echo b\nafter {a}\nsubmit\n")
        anyway = await submit(c, f"cmd echo anyway\nafter {a}:any\nsubmit\n")
        assert " failed " in await wait(c, a)
        assert " done " in await wait(c, anyway)
        await wait_for_event(c, f"jobs/{b}/events", f"job {b} held (its parent job {a} failed)")
        status = await read(c, f"jobs/{b}/status")
        assert " held " in status and "held=1" in status
        why = await read(c, f"jobs/{b}/why")
        assert f"its parent job {a} failed" in why
        await c.write_file(f"jobs/{b}/ctl", b"release\n")        # run it anyway
        assert " done " in await wait(c, b)


async def test_unknown_and_later_parents_are_refused_at_submit(grid):
    async with open_client(grid.sock) as c:
        mine = await submit(c, "cmd true\nsubmit\n")
        for text, error in ((f"after {mine + 1}", f"after: no job {mine + 1} of yours"),
                            ("after 99999", "after: no job 99999 of yours"),
                            ("after x", "after: 'x' is not a job id")):
            try:
                await submit(c, f"cmd true\n{text}\nsubmit\n")
            except Exception as exc:            # the write of /new is refused
                assert error in str(exc), exc
            else:
                raise AssertionError(f"{text} was taken")
        assert [s.name for s in await c.ls("jobs")] == [str(mine)]
