"""The grid end to end: a real scheduler, real workers running real programs, the
9P client as the user, and the SQLite file as the record."""

from __future__ import annotations

import os
import pwd
import random
import signal
import sqlite3
import subprocess
import sys

import pytest
import trio
import trio.testing

from styxgrid.ninep import NinePError
from styxgrid.ninep.client import open_client
from styxgrid.ninep.messages import ORDWR

from ..conformance import check_both
from ..helpers import STYXGRID, TIMEOUT, submit, wait

async def read(client, path: str) -> str:
    return (await client.read_file(path)).decode()


async def test_echo_hi_one_task(grid):
    grid.start_worker("w1")
    async with open_client(grid.sock) as c:
        job = await submit(c, "submit echo hi\n")
        status = await wait(c, job)
        assert status.split()[:2] == [str(job), "done"]
        assert await read(c, f"jobs/{job}/stdout") == "hi\n"
        assert await read(c, f"jobs/{job}/tasks/0/exit") == "0\n"
        assert await read(c, f"jobs/{job}/tasks/0/node") == "w1\n"
        assert "cmd echo" in await read(c, f"jobs/{job}/desc")
        assert str(job) in [s.name for s in await c.ls("jobs")]


async def test_a_task_starts_with_no_signal_ignored(grid):
    """Not the worker's SIGPIPE: a pipe whose reader goes away ends its writer
    quietly, as in a shell."""
    grid.start_worker("w1")
    async with open_client(grid.sock) as c:
        job = await submit(c, "submit sh -c 'grep SigIgn /proc/self/status; yes | head -1'\n")
        assert " done " in await wait(c, job)
        ignored, y = (await read(c, f"jobs/{job}/stdout")).split("\n")[:2]
        assert int(ignored.split()[1], 16) & 0x7fffffff == 0     # 1..31 (32, 33: libc's)
        assert y == "y"
        assert await read(c, f"jobs/{job}/stderr") == ""


async def test_hundred_tasks_each_see_their_index(grid):
    grid.start_worker("w1", slots=2)
    grid.start_worker("w2", slots=2)
    async with open_client(grid.sock) as c:
        job = await submit(c, "cmd sh -c 'echo task $STYXGRID_TASK of $STYXGRID_JOB'\n"
                              "tasks 100\nsubmit\n")
        assert " done tasks=100 " in await wait(c, job)
        for t in range(100):
            assert await read(c, f"jobs/{job}/tasks/{t}/stdout") == f"task {t} of {job}\n"
        whole = await read(c, f"jobs/{job}/stdout")
        assert whole == "".join(f"task {t} of {job}\n" for t in range(100))
        nodes = {(await read(c, f"jobs/{job}/tasks/{t}/node")).strip() for t in range(100)}
        assert nodes <= {"w1", "w2"}


async def test_inputs_from_data_and_outputs_back(grid):
    grid.start_worker("w1")
    async with open_client(grid.sock) as c:
        await c.write_file("data/words.txt", b"hello grid\n")
        job = await submit(c, "\n".join([
            "cmd sh -c 'tr a-z A-Z < words.txt > shout.$STYXGRID_TASK; echo made'",
            "input words.txt", "output shout.$STYXGRID_TASK", "tasks 2", "submit", ""]))
        assert " done " in await wait(c, job)
        assert sorted(s.name for s in await c.ls(f"jobs/{job}/outputs")) == ["shout.0",
                                                                           "shout.1"]
        assert await read(c, f"jobs/{job}/outputs/shout.1") == "HELLO GRID\n"
        assert [s.name for s in await c.ls(f"jobs/{job}/inputs")] == ["words.txt"]


async def test_a_worker_fetches_a_job_input_once_and_gives_each_task_a_copy(grid):
    """The input is removed from /data while the first task runs: the second task,
    on the same worker, still gets it, and not as the first task left its copy."""
    grid.start_worker("w1")                          # one slot: one task after the other
    async with open_client(grid.sock) as c:
        await c.write_file("data/table", b"v1\n")
        job = await submit(c, "\n".join([
            "cmd sh -c 'cat table; echo edited >> table; "
            "if [ $STYXGRID_TASK = 0 ]; then sleep 1.5; fi'",
            "input table", "tasks 2", "submit", ""]))
        with trio.fail_after(TIMEOUT):
            async for chunk in c.stream(f"jobs/{job}/tasks/0/stdout"):
                assert chunk == b"v1\n"             # task 0 has its copy and runs
                break
        await c.remove("data/table")
        assert " done=2 " in await wait(c, job)
        assert await read(c, f"jobs/{job}/tasks/1/stdout") == "v1\n"


