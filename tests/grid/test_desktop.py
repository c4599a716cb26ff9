"""Desktop-grid behaviours with real workers and real processes: slow nodes,
runaway tasks (issue: slow tasks re-run elsewhere, owners reclaim their
machines, tasks checkpoint and move)."""

from __future__ import annotations

import glob
import io
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import tarfile
import tempfile

import pytest
import trio

from styxgrid.ninep import NinePError
from styxgrid.ninep.client import open_client
from styxgrid.ninep.messages import ORDWR, OWRITE

from ..helpers import REPO, submit, wait
from .test_grid import records, wait_for_event
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


TICKING = ("cmd sh -c 'i=0; while [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done; "
           "echo finished on $STYXGRID_NODE'\n")


def ticking_shells() -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().startswith(b"sh\0-c\0i=0; while"):
                    found.append(int(pid))
        except OSError:
            continue
    return found


def state_of(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


SPIN = "sh -c while :; do :; done"


@pytest.mark.parametrize("holding", ["auto", "rlimit"])
async def test_a_busy_task_leaves_the_owner_s_busy_program_most_of_their_cpu(grid, holding):
    """A task and a program of the owner, both spinning on one cpu: the owner's
    gets about nine tenths, as beside a process niced to 10 (the task's cgroup
    weighs what such a process does, not what the owner's program does), on a
    node of many cpus too (its cgroup of places weighs one niced process).
    Without cgroups the task's session is its own scheduling group, niced."""
    grid.start_worker("desk", 4, "--limits", holding)
    owner = None
    async with open_client(grid.sock) as c:
        job = await submit(c, "cmd taskset -c 0 sh -c 'while :; do :; done'\nsubmit\n")
        try:
            with trio.fail_after(30):
                while not (task := tasks_of((SPIN,))):
                    await trio.sleep(0.05)
            owner = subprocess.Popen(["taskset", "-c", "0", "sh", "-c", "while :; do :; done"],
                                     start_new_session=True)    # a desktop's session
            with trio.fail_after(10):               # both spinning on cpu 0
                while cpu_seconds(owner.pid) == 0:
                    await trio.sleep(0.01)
            (spinner,) = task
            before = cpu_seconds(spinner), cpu_seconds(owner.pid)
            await trio.sleep(2)                     # the window the shares are measured over
            task_cpu, owner_cpu = (cpu_seconds(p) - b for p, b in zip((spinner, owner.pid),
                                                                       before))
            assert owner_cpu / (owner_cpu + task_cpu) > 0.75, (owner_cpu, task_cpu)
        finally:
            if owner is not None:
                owner.kill()
                owner.wait()
            await c.write_file(f"jobs/{job}/ctl", b"kill")


async def test_the_owner_back_suspends_a_task_and_gone_again_it_finishes_there(grid):
    busy = os.path.join(grid.dir, "busy")
    grid.start_worker("desk", 1, "--busy-file", busy, "--suspend-for", "60")
    async with open_client(grid.sock) as c:
        job = await submit(c, TICKING + "submit\n")
        with trio.fail_after(30):
            while not (shells := ticking_shells()):
                await trio.sleep(0.05)
        open(busy, "w").close()                       # the owner is back
        with trio.fail_after(1):                      # stopped within a second
            while state_of(shells[0]) != "T":
                await trio.sleep(0.02)
        with trio.fail_after(10):
            while "desk suspended" not in (await c.read_file("nodes/index")).decode():
                await trio.sleep(0.05)
        assert state_of(shells[0]) == "T"
        os.unlink(busy)                               # and gone again, within T1
        with trio.fail_after(10):
            while "desk suspended" in (await c.read_file("nodes/index")).decode():
                await trio.sleep(0.05)
        with trio.fail_after(30):
            assert " done " in await wait(c, job)
        assert await c.read_file(f"jobs/{job}/stdout") == b"finished on desk\n"


async def test_an_owner_who_stays_has_the_task_vacated_and_it_runs_elsewhere(grid):
    busy = os.path.join(grid.dir, "busy")
    grid.start_worker("desk", 1, "--busy-file", busy, "--suspend-for", "0.5",
                      "--vacate-grace", "1")
    async with open_client(grid.sock) as c:
        job = await submit(c, TICKING + "submit\n")
        with trio.fail_after(30):
            while not (shells := ticking_shells()):
                await trio.sleep(0.05)
        open(busy, "w").close()
        with trio.fail_after(30):
            while b"evictions=1" not in await c.read_file(f"jobs/{job}/tasks/0/status"):
                await trio.sleep(0.05)
        assert not alive(set(shells))
        why = (await c.read_file(f"jobs/{job}/why")).decode()
        assert "1 with their owners back" in why, why
        grid.start_worker("spare", 1)
        with trio.fail_after(30):
            assert " done " in await wait(c, job)
        assert await c.read_file(f"jobs/{job}/stdout") == b"finished on spare\n"
        status = (await c.read_file(f"jobs/{job}/tasks/0/status")).decode()
        assert "done" in status and "evictions=1" in status
        events = (await c.read_file(f"jobs/{job}/events")).decode()
        assert "queued (vacated from desk: the owner took the machine back)" in events


async def test_vacating_asks_a_task_s_setsid_leftover_to_end_too(grid):
    """SIGTERM goes to the task's cgroup, not only its process group."""
    marks = pathlib.Path(tempfile.mkdtemp(dir="/tmp"))     # where the task user may write
    marks.chmod(0o1777)
    busy = os.path.join(grid.dir, "busy")
    grid.start_worker("desk", 1, "--busy-file", busy, "--suspend-for", "0.5",
                      "--vacate-grace", "2")
    apart = f"trap 'echo term > {marks}/apart; exit' TERM; while :; do sleep 0.05; done"
    async with open_client(grid.sock) as c:
        # the task ends a second after its SIGTERM: its leftover is killed once it ends
        script = (f"trap 'sleep 1; exit 0' TERM; setsid sh -c {shlex.quote(apart)} & "
                  f"echo started > {marks}/task; while :; do sleep 0.05; done")
        job = await submit(c, f"cmd sh -c {shlex.quote(script)}\nsubmit\n")
        with trio.fail_after(30):
            while not (marks / "task").exists():
                await trio.sleep(0.05)
        open(busy, "w").close()
        with trio.fail_after(30):
            while b"evictions=1" not in await c.read_file(f"jobs/{job}/tasks/0/status"):
                await trio.sleep(0.05)
        assert (marks / "apart").read_text() == "term\n"
    shutil.rmtree(marks)


def counted(grid) -> int:
    """How far the checkpointing task has counted on `desk` (its saved counter)."""
    for found in glob.glob(os.path.join(grid.dir, "work-desk", "*", ".checkpoint", "count")):
        with open(found) as f:
            text = f.read().strip()
        if text.isdigit():
            return int(text)
    return 0


async def vacate_a_counting_task(grid, c) -> int:
    """Start the example's counting task on `desk`, have the owner come back
    half-way and stay: the task is vacated with its checkpoint saved."""
    counter = shutil.copy(REPO / "scripts" / "examples" / "count.sh", grid.dir)
    busy = os.path.join(grid.dir, "busy")
    grid.start_worker("desk", 1, "--busy-file", busy, "--suspend-for", "0.2",
                      "--vacate-grace", "10")
    job = await submit(c, f"cmd {counter}\nargs 40\nsubmit\n")
    with trio.fail_after(30):
        while counted(grid) < 8:
            await trio.sleep(0.05)
    open(busy, "w").close()
    with trio.fail_after(30):
        while b"evictions=1" not in await c.read_file(f"jobs/{job}/tasks/0/status"):
            await trio.sleep(0.05)
    await wait_for_event(c, f"jobs/{job}/events", f"job {job} task 0 checkpoint saved on desk")
    return job


def resumed_from(stdout: bytes) -> int:
    first, last = stdout.decode().splitlines()
    assert first.startswith("resumed at ") and last == "counted to 40 on spare", stdout
    return int(first.split()[2].split()[0])


async def test_a_vacated_checkpointing_task_resumes_elsewhere_from_its_checkpoint(grid):
    async with open_client(grid.sock) as c:
        job = await vacate_a_counting_task(grid, c)
        saved = await c.read_file(f"jobs/{job}/tasks/0/checkpoint")
        with tarfile.open(fileobj=io.BytesIO(saved)) as tar:
            kept = int(tar.extractfile("./count").read())       # the owner reads it too
        assert kept >= 8
        grid.start_worker("spare", 1)
        with trio.fail_after(60):
            assert " done " in await wait(c, job)
        assert resumed_from(await c.read_file(f"jobs/{job}/stdout")) == kept


async def test_a_checkpoint_survives_a_sigkill_and_restart_of_the_scheduler(grid):
    async with open_client(grid.sock) as c:
        job = await vacate_a_counting_task(grid, c)
    grid.scheduler.popen.send_signal(signal.SIGKILL)
    grid.scheduler.popen.wait()
    grid.start_scheduler()
    grid.start_worker("spare", 1)
    async with open_client(grid.sock) as c:
        with trio.fail_after(60):
            assert " done " in await wait(c, job)
        assert resumed_from(await c.read_file(f"jobs/{job}/stdout")) >= 8


async def test_a_checkpoint_exit_saves_and_runs_again_at_once_on_the_same_node(grid):
    """A task that saves and exits with the job's checkpoint_exit code every few
    steps (HTCondor's self-checkpointing) ends having counted once, in pieces."""
    grid.start_worker("w1", 1)
    script = ("n=0; f=$STYXGRID_CHECKPOINT/n; [ -f $f ] && n=$(cat $f); "
              "echo run from $n; n=$((n+1)); echo $n > $f; "
              "if [ $n -lt 3 ]; then exit 85; fi; echo done at $n")
    async with open_client(grid.sock) as c:
        job = await submit(c, f"cmd sh\nargs -c {shlex.quote(script)}\n"
                              "checkpoint_exit 85\nsubmit\n")
        with trio.fail_after(30):
            assert " done " in await wait(c, job)
        assert await c.read_file(f"jobs/{job}/stdout") == \
            b"run from 0\nrun from 1\nrun from 2\ndone at 3\n"
        events = (await c.read_file(f"jobs/{job}/events")).decode()
        assert events.count("checkpoint saved on w1") == 2, events
        assert events.count("running node=") == 1, events


async def test_checkpoint_every_asks_the_task_to_save_with_sigusr1(grid):
    grid.start_worker("w1", 1)
    script = ("trap 'echo saved > $STYXGRID_CHECKPOINT/mark' USR1; "
              "while [ ! -f $STYXGRID_CHECKPOINT/mark ]; do sleep 0.1; done; sleep 3")
    async with open_client(grid.sock) as c:
        job = await submit(c, f"cmd sh\nargs -c {shlex.quote(script)}\n"
                              "checkpoint_every 1\nsubmit\n")
        await wait_for_event(c, f"jobs/{job}/events", "checkpoint saved on w1")
        saved = await c.read_file(f"jobs/{job}/tasks/0/checkpoint")
        with tarfile.open(fileobj=io.BytesIO(saved)) as tar:
            assert tar.extractfile("./mark").read() == b"saved\n"
        await c.write_file(f"jobs/{job}/ctl", b"kill")


async def test_a_checkpoint_that_cannot_be_saved_leaves_the_worker_and_the_task_running(grid):
    """A folder too deep to save is logged and left; the worker goes on and so
    does the task (the worker once died of a RecursionError here)."""
    worker = grid.start_worker("w1", 1)
    script = ("f=$STYXGRID_CHECKPOINT/ran; if [ -f $f ]; then echo second run; exit 0; fi; "
              "touch $f; mkdir -p $STYXGRID_CHECKPOINT/$(printf 'd/%.0s' $(seq 1200)); exit 3")
    async with open_client(grid.sock) as c:
        job = await submit(c, f"cmd sh\nargs -c {shlex.quote(script)}\ncheckpoint_exit 3\n"
                              "submit\n")
        with trio.fail_after(60):
            assert " done " in await wait(c, job)
        assert await c.read_file(f"jobs/{job}/stdout") == b"second run\n"
        assert await c.read_file(f"jobs/{job}/tasks/0/checkpoint") == b""
        assert worker.said("checkpoint not saved: folders deeper than 64", 10)
        assert worker.popen.poll() is None
        again = await submit(c, "cmd true\nsubmit\n")
        assert " done " in await wait(c, again)


async def test_a_worker_writes_a_checkpoint_only_while_it_holds_the_task(grid):
    async with open_client(grid.sock) as c, open_client(grid.sock, aname="worker") as w:
        job = await submit(c, "cmd true\nsubmit\n")
        ctl = await w.open("work", ORDWR)
        await ctl.pwrite(0, b"join hand\nslots 1\n")
        lease = await w.open("work")
        assert records(await lease.pread(0, 4096)) == [(job, 0)]
        upload = await w.open(f"jobs/{job}/tasks/0/checkpoint", OWRITE)
        await upload.pwrite(0, b"A" * 10)
        await ctl.pwrite(0, f"checkpoint {job} 0 10\n".encode())
        assert await c.read_file(f"jobs/{job}/tasks/0/checkpoint") == b"A" * 10
        with pytest.raises(NinePError, match="this checkpoint upload was committed"):
            await upload.pwrite(0, b"B" * 10)           # not into the kept one
        again = await w.open(f"jobs/{job}/tasks/0/checkpoint", OWRITE)
        await ctl.pwrite(0, f"vacated {job} 0\n".encode())
        with pytest.raises(NinePError, match="no longer leased|is not leased"):
            await again.pwrite(0, b"C" * 10)            # nor after the lease
        with pytest.raises(NinePError, match="is not leased"):
            await w.open(f"jobs/{job}/tasks/0/checkpoint", OWRITE)
        assert await c.read_file(f"jobs/{job}/tasks/0/checkpoint") == b"A" * 10
