"""Every role stays inside its rights (issue: users, owners and workers of other
domains share one grid).  Each test attacks as that role would."""

from __future__ import annotations

import os
import subprocess

import pytest
import trio

from styxgrid.ninep import NinePError
from styxgrid.ninep.client import open_client
from styxgrid.ninep.messages import Stat

from ..helpers import STYXGRID, submit, wait


async def test_a_task_that_never_starts_reports_no_one_elses_output(grid):
    """A task refused by the owner's --allow reuses the last task's folder; it
    must not report that task's stdout as its own.  (`true` may be /bin/true,
    so the scheduler sends it; the worker finds /usr/bin/true first.)"""
    grid.start_worker("w1", 1, "--allow", "/bin/*")
    async with open_client(grid.sock) as c:
        first = await submit(c, "cmd /bin/echo a secret\nsubmit\n")
        assert (await wait(c, first)).split()[1] == "done"
        assert await c.read_file(f"jobs/{first}/stdout") == b"a secret\n"
        refused = await submit(c, "cmd true\nsubmit\n")
        assert (await wait(c, refused)).split()[1] == "failed"
        status = (await c.read_file(f"jobs/{refused}/tasks/0/status")).decode()
        assert "exit=126" in status and "not allowed" in status
        assert await c.read_file(f"jobs/{refused}/stdout") == b""
        assert await c.read_file(f"jobs/{refused}/stderr") == b""


async def test_a_program_a_node_does_not_allow_waits_for_one_that_does(grid):
    """The owner's allow list is in the node's ad: a job it does not allow, even
    named the long way round, is not sent there to fail; `why` says so."""
    grid.start_worker("strict", 1, "--allow", "/usr/bin/*")
    async with open_client(grid.sock) as c:
        job = await submit(c, "cmd /usr/bin/../../bin/echo escaped\nsubmit\n")
        ad = (await c.read_file("nodes/strict/ad")).decode()
        assert 'Allow = "/usr/bin/*"' in ad and "TaskUsers = 1" in ad
        with trio.fail_after(10):
            while "not on the allow list of 1 of 1 nodes" not in \
                    (why := (await c.read_file(f"jobs/{job}/why")).decode()):
                await trio.sleep(0.05)
        assert "queued=1" in (await c.read_file(f"jobs/{job}/status")).decode(), why
        grid.start_worker("open", 1)
        assert (await wait(c, job)).split()[1] == "done"
        assert await c.read_file(f"jobs/{job}/stdout") == b"escaped\n"
        events = (await c.read_file(f"jobs/{job}/events")).decode()
        assert "task 0 running node=open" in events and "node=strict" not in events


async def test_a_task_cannot_have_the_worker_upload_a_file_outside_its_folder(grid):
    """A task that swaps its `dir` for a link to a root-only folder: the worker,
    which reads outputs as root, must refuse to send what the link reaches."""
    private = os.path.join(grid.dir, "private")
    os.mkdir(private, 0o700)
    with open(os.path.join(private, "secret.txt"), "w") as f:
        f.write("root only\n")
    grid.start_worker("w1", 1)
    async with open_client(grid.sock) as c:
        job = await submit(c, f"cmd sh -c 'cd .. && rmdir work && ln -s {private} work'\n"
                              "dir work\noutput secret.txt\nsubmit\n")
        assert (await wait(c, job)).split()[1] == "failed"
        status = (await c.read_file(f"jobs/{job}/tasks/0/status")).decode()
        assert "exit=125" in status and "outside the task's folder" in status, status
        assert [s.name for s in await c.ls(f"jobs/{job}/outputs")] == []


async def test_dir_is_a_folder_inside_the_task_folder(grid):
    grid.start_worker("w1", 1)
    async with open_client(grid.sock) as c:
        await c.write_file("data/in.txt", b"input\n")
        job = await submit(c, "cmd sh -c 'pwd; cat in.txt'\ndir a/b\ninput in.txt\nsubmit\n")
        assert (await wait(c, job)).split()[1] == "done"
        out = (await c.read_file(f"jobs/{job}/stdout")).decode().split("\n")
        assert out[0].endswith("/a/b") and "task." in out[0] and out[1] == "input"
        with pytest.raises(NinePError, match="must be a path in the task's folder"):
            await submit(c, "cmd true\ndir /etc\nsubmit\n")


def test_an_allow_glob_that_names_no_path_is_refused_at_start(grid):
    out = subprocess.run([*STYXGRID, "worker", "--scheduler", grid.sock, "--allow", "sh"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2
    assert "--allow 'sh': a glob matches a program's absolute path" in out.stderr


def test_the_state_folder_is_the_schedulers_alone(grid):
    """Another local user can reach the socket and nothing else of the state."""
    state = grid.state
    assert os.stat(state).st_mode & 0o777 == 0o711
    for name in ("spool", "data"):
        assert os.stat(os.path.join(state, name)).st_mode & 0o777 == 0o700
    for name in ("grid.db", "lock"):
        assert os.stat(os.path.join(state, name)).st_mode & 0o777 == 0o600
    assert os.stat(grid.sock).st_mode & 0o777 == 0o666
    reads = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                            "cat", os.path.join(state, "grid.db")], capture_output=True)
    assert reads.returncode != 0 and reads.stdout == b""


