"""`styxgrid up` and workers recover from what a newcomer does to them: `up`
killed with SIGKILL leaves no orphans, a dead mount is cleared, a second `up` on
the same folder says why in one line, and two workers of one name do not fight."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from styxgrid.ninep.client import open_client

from ..helpers import STYXGRID, TIMEOUT, submit, wait


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def pids(marker: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(check, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def start_up(folder: str) -> subprocess.Popen:
    up = subprocess.Popen([*STYXGRID, "up", "--workers", "1", "--mount", "grid"], cwd=folder,
                          stderr=subprocess.PIPE, text=True)
    up.lines = []                                    # type: ignore[attr-defined]
    assert up.stderr is not None
    for line in up.stderr:
        up.lines.append(line)                        # type: ignore[attr-defined]
        if "up: scheduler on" in line:
            return up
    raise AssertionError(f"up ended: {''.join(up.lines)}")  # type: ignore[attr-defined]


def stop(up: subprocess.Popen) -> None:
    up.terminate()
    up.wait(30)
    assert up.stderr is not None
    up.stderr.close()


@pytest.fixture
def ups():
    """Start `styxgrid up` in a folder; any still running at the end is stopped,
    so that a failing test leaves no grid behind."""
    started: list[subprocess.Popen] = []

    def start(folder: str) -> subprocess.Popen:
        started.append(start_up(folder))
        return started[-1]
    yield start
    for up in started:
        if up.poll() is None:
            stop(up)


def test_up_killed_leaves_no_worker_task_or_mount_behind(short_tmp, ups):
    """Even once the worker has started a task as another user (a change of ids
    that clears the parent-death signal), SIGKILL of up ends it all."""
    up = ups(short_tmp)
    kids = children(up.pid)
    assert len(kids) == 2
    mount = os.path.join(short_tmp, "grid")
    assert os.path.ismount(mount)
    with open(os.path.join(mount, "new"), "w") as new:
        new.write("submit sleep 61.777\n")
    wait_until(lambda: pids("sleep 61.777"), "the task did not start")
    up.kill()
    up.wait()
    wait_until(lambda: not any(alive(pid) for pid in kids), "a child outlived up")
    wait_until(lambda: not os.path.ismount(mount), "the mount outlived up")
    wait_until(lambda: not pids("sleep 61.777"), "the task outlived up")
    assert up.stderr is not None
    up.stderr.close()


def read_until(up: subprocess.Popen, text: str) -> None:
    assert up.stderr is not None
    for line in up.stderr:
        up.lines.append(line)                        # type: ignore[attr-defined]
        if text in line:
            return
    raise AssertionError(f"up ended: {''.join(up.lines)}")  # type: ignore[attr-defined]


def test_a_dead_mount_is_cleared_with_a_message_and_a_second_up_says_why(short_tmp, ups):
    up = ups(short_tmp)
    mount = os.path.join(short_tmp, "grid")
    sock = os.path.join(short_tmp, ".styxgrid", "scheduler.sock")
    [fuse] = [pid for pid in children(up.pid) if b"mount" in
              Path(f"/proc/{pid}/cmdline").read_bytes()]
    os.kill(fuse, signal.SIGKILL)                    # up's mount dies on its own: up clears it
    read_until(up, f"styxgrid: up: the mount at {mount} ended (status -9); {mount} was a "
                   "mount whose process had ended; unmounted it; the grid goes on without it")
    assert not os.path.ismount(mount)
    second = subprocess.run([*STYXGRID, "up", "--workers", "1"], cwd=short_tmp,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert second.returncode == 1
    assert second.stderr == (f"styxgrid: up: state folder {short_tmp}/.styxgrid is in use "
                             f"by process {up.pid}\n")
    other = subprocess.Popen([*STYXGRID, "mount", "--foreground", sock, mount],
                             stderr=subprocess.PIPE, text=True)
    assert other.stderr is not None
    assert " mounted on " in other.stderr.readline()
    other.kill()                                     # a mount no up looks after dies
    other.wait()
    other.stderr.close()
    try:
        os.stat(mount)
        raise AssertionError("the mount is not dead")
    except OSError:
        pass
    stop(up)
    up = ups(short_tmp)
    try:
        assert (f"styxgrid: up: {mount} was a mount whose process had ended; unmounted it\n"
                in up.lines)                         # type: ignore[attr-defined]
        with open(os.path.join(mount, "new"), "r+") as new:
            new.write("submit echo back again\n")
            new.flush()
            job = new.read().strip()
        with open(os.path.join(mount, "jobs", job, "wait")) as w:
            assert " done " in w.read()
    finally:
        stop(up)


async def test_a_worker_of_the_same_name_takes_over_and_the_older_one_stops(grid):
    older = grid.start_worker("twin")
    async with open_client(grid.sock) as c:
        job = await submit(c, "submit sh -c 'sleep 1.2345; echo finished'\n")
        wait_until(lambda: pids("sleep 1.2345"), "the task did not start")
        first = [int(pid) for pid in pids("sleep 1.2345")]
        newer = grid.start_worker("twin", 1, "--workdir", os.path.join(grid.dir, "work-2"))
        assert older.popen.wait(TIMEOUT) == 1
        wait_until(lambda: not any(alive(pid) for pid in first),   # killed with it
                   "the older worker's task outlived it")
        assert any("worker: twin: replaced: another worker joined as twin; this one stops"
                   in line for line in older.lines), older.lines
        assert " done " in await wait(c, job)       # the task ran again on the newer one
        assert (await c.read_file(f"jobs/{job}/stdout")) == b"finished\n"
        assert (await c.read_file(f"jobs/{job}/tasks/0/node")).strip() == b"twin"
        assert newer.popen.poll() is None


def test_a_refused_join_ends_the_worker_and_up_with_the_reason(grid, short_tmp):
    out = subprocess.run([*STYXGRID, "worker", "--scheduler", grid.sock, "--name", "bad name!",
                          "--slots", "1"], capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 1
    assert out.stderr.startswith(f"styxgrid: worker: bad name!: {grid.sock} refused the "
                                 "join: "), out.stderr
    bad = subprocess.run([*STYXGRID, "up", "--workers", "-1"], cwd=short_tmp,
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert (bad.returncode, bad.stderr) == (
        2, "styxgrid: up: --workers -1: want 1..4096 (0: one per core)\n")