async def test_requirements_no_node_meets_then_a_matching_worker_joins(grid):
    grid.start_worker("plain")
    async with open_client(grid.sock) as c:
        job = await submit(c, 'cmd echo gpu\nrequirements HasGpu == true && Memory > 1\n'
                              'submit\n')
        assert (await read(c, f"jobs/{job}/status")).split()[1] == "queued"
        why = await read(c, f"jobs/{job}/why")
        assert "no node matches" in why
        assert "'HasGpu == true' fails on 1 of 1 nodes" in why
        assert "'Memory > 1' fails on 0 of 1 nodes" in why
        grid.start_worker("gpu", 1, "--attr", "HasGpu=true")
        assert " done " in await wait(c, job)
        assert await read(c, f"jobs/{job}/tasks/0/node") == "gpu\n"
        ad = await read(c, "nodes/gpu/ad")
        assert "HasGpu = true" in ad and 'Name = "gpu"' in ad


def pids_running(marker: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout
    return out.split()


async def test_kill_stops_the_process_within_a_second(grid):
    grid.start_worker("w1")
    marker = "sleep 61.2345"
    async with open_client(grid.sock) as c:
        job = await submit(c, f"submit {marker}\n")
        with trio.fail_after(TIMEOUT):
            while not pids_running(marker):
                await trio.sleep(0.02)
        pidfds = [os.pidfd_open(int(pid)) for pid in pids_running(marker)]
        await c.write_file(f"jobs/{job}/ctl", b"kill\n")
        with trio.fail_after(1.0):
            for pidfd in pidfds:                    # readable once that process has ended
                await trio.lowlevel.wait_readable(pidfd)
                os.close(pidfd)
        assert not pids_running(marker)
        assert (await wait(c, job)).split()[1] == "killed"
        # killed, it did not exit by itself: no exit status (a negative one is a signal's)
        assert await read(c, f"jobs/{job}/tasks/0/status") == "0 killed reason=killed\n"
        assert await read(c, f"jobs/{job}/tasks/0/exit") == ""


async def wait_for_event(client, path: str, wanted: str, count: int = 1) -> None:
    """Read an event stream until `count` lines contain `wanted`."""
    seen = 0
    with trio.fail_after(TIMEOUT):
        async for chunk in client.stream(path):
            seen += chunk.decode().count(wanted)
            if seen >= count:
                return
    raise AssertionError(f"{path} ended before {count} x {wanted!r}")


async def test_scheduler_sigkill_and_restart_loses_nothing(grid):
    grid.start_worker("w1", slots=4)
    grid.start_worker("w2", slots=4)
    async with open_client(grid.sock) as c:
        job = await submit(c, "cmd sh -c 'sleep 0.1; echo $STYXGRID_TASK'\ntasks 200\nsubmit\n")
        await wait_for_event(c, f"jobs/{job}/events", " done exit=0", 30)
    grid.scheduler.popen.send_signal(signal.SIGKILL)
    grid.scheduler.popen.wait()
    grid.start_scheduler()                     # same state dir, same (stale) socket path
    async with open_client(grid.sock) as c:
        assert " done tasks=200 " in await wait(c, job)
        for t in range(200):
            assert await read(c, f"jobs/{job}/tasks/{t}/stdout") == f"{t}\n"
    db = sqlite3.connect(os.path.join(grid.state, "grid.db"))
    rows = db.execute("SELECT task, state FROM results WHERE job=?", (job,)).fetchall()
    assert sorted(t for t, _ in rows) == list(range(200))
    assert {s for _, s in rows} == {2}         # DONE, each task exactly once


async def test_worker_sigkill_mid_task_reruns_elsewhere(grid):
    grid.start_worker("doomed")
    async with open_client(grid.sock) as c:
        job = await submit(c, "submit sh -c 'sleep 1.5; echo finished on $STYXGRID_NODE'\n")
        await wait_for_event(c, f"jobs/{job}/events", "task 0 running node=doomed")
        grid.workers["doomed"].popen.send_signal(signal.SIGKILL)
        grid.workers["doomed"].popen.wait()
        grid.start_worker("spare")
        assert " done " in await wait(c, job)
        assert await read(c, f"jobs/{job}/stdout") == "finished on spare\n"


def records(lease: bytes) -> list[tuple[int, int]]:
    """The (job, task) of each record a read of /work returned."""
    out = []
    while lease:
        head, _, rest = lease.partition(b"\n")
        word, job, task, _tasks, _owner, size = head.split()
        assert word == b"task"
        out.append((int(job), int(task)))
        lease = rest[int(size):]
    return out


async def test_a_heartbeat_load_is_what_matchmaking_and_the_ad_see(grid):
    """A node busy at join is not given a job that wants a quiet one; once its
    heartbeat says it is quiet, its waiting read gets the task, and its ad agrees."""
    async with open_client(grid.sock) as c, open_client(grid.sock, aname="worker") as w:
        ctl = await w.open("work", ORDWR)
        await ctl.pwrite(0, b"join busy\nslots 1\nattr LoadAvg = 9.0\n")
        job = await submit(c, "cmd true\nrequirements LoadAvg < 1\nsubmit\n")
        assert "'LoadAvg < 1' fails on 1 of 1 nodes" in await read(c, f"jobs/{job}/why")
        work = await w.open("work")
        got: list = []

        async def lease() -> None:
            got.extend(records(await work.pread(0, 4096)))
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lease)
                await ctl.pwrite(0, b"heartbeat load=0.50")
        assert got == [(job, 0)]
        assert "LoadAvg = 0.5\n" in await read(c, "nodes/busy/ad")