async def test_a_sigkilled_worker_leaves_no_process_of_its_tasks(grid):
    """Its tasks, and what they started in the background, end with it, even
    what left the task's session and cleared its environment."""
    worker = grid.start_worker("w1", 2)
    async with open_client(grid.sock) as c:
        job = await submit(c, "cmd sh -c 'sleep 301 & sleep 302 & setsid env -i sleep 303 & "
                              "wait'\ntasks 2\nsubmit\n")
        with trio.fail_after(30):
            while len(pids := tasks_of(("sleep 301", "sleep 302", "sleep 303"))) < 6:
                await trio.sleep(0.05)
        shells = {parent(pid) for pid in pids}
        assert len(shells) == 2
        worker.popen.kill()
        worker.popen.wait()
        with trio.fail_after(10):
            while alive(pids | shells):
                await trio.sleep(0.05)
        assert (await c.read_file(f"jobs/{job}/status")).split()[1] != b"done"


def parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def tasks_of(commands: tuple[str, ...]) -> set[int]:
    found = set()
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                line = f.read().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if line in commands:
            found.add(int(pid))
    return found


def alive(pids: set[int]) -> set[int]:
    """The pids still running (a zombie is not running)."""
    left = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    left.add(pid)
        except OSError:
            pass
    return left


async def test_the_program_checked_against_the_allow_list_is_the_one_that_runs(grid):
    """A bare name is looked up on the task's PATH once; that file is checked and
    run (not another one the worker's own PATH finds)."""
    bin_dir = os.path.join(grid.dir, "bin")
    os.mkdir(bin_dir)
    with open(os.path.join(bin_dir, "id"), "w") as f:
        f.write("#!/bin/sh\necho the allowed one\n")
    os.chmod(os.path.join(bin_dir, "id"), 0o755)
    grid.start_worker("w1", 1, "--allow", f"{bin_dir}/*")
    async with open_client(grid.sock) as c:
        ok = await submit(c, f"cmd id\nenv PATH={bin_dir}\nsubmit\n")
        assert (await wait(c, ok)).split()[1] == "done"
        assert await c.read_file(f"jobs/{ok}/stdout") == b"the allowed one\n"
        # the scheduler sends it (bin_dir/id would do); the worker finds /usr/bin/id
        refused = await submit(c, f"cmd id\nenv PATH=/usr/bin:{bin_dir}\nsubmit\n")
        assert (await wait(c, refused)).split()[1] == "failed"
        assert "not allowed" in (await c.read_file(f"jobs/{refused}/tasks/0/status")).decode()


async def test_a_users_jobs_and_data_are_hers_unless_she_shares_them(grid):
    """Root's socket speaks for alice and bob here (as a root mount does): each
    gets that user's rights."""
    grid.start_worker("w1", 1)
    async with open_client(grid.sock, uname="alice") as alice, \
            open_client(grid.sock, uname="bob") as bob, open_client(grid.sock) as admin:
        job = await submit(alice, "cmd sh -c 'echo result > out.txt; echo $API_KEY'\n"
                                   "env API_KEY=s3cret\noutput out.txt\nsubmit\n")
        assert (await wait(alice, job)).split()[1] == "done"
        for path in ("desc", "stdout", "stderr", "events", "tasks/0/stdout",
                     "outputs/out.txt"):
            with pytest.raises(NinePError, match="permission denied"):
                await bob.read_file(f"jobs/{job}/{path}")
            assert await admin.read_file(f"jobs/{job}/{path}") is not None
        assert b"API_KEY=s3cret" in await alice.read_file(f"jobs/{job}/desc")
        assert await alice.read_file(f"jobs/{job}/stdout") == b"s3cret\n"
        assert (await bob.read_file(f"jobs/{job}/status")).split()[1] == b"done"
        shared = await submit(alice, "cmd echo for all\nshare all\nsubmit\n")
        await wait(alice, shared)
        assert await bob.read_file(f"jobs/{shared}/stdout") == b"for all\n"
        # data: hers; she may chmod and touch it, and share it by its mode bits
        await alice.write_file("data/alice/notes.txt", b"mine\n")
        with pytest.raises(NinePError, match="permission denied"):
            await bob.read_file("data/alice/notes.txt")
        await alice.wstat("data/alice/notes.txt", Stat.dont_touch(mode=0o755, mtime=1))
        st = await alice.stat("data/alice/notes.txt")
        assert (st.mode & 0o777, st.mtime, st.uid) == (0o755, 1, "alice")
        with pytest.raises(NinePError, match="permission denied"):
            await bob.wstat("data/alice/notes.txt", Stat.dont_touch(mode=0o777))


