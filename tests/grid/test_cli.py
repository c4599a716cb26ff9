"""The `styxgrid` command as a newcomer types it: one line for every mistake, with
the documented exit status, and jobs that never hang on their own outputs."""

from __future__ import annotations

import os
import subprocess

import pytest

from styxgrid.ninep.client import open_client

from ..helpers import STYXGRID, TIMEOUT, submit, wait


@pytest.fixture
def cli(grid, tmp_path):
    """Run `styxgrid ARGS` against the grid, in a folder of its own."""
    env = {**os.environ, "STYXGRID_SCHEDULER": grid.sock}

    def run(*args: str, cwd=tmp_path, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([*STYXGRID, *args], capture_output=True, text=True, env=env,
                              timeout=TIMEOUT, cwd=cwd, **kw)
    return run


def test_outputs_every_task_would_share_are_refused_at_submit_with_a_hint(grid, cli):
    out = cli("submit", "-n", "4", "--output", "same.txt", "--", "sh", "-c",
              "echo $STYXGRID_TASK > same.txt")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == ("styxgrid: submit: output 'same.txt': all 4 tasks would store it "
                          "as outputs/same.txt; put $STYXGRID_TASK in its name (e.g. "
                          "same.$STYXGRID_TASK.txt) to keep one each\n")
    two = cli("submit", "--output", "a/r.txt", "--output", "b/r.txt", "--", "true")
    assert two.returncode == 2 and "'a/r.txt' is stored as outputs/r.txt too" in two.stderr
    grid.start_worker("w1", 2)
    job = cli("submit", "-n", "4", "--output", "same.$STYXGRID_TASK.txt", "--", "sh", "-c",
              "echo $STYXGRID_TASK > same.$STYXGRID_TASK.txt").stdout.strip()
    assert cli("wait", job).returncode == 0
    assert sorted(cli("ls", f"jobs/{job}/outputs").stdout.split()) == \
        [f"same.{i}.txt" for i in range(4)]
    assert cli("cat", f"jobs/{job}/outputs/same.3.txt").stdout == "3\n"


async def test_an_output_that_cannot_be_stored_fails_its_task_with_the_reason(grid):
    grid.start_worker("w1")
    go = os.path.join(grid.dir, "go")
    async with open_client(grid.sock) as c:
        job = await submit(c, f"cmd sh -c 'while [ ! -e {go} ]; do sleep 0.05; done; "
                              "echo x > result.txt'\noutput result.txt\nsubmit\n")
        # something already in the way of the output: a folder of its name
        os.makedirs(os.path.join(grid.state, "spool", str(job), "outputs", "result.txt"))
        open(go, "w").close()
        assert (await wait(c, job)).split()[1] == "failed"
        status = (await c.read_file(f"jobs/{job}/tasks/0/status")).decode()
        assert status.startswith("0 failed exit=125 reason=output result.txt not stored: ")