async def test_a_read_of_work_leases_up_to_the_lease_only_of_the_job_last_reported(grid):
    """The labour exchange by hand: a free slot takes any job's task; beyond its
    slots a worker is given more of the job it last reported, as many as its lease
    and the read's size allow, and a bad lease changes nothing."""
    async with open_client(grid.sock) as c, open_client(grid.sock, aname="worker") as w:
        job = await submit(c, "cmd true\ntasks 10\nsubmit\n")
        ctl = await w.open("work", ORDWR)
        await ctl.pwrite(0, b"join hand\nslots 1\nlease 4\n")
        for bad in ("lease -1\n", "lease many\n", "lease 99999999\n", f"lease 5\ndone {job}\n"):
            with pytest.raises(NinePError, match="lease|bad report"):
                await ctl.pwrite(0, bad.encode())
        assert "slots=1 lease=4 running=0" in await read(c, "nodes/hand/status")
        lease = await w.open("work")
        assert records(await lease.pread(0, 4096)) == [(job, 0)]     # a job not yet seen
        await ctl.pwrite(0, f"done {job} 0 0\n".encode())
        assert records(await lease.pread(0, 4096)) == [(job, i) for i in (1, 2, 3, 4)]
        assert "lease=4 running=4" in await read(c, "nodes/hand/status")
        await ctl.pwrite(0, f"lease 6\ndone {job} 1 0\n".encode())
        assert records(await lease.pread(0, 60)) == [(job, 5)]      # one record fits 60 bytes
        assert records(await lease.pread(0, 4096)) == [(job, 6), (job, 7)]  # the rest came back
        assert f"{job} running tasks=10 queued=2 running=6 done=2" in \
            await read(c, f"jobs/{job}/status")


async def test_a_worker_at_lease_0_is_paused_until_it_leases_again(grid):
    async with open_client(grid.sock) as c, open_client(grid.sock, aname="worker") as w:
        ctl = await w.open("work", ORDWR)
        await ctl.pwrite(0, b"join owner\nslots 1\nlease 0\n")
        job = await submit(c, "submit true\n")
        lease = await w.open("work")
        got = []
        async with trio.open_nursery() as nursery:
            async def take() -> None:
                got.append(await lease.pread(0, 4096))
            nursery.start_soon(take)
            await trio.testing.wait_all_tasks_blocked()
            await ctl.pwrite(0, b"heartbeat load=0\n")    # after the read, on its connection
            assert (await read(c, "nodes/owner/status")).split()[1] == "paused"
            assert "matching nodes are paused" in await read(c, f"jobs/{job}/why")
            assert (await read(c, f"jobs/{job}/status")).split()[1] == "queued"
            await ctl.pwrite(0, b"lease 1\n")
        assert records(got[0]) == [(job, 0)]
        assert (await read(c, "nodes/owner/status")).split()[1] == "busy"


