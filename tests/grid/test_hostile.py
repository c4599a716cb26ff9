"""Each request here ended the whole scheduler before (issue: no request can bring
the grid down).  Every test checks the refusal a user or worker meets and that the
scheduler goes on serving an honest client afterwards."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import trio

from styxgrid.ninep import NinePError
from styxgrid.ninep.client import open_client
from styxgrid.ninep.messages import ORDWR, OWRITE
from styxgrid.describe import JobSpec

from ..helpers import STYXGRID, submit, wait


async def alive(grid) -> None:
    """The scheduler still answers and still takes jobs."""
    assert grid.scheduler.popen.poll() is None, "".join(grid.scheduler.lines)
    async with open_client(grid.sock) as c:
        job = await submit(c, "submit true\n")
        assert (await c.read_file(f"jobs/{job}/status")).split()[0] == str(job).encode()


def cli(grid, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(STYXGRID + [*args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "STYXGRID_SCHEDULER": grid.sock})


async def test_odd_numbers_in_paths_and_verbs_are_refused(grid):
    result = cli(grid, "cat", "jobs/²/status")
    assert result.returncode != 0 and "file does not exist" in result.stderr
    async with open_client(grid.sock) as c:
        job = await submit(c, "submit true\n")
        for path in (f"jobs/0{job}/status", "jobs/99999999999999999999/status",
                     f"jobs/{job}/tasks/٣/status"):
            with pytest.raises(NinePError, match="file does not exist"):
                await c.read_file(path)
        for verb in ("priority --5\n", "priority 1e3\n", "priority -\n"):
            with pytest.raises(NinePError, match="want 'priority P'"):
                await c.write_file(f"jobs/{job}/ctl", verb.encode())
    await alive(grid)


async def test_hostile_worker_fields_are_refused(grid):
    async with open_client(grid.sock) as c:
        job = await submit(c, "tasks 2\ncmd true\nsubmit\n")
    async with open_client(grid.sock, aname="worker") as w:
        ctl = await w.open("work", ORDWR)
        for text, why in (("join big\nattr Big = 99999999999999999999999\n", "fit 64 bits"),
                          ("join nan\nattr X = nan\n", "not a finite number"),
                          ("join " + "n" * 70_000 + "\n", "bad worker name"),
                          ("join a/b\n", "bad worker name"),
                          ("join s\nslots ９\n", "not a whole number")):
            with pytest.raises(NinePError, match=why):
                await ctl.pwrite(0, text.encode())
        await ctl.pwrite(0, b"join hand\nslots 2\n")
        lease = await w.open("work")
        await lease.pread(0, 65536)
        for text, why in ((f"done {job} 0 99999999999\n", "status: 99999999999 is out of range"),
                          (f"done {job} 99999999999 0\n", "task: 99999999999 is out of range"),
                          (f"output {job} 0 stdout {1 << 62} 1\nx", "offset: .* out of range"),
                          (f"output {job} 0 stdout {1 << 63} 1\nx", "offset: .* out of range"),
                          ("heartbeat load=1e999\n", "not a finite number")):
            with pytest.raises(NinePError, match=why):
                await ctl.pwrite(0, text.encode())
        upload = await w.open(f"jobs/{job}/tasks/0/stdout", OWRITE)
        with pytest.raises(NinePError, match="output past 1 TiB"):
            await upload.pwrite(1 << 62, b"x")
        await ctl.pwrite(0, f"done {job} 0 0\ndone {job} 1 0\n".encode())
    await alive(grid)


async def test_nul_bytes_and_oversized_descriptions_are_refused(grid):
    async with open_client(grid.sock) as c:
        for text, why in (("submit a\0b\n", "NUL byte"),
                          ("env A=x\0y\nsubmit true\n", "NUL byte"),
                          ("args " + "x " * 100_000 + "\nsubmit true\n", "line longer"),
                          ("# pad\n" * 50_000 + "submit true\n", "longer than 256 KiB")):
            with pytest.raises(NinePError, match=why):
                await submit(c, text)
        assert await c.ls("jobs") == []
    await alive(grid)


ODD = ["it's", 'say "hi"', "$HOME and ${X}", "ünïcødé ✓", "two  spaces", " lead", "*",
       "line\u2028separator"]


async def test_quotes_spaces_dollars_and_unicode_survive_a_restart_and_run_as_given(grid):
    """Stored and sent to the worker exactly as submitted, before and after the
    scheduler is restarted on its state folder."""
    script = os.path.join(grid.dir, "my prog's")
    with open(script, "w") as f:
        f.write('#!/bin/sh\nfor a in "$@"; do printf "[%s]\\n" "$a"; done\n'
                'printf "env=[%s]\\n" "$ODD"\n')
    os.chmod(script, 0o755)
    result = cli(grid, "submit", "--env", "ODD= it's \"$X\" ✓ ", "--", script, *ODD)
    assert result.returncode == 0, result.stderr
    job = int(result.stdout.strip())
    grid.scheduler.stop()
    grid.start_scheduler()
    grid.start_worker("w1")
    async with open_client(grid.sock) as c:
        assert " done=1 " in await wait(c, job)
        out = (await c.read_file(f"jobs/{job}/stdout")).decode()
    assert out == "".join(f"[{a}]\n" for a in ODD) + "env=[ it's \"$X\" ✓ ]\n"


def test_a_second_scheduler_on_one_state_folder_says_who_holds_it(grid):
    result = subprocess.run(STYXGRID + ["scheduler", "--state", grid.state, "--listen",
                                        grid.sock + "2"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"in use by process {grid.scheduler.popen.pid}" in result.stderr


async def test_without_the_classad_package_requirements_are_refused_and_workers_join(proc,
                                                                                       short_tmp):
    shim = os.path.join(short_tmp, "shim", "classad2")
    os.makedirs(shim)
    with open(os.path.join(shim, "__init__.py"), "w") as f:
        f.write("raise ImportError('classad2 hidden for this test')\n")
    env = {"PYTHONPATH": os.pathsep.join([os.path.dirname(shim), *sys.path])}
    sock = os.path.join(short_tmp, "s.sock")
    proc(["scheduler", "--state", os.path.join(short_tmp, "state"), "--listen", sock],
         r"serving", env)
    proc(["worker", "--scheduler", sock, "--name", "w1", "--heartbeat", "0.5",
          "--workdir", os.path.join(short_tmp, "work"), "--attr", "Colour=blue"], r"joined", env)
    async with open_client(sock) as c:
        with pytest.raises(NinePError, match=r"pip install 'styxgrid\[match\]'"):
            await submit(c, "requirements Memory > 1\nsubmit true\n")
        job = await submit(c, "submit true\n")
        with trio.fail_after(60):
            assert " done=1 " in (await c.read_file(f"jobs/{job}/wait")).decode()


async def test_a_character_cut_across_writes_to_new_is_whole(grid):
    async with open_client(grid.sock) as c:
        new = await c.open("new", ORDWR)
        text = "cmd echo ünï\nsubmit\n".encode()
        cut = text.index("ü".encode()) + 1
        await new.pwrite(0, text[:cut])
        await new.pwrite(cut, text[cut:])
        job = int(await new.pread(len(text), 100))
        desc = (await c.read_file(f"jobs/{job}/desc")).decode()
        assert JobSpec.from_lines(desc).args == ("ünï",)


async def test_a_ctl_write_of_two_verbs_is_refused_and_changes_nothing(grid):
    async with open_client(grid.sock) as c:
        job = await submit(c, "submit true\n")
        with pytest.raises(NinePError, match="one verb per write, got 2"):
            await c.write_file(f"jobs/{job}/ctl", b"kill\nhold\n")
        assert b" queued=1 " in await c.read_file(f"jobs/{job}/status")


async def test_a_worker_cannot_say_the_scheduler_s_attributes_in_another_case(grid):
    """ClassAd names ignore case: a worker's `name` would stand beside the Name the
    scheduler gives it, and requirements aimed at another node would match it."""
    async with open_client(grid.sock) as c:
        job = await submit(c, 'cmd true\nrequirements Name == "desk"\nsubmit\n')
        async with open_client(grid.sock, aname="worker") as w:
            ctl = await w.open("work", ORDWR)
            await ctl.pwrite(0, b'join evil\nattr name = "desk"\nattr slots = 64\n'
                                b'attr FreeCpus = 99\nattr Memory = 100\nattr LoadAvg = 0.5\n')
            ad = (await c.read_file("nodes/evil/ad")).decode()
            assert 'Name = "evil"' in ad and "name =" not in ad and "slots =" not in ad
            assert "Slots = 1" in ad and "Memory = 100" in ad and "LoadAvg = 0.5" in ad
            assert "FreeCpus = 1" in ad                   # what it has free, not its word
            assert "no node matches" in (await c.read_file(f"jobs/{job}/why")).decode()
    await alive(grid)


async def test_a_worker_fid_joins_once(grid):
    async with open_client(grid.sock, aname="worker") as w:
        ctl = await w.open("work", ORDWR)
        await ctl.pwrite(0, b"join once\n")
        with pytest.raises(NinePError, match="this fid has joined already, as once"):
            await ctl.pwrite(0, b"join twice\n")
        async with open_client(grid.sock) as c:
            assert b"once" in await c.read_file("nodes/once/ad")
            with pytest.raises(NinePError, match="file does not exist"):
                await c.read_file("nodes/twice/ad")
    await alive(grid)
