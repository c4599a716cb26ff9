"""styxgrid.api against a real scheduler and worker: what a Python user writes."""

from __future__ import annotations

import pytest
import trio

from styxgrid import api
from styxgrid.describe import JobSpec
from styxgrid.ninep.errors import NinePError

from ..helpers import TIMEOUT


async def test_submit_wait_status_and_cat(grid):
    grid.start_worker("w1", 2)
    with trio.fail_after(TIMEOUT):
        async with api.connect(grid.sock) as g:
            job = await g.submit(JobSpec(cmd="sh", args=("-c", "echo $STYXGRID_TASK"),
                                         tasks=3))
            final = await g.wait(job)
            assert (final.job, final.state, final.done, final.tasks) == (job, "done", 3, 3)
            assert final.finished and (await g.status(job)) == final
            assert await g.cat(f"jobs/{job}/stdout") == b"0\n1\n2\n"
            other = await g.submit("cmd false\nsubmit\n")
            assert (await g.wait(other)).state == "failed"
            assert [s.job for s in await g.jobs()] == [job, other]
            with pytest.raises(NinePError, match="no job 999"):
                await g.status(999)


@pytest.mark.parametrize("line", ["", "x done", "3 done tasks=1", "3 done tasks=x queued=0"])
def test_a_status_line_that_is_not_one_is_refused(line):
    with pytest.raises(ValueError, match="not a job status line"):
        api.JobStatus.parse(line)


def test_a_status_line_read():
    s = api.JobStatus.parse(b"7 held tasks=4 queued=1 running=0 done=2 failed=0 killed=0 "
                            b"held=1 owner=alice\n")
    assert (s.job, s.state, s.held, s.owner, s.finished) == (7, "held", 1, "alice", False)