async def test_a_worker_whose_owner_is_busy_takes_no_tasks(grid):
    """--max-load 0: the load from others is never below 0, so this worker never
    leases; the job waits, says why, and runs on the node that has no such say."""
    grid.start_worker("desk", 1, "--max-load", "0")
    async with open_client(grid.sock) as c:
        job = await submit(c, "submit echo hi\n")
        assert (await read(c, "nodes/desk/status")).split()[1] == "paused"
        assert "1 matching nodes are paused" in await read(c, f"jobs/{job}/why")
        grid.start_worker("server")
        assert " done " in await wait(c, job)
        assert await read(c, f"jobs/{job}/tasks/0/node") == "server\n"


async def test_a_report_carries_the_output_and_a_bad_record_changes_nothing(grid):
    async with open_client(grid.sock) as c, open_client(grid.sock, aname="worker") as w:
        job = await submit(c, "cmd true\ntasks 2\nsubmit\n")
        ctl = await w.open("work", ORDWR)
        await ctl.pwrite(0, b"join hand\nslots 2\n")
        lease = await w.open("work")
        assert records(await lease.pread(0, 4096)) == [(job, 0), (job, 1)]
        for bad, message in ((f"output {job} 0 stdout 0 99\nshort\ndone {job} 0 0\n",
                              "ends before its SIZE bytes"),
                             (f"output {job} 0 stdin 0 1\nx\n", "want 'done"),
                             (f"output {job} 0 stdout -1 1\nx\n", "offset: -1 is out of range")):
            with pytest.raises(NinePError, match=message):
                await ctl.pwrite(0, bad.encode())
        assert (await read(c, f"jobs/{job}/tasks/0/status")).split()[1] == "running"
        binary = bytes(range(256)) * 4
        await ctl.pwrite(0, f"output {job} 0 stdout 0 {len(binary)}\n".encode() + binary +
                         f"output {job} 0 stderr 0 5\noops\ndone {job} 0 0\n"
                         f"output {job} 1 stdout 0 3\nhi\ndone {job} 1 0\n".encode())
        assert " done=2 " in await wait(c, job)
        assert await c.read_file(f"jobs/{job}/tasks/0/stdout") == binary
        assert await read(c, f"jobs/{job}/tasks/0/stderr") == "oops\n"
        await ctl.pwrite(0, f"output {job} 1 stdout 0 6\nlater\n".encode())   # stale: ignored
        assert await read(c, f"jobs/{job}/tasks/1/stdout") == "hi\n"


async def test_output_streams_while_a_task_runs_and_big_output_arrives_whole(grid):
    grid.start_worker("w1", slots=2)
    script = ("if [ $STYXGRID_TASK = 0 ]; then echo first; sleep 1.5; echo second; "
              "echo err >&2; else head -c 300000 /dev/zero | tr '\\0' x; fi")
    async with open_client(grid.sock) as c:
        job = await submit(c, f"cmd sh -c \"{script}\"\ntasks 2\nsubmit\n")
        with trio.fail_after(TIMEOUT):
            async for chunk in c.stream(f"jobs/{job}/tasks/0/stdout"):
                assert chunk == b"first\n"
                break
        assert (await read(c, f"jobs/{job}/tasks/0/status")).split()[1] == "running"
        assert " done=2 " in await wait(c, job)
        assert await read(c, f"jobs/{job}/tasks/0/stdout") == "first\nsecond\n"
        assert await read(c, f"jobs/{job}/tasks/0/stderr") == "err\n"
        assert await read(c, f"jobs/{job}/tasks/1/stdout") == "x" * 300000


async def test_short_tasks_are_leased_ahead_but_a_long_job_spreads_over_the_nodes(grid):
    """After a run of short tasks the workers lease ahead; the long job queued
    behind them still gets one node per task, not both tasks on one node."""
    grid.start_worker("w1")
    grid.start_worker("w2")
    async with open_client(grid.sock) as c:
        short = await submit(c, "cmd true\ntasks 400\nsubmit\n")
        long = await submit(c, "cmd sleep 1\ntasks 2\nsubmit\n")
        assert " done=400 " in await wait(c, short)
        leases = [int((await read(c, f"nodes/{n}/status")).split("lease=")[1].split()[0])
                  for n in ("w1", "w2")]
        assert max(leases) > 1
        assert " done=2 " in await wait(c, long)
        assert {await read(c, f"jobs/{long}/tasks/{t}/node") for t in (0, 1)} == \
            {"w1\n", "w2\n"}