async def test_a_task_gets_its_own_users_name_home_and_a_plain_path(grid):
    """The suite runs as root (README): the worker runs tasks as task users."""
    grid.start_worker("w1", 1)
    async with open_client(grid.sock) as c:
        job = await submit(c, "cmd sh -c 'echo $USER $LOGNAME $(id -un); echo $HOME; "
                              "echo $PATH; pwd; stat -c %U:%a .'\nsubmit\n")
        await wait(c, job)
        user, home, path, cwd, folder = \
            (await c.read_file(f"jobs/{job}/stdout")).decode().split("\n")[:5]
        name = user.split()[0]
        assert name.startswith("sg-") and user == f"{name} {name} {name}"
        assert home == cwd and "/task." in home
        assert path == "/usr/local/bin:/usr/bin:/bin"
        assert folder == f"{name}:700"


def status_of(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)


async def read_until(c, path: str, count: int) -> list[str]:
    """The first `count` lines of a running task's output (which streams: a
    read waits for more)."""
    got = b""
    with trio.fail_after(30):
        async with await c.open(path) as f:
            while got.count(b"\n") < count:
                got += await f.pread(len(got), 8192)
    return got.decode().splitlines()[:count]


async def test_two_users_tasks_on_one_worker_cannot_reach_each_other(grid):
    """Alice's and Bob's tasks run at once on one worker, as two task users: Bob's
    task cannot read Alice's folder or her task's output, nor signal her task."""
    grid.start_worker("w1", 2)
    async with open_client(grid.sock, uname="alice") as alice, \
            open_client(grid.sock, uname="bob") as bob:
        hers = await submit(alice, "cmd sh -c 'echo secret > mine.txt; echo $$; pwd; "
                                   "exec sleep 300'\nsubmit\n")
        pid, folder = await read_until(alice, f"jobs/{hers}/tasks/0/stdout", 2)
        attack = (f"id -u; cat {folder}/mine.txt; ls {folder}; cat {folder}.stdout; "
                  f"kill -9 {pid}; pkill -9 -x sleep; echo tried")
        his = await submit(bob, f"cmd sh -c '{attack}'\nsubmit\n")
        await wait(bob, his)
        said = (await bob.read_file(f"jobs/{his}/stdout")).decode()
        errors = (await bob.read_file(f"jobs/{his}/stderr")).decode()
        assert "secret" not in said and said.endswith("tried\n"), said
        assert errors.count("Permission denied") == 3, errors
        assert "Operation not permitted" in errors, errors
        alice_uid = status_of(int(pid))["Uid"].split()[0]
        assert said.split()[0] != alice_uid
        assert status_of(int(pid))["State"].startswith("S")      # still running
        await alice.write_file(f"jobs/{hers}/ctl", b"kill")


async def test_what_a_task_leaves_running_is_killed_when_its_user_is_done(grid):
    """A task that escapes its process group and clears its environment
    (setsid, env -i) is still one of its task user's processes: it is killed
    once that user has no task left on the worker."""
    grid.start_worker("w1", 1)
    async with open_client(grid.sock, uname="alice") as alice:
        job = await submit(alice, "cmd sh -c 'setsid env -i sleep 306 > /dev/null 2>&1 & "
                                  "touch /tmp/left-by-alice; echo started'\nsubmit\n")
        assert (await wait(alice, job)).split()[1] == "done"
        with trio.fail_after(10):
            while alive(tasks_of(("sleep 306",))):
                await trio.sleep(0.05)
    async with open_client(grid.sock, uname="bob") as bob:
        later = await submit(bob, "cmd sh -c 'ls /tmp/left-by-alice'\nsubmit\n")
        await wait(bob, later)
        assert "No such file" in (await bob.read_file(f"jobs/{later}/stderr")).decode()


async def test_a_restarted_worker_kills_its_task_users_leftovers(grid):
    """If the worker and its keeper both die by SIGKILL, the tasks' processes
    outlive them; the worker of that name, started again, ends them first."""
    worker = grid.start_worker("w1", 1)
    async with open_client(grid.sock) as c:
        await submit(c, "cmd sh -c 'setsid env -i sleep 307 & exec sleep 308'\nsubmit\n")
        with trio.fail_after(30):
            while len(pids := alive(tasks_of(("sleep 307", "sleep 308")))) < 2:
                await trio.sleep(0.05)
        keeper = keeper_of(worker.popen.pid)
        assert len(keeper) == 1
        os.kill(keeper[0], 9)              # (a pending SIGKILL runs no more code)
        worker.popen.kill()
        worker.popen.wait()
        assert alive(pids) == pids         # nothing is left to kill them...
        grid.start_worker("w1", 1)         # ...till the worker is back
        with trio.fail_after(10):
            while alive(pids):
                await trio.sleep(0.05)


def keeper_of(worker: int) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"styxgrid.worker.keeper" in f.read() and parent(int(pid)) == worker:
                    found.append(int(pid))
        except OSError:
            continue
    return found