async def test_killing_a_job_leased_ahead_leaves_the_worker_serving(grid):
    """Tasks leased ahead and still waiting on the worker when their job is killed
    never start, and the worker goes on with the next job."""
    grid.start_worker("w1", slots=2)
    async with open_client(grid.sock) as c:
        job = await submit(c, "cmd true\ntasks 20000\nsubmit\n")
        await wait_for_event(c, f"jobs/{job}/events", " done exit=0", count=300)
        await c.write_file(f"jobs/{job}/ctl", b"kill\n")
        status = await wait(c, job)
        done = int(status.split(" done=")[1].split()[0])
        assert status.split()[1] == "killed" and 300 <= done < 20000
        assert f" killed={20000 - done} " in status
        after = await submit(c, "submit echo after\n")
        assert " done " in await wait(c, after)
        assert await read(c, f"jobs/{after}/tasks/0/node") == "w1\n"
        assert int((await read(c, "nodes/w1/status")).split("running=")[1].split()[0]) == 0


async def test_silent_worker_is_lost_after_the_heartbeat_timeout(proc, grid):
    grid.scheduler.stop()
    grid.start_scheduler("--heartbeat-timeout", "0.5")
    async with open_client(grid.sock) as c, open_client(grid.sock, aname="worker") as w:
        events = await c.open("events")
        job = await submit(c, "submit echo late\n")
        ctl = await w.open("work", ORDWR)
        await ctl.pwrite(0, b"join mute\nslots 1\n")
        slot = await w.open("work")
        assert (await slot.pread(0, 4096)).startswith(f"task {job} 0 1 ".encode())
        assert "running" in await read(c, f"jobs/{job}/status")
        seen = ""
        with trio.fail_after(10):
            while "node mute lost: no heartbeat" not in seen:
                seen += (await events.read()).decode()
        assert "mute" not in await read(c, "nodes/index")
        assert (await read(c, f"jobs/{job}/status")).split()[1] == "queued"
        with pytest.raises(NinePError, match="worker lost"):
            await ctl.pwrite(0, b"heartbeat load=0")
        grid.start_worker("honest")
        assert " done " in await wait(c, job)


BAD_DESCRIPTIONS = [
    ("bogus line\nsubmit\n", "unknown description line 'bogus'"),
    ("tasks many\ncmd x\nsubmit\n", "tasks: 'many' is not a whole number"),
    ("tasks 0\ncmd x\nsubmit\n", "tasks: 0 is out of range"),
    ("priority 5000\ncmd x\nsubmit\n", "priority: 5000 is out of range"),
    ("requirements (Memory > 2\ncmd x\nsubmit\n", "cannot parse ClassAd expression"),
    ("env NOEQUALS\ncmd x\nsubmit\n", "env: want NAME=VALUE"),
    ("input ../../etc/passwd\ncmd x\nsubmit\n", "may not contain '..'"),
    ("submit\n", "no command"),
    ("cmd 'unclosed\nsubmit\n", "cmd: no closing quotation"),
    ("submit a\nsubmit b\n", "one job per submit"),
]


async def test_every_malformed_description_fails_the_write_and_queues_nothing(grid):
    async with open_client(grid.sock) as c:
        for text, message in BAD_DESCRIPTIONS:
            with pytest.raises(NinePError, match=message.replace("(", r"\(")):
                await submit(c, text)
        assert await c.ls("jobs") == []
        assert "jobs=0 " in await read(c, "stats")


BAD_VERBS = [
    ("frobnicate\n", "unknown verb 'frobnicate': expected kill, hold"),
    ("priority high\n", "want 'priority P'"),
    ("kill now\n", "unknown verb 'kill now'"),
    ("\n", "empty ctl write"),
    ("hold\nbogus\n", "one verb per write, got 2"),
]


async def test_every_malformed_ctl_verb_fails_and_changes_nothing(grid):
    async with open_client(grid.sock) as c:
        job = await submit(c, "submit echo x\n")
        for text, message in BAD_VERBS:
            with pytest.raises(NinePError, match=message):
                await c.write_file(f"jobs/{job}/ctl", text.encode())
        assert (await read(c, f"jobs/{job}/status")).split()[1] == "queued"
        with pytest.raises(NinePError, match="unknown verb 'explode'"):
            await c.write_file("ctl", b"explode\n")
        with pytest.raises(NinePError, match="permission denied"):
            await c.read_file("work")                  # a user is no worker
        async with open_client(grid.sock, aname="worker") as w:
            with pytest.raises(NinePError, match="not joined"):
                await w.read_file("work")
        with pytest.raises(NinePError, match="not finished"):
            await c.write_file(f"jobs/{job}/ctl", b"remove\n")
        with pytest.raises(NinePError, match="no job submitted"):
            await c.read_file("new")


async def test_hold_release_priority_retry_remove(grid):
    async with open_client(grid.sock) as c:
        held = await submit(c, "submit sh -c 'exit 3'\n")
        await c.write_file(f"jobs/{held}/ctl", b"hold\n")
        assert "held" in await read(c, f"jobs/{held}/why")
        first = await submit(c, "submit echo first\n")
        later = await submit(c, "cmd echo later\npriority 1\nsubmit\n")
        await c.write_file(f"jobs/{later}/ctl", b"priority -5\n")
        grid.start_worker("w1")
        assert " done " in await wait(c, first)
        assert " done " in await wait(c, later)
        assert (await read(c, f"jobs/{held}/status")).split()[1] == "held"
        await c.write_file(f"jobs/{held}/ctl", b"release\n")
        status = await wait(c, held)
        assert status.split()[1] == "failed"
        assert "reason=exit status 3" in await read(c, f"jobs/{held}/tasks/0/status")
        await c.write_file(f"jobs/{held}/ctl", b"retry\n")
        assert (await wait(c, held)).split()[1] == "failed"
        await c.write_file(f"jobs/{held}/ctl", b"remove\n")
        assert str(held) not in [s.name for s in await c.ls("jobs")]


async def test_job_events_stream_and_nodes_files(grid):
    grid.start_worker("w1")
    async with open_client(grid.sock) as c:
        events = await c.open("events")
        job = await submit(c, "submit echo hi\n")
        lines = []
        async for chunk in c.stream(f"jobs/{job}/events"):
            lines += chunk.decode().splitlines()
        assert lines[-1].endswith(f"job {job} done")
        assert any(f"job {job} task 0 running node=w1" in line for line in lines)
        seen = (await events.read()).decode()
        assert f"job {job} submitted" in seen
        await events.close()
        status = (await read(c, "nodes/w1/status")).split()
        assert status[:2] == ["w1", "idle"]
        await c.write_file("nodes/w1/ctl", b"drain\n")
        assert (await read(c, "nodes/w1/status")).split()[1] == "draining"
        job2 = await submit(c, "submit echo two\n")
        assert "draining" in await read(c, f"jobs/{job2}/why")
        await c.write_file("nodes/w1/ctl", b"resume\n")
        assert " done " in await wait(c, job2)


def test_conformance_of_the_scheduler_tree_through_independent_clients(grid):
    os.makedirs(os.path.join(grid.state, "data", "probe"), exist_ok=True)
    with open(os.path.join(grid.state, "data", "probe", "f.txt"), "w") as f:
        f.write("original\n")
    for report in check_both(grid.sock, uname="probe", path="stats",
                             wfile="data/probe/f.txt", wdir="data/probe"):
        assert not report.failed, report
        # the end of a synthetic file (stat length 0) cannot be known in advance
        assert [s.split()[0] for s in report.skipped] == ["read-eof"], report
    assert open(os.path.join(grid.state, "data", "probe", "f.txt")).read() == "original\n"


def test_cli_submit_wait_q_why_status(grid):
    grid.start_worker("w1")
    env = {**os.environ, "STYXGRID_SCHEDULER": grid.sock}
    cli = [sys.executable, "-m", "styxgrid"]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*cli, *args], capture_output=True, text=True, env=env,
                              timeout=TIMEOUT)
    job = run("submit", "-n", "3", "--", "sh", "-c", "echo $STYXGRID_TASK").stdout.strip()
    assert job.isdigit()
    waited = run("wait", job)
    assert waited.returncode == 0 and " done tasks=3 " in waited.stdout
    assert run("cat", f"jobs/{job}/stdout").stdout == "0\n1\n2\n"
    q = run("q").stdout.splitlines()
    assert q[0].split()[:2] == ["JOB", "STATE"] and q[1].split()[:3] == [job, "done", "3"]
    assert run("status").stdout.startswith("w1 ")
    assert "finished" in run("why", job).stdout
    bad = run("write", f"jobs/{job}/ctl", "explode")
    assert bad.returncode == 1 and "unknown verb 'explode'" in bad.stderr
    failing = run("submit", "--", "sh", "-c", "exit 4").stdout.strip()
    assert run("wait", failing).returncode == 1


def test_up_serves_a_grid_and_stops_cleanly_on_sigterm(short_tmp):
    up = subprocess.Popen([sys.executable, "-m", "styxgrid", "up", "--state",
                           os.path.join(short_tmp, "st"), "--workers", "2"],
                          stderr=subprocess.PIPE, text=True)
    try:
        for line in up.stderr:
            if "up: scheduler on" in line:
                break
        sock = os.path.join(short_tmp, "st", "scheduler.sock")

        async def use() -> None:
            async with open_client(sock) as c:
                job = await submit(c, "cmd sh -c 'echo $STYXGRID_TASK'\ntasks 4\nsubmit\n")
                assert " done " in await wait(c, job)
                assert await read(c, f"jobs/{job}/stdout") == "0\n1\n2\n3\n"
                assert "slots=2" in await read(c, "stats")
        trio.run(use)
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(10) == 0
        up.stderr.close()
    assert not pids_running(f"-m styxgrid worker --scheduler {sock}")


def test_cli_submit_of_a_local_program_sends_it_along(grid, tmp_path):
    grid.start_worker("w1")
    script = tmp_path / "sim"
    script.write_text("#!/bin/sh\necho sim run with $1 as task $STYXGRID_TASK\n")
    script.chmod(0o755)
    env = {**os.environ, "STYXGRID_SCHEDULER": grid.sock}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*STYXGRID, *args], capture_output=True, text=True, env=env,
                              timeout=TIMEOUT, cwd=tmp_path)
    job = run("submit", "-n", "2", "--", "./sim", "--seed=7").stdout.strip()
    assert job.isdigit()
    assert run("wait", job).returncode == 0
    assert run("cat", f"jobs/{job}/stdout").stdout == \
        "sim run with --seed=7 as task 0\nsim run with --seed=7 as task 1\n"
    again = run("submit", "--", "./sim", "x").stdout.strip()      # stored once, by content
    assert run("wait", again).returncode == 0
    me = pwd.getpwuid(os.getuid()).pw_name
    assert len(run("ls", f"data/{me}/programs").stdout.split()) == 1


async def test_random_writes_to_every_writable_file_never_stop_the_scheduler(grid):
    """Junk of every kind into /new, the ctl files and /work: each write either works
    or fails with a message, and the scheduler answers throughout."""
    rng = random.Random(int(os.environ.get("STYXGRID_FUZZ_SEED", "7")))
    words = ["submit", "kill", "hold", "release", "priority", "retry", "remove", "join",
             "heartbeat", "done", "drain", "resume", "disable", "tasks", "cmd", "args", "env",
             "input", "output", "requirements", "rank", "retries", "dir", "running", "slots",
             "attr", "-1", "0", "1", "99999999999999999999", "x=y", "=", "'", '"', "&&",
             "Memory", "\\", "..", "/", "\x00", "é", "\n"]

    def junk() -> bytes:
        if rng.random() < 0.2:
            return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
        return " ".join(rng.choice(words) for _ in range(rng.randrange(1, 8))).encode()
    async with open_client(grid.sock) as c, open_client(grid.sock, aname="worker") as w:
        job = await submit(c, "submit sleep 30\n")
        targets = [(c, "new"), (c, "ctl"), (c, f"jobs/{job}/ctl"), (w, "work")]
        work = await w.open("work", ORDWR)
        await work.pwrite(0, b"join fuzz\nslots 2\n")
        targets.append((c, "nodes/fuzz/ctl"))
        for _ in range(400):
            client, path = rng.choice(targets)
            try:
                f = await client.open(path, ORDWR if path in ("new", "work") else 1)
                async with f:
                    await f.pwrite(0, junk())
            except NinePError as exc:
                assert exc.ename                       # refused, with a reason
        assert (await c.read_file("stats")).startswith(b"jobs=")
        assert grid.scheduler.popen.poll() is None
