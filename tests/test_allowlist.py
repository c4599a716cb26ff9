"""An owner's allow list, as the worker checks it and as matchmaking reads it
from the node's ad (styxgrid/allowlist.py)."""

from __future__ import annotations

import pytest

from styxgrid import allowlist


@pytest.mark.parametrize("cmd, cwd, found, globs, ok", [
    ("anything", "/t", None, (), True),
    ("sh", "/t", "/bin/sh", ("/bin/*",), True),
    ("sh", "/t", "/usr/bin/sh", ("/bin/*",), False),
    ("./sim", "/t/x", None, ("/t/x/*",), True),
    ("./sim", "/t/x", None, ("/opt/*",), False),
    ("sim", "/t", None, ("sim",), False),               # a name is not a path
    ("sim", "/t", "/opt/sim", ("sim",), False),
    ("/usr/bin/../../bin/sh", "/t", None, ("/usr/bin/*",), False),   # the bypass
    ("/usr/bin/./env", "/t", None, ("/usr/bin/*",), True),
    ("../../../bin/sh", "/t/x", None, ("/t/x/*",), False),
])
def test_the_worker_matches_the_path_the_program_runs_from(cmd, cwd, found, globs, ok):
    assert allowlist.allowed(allowlist.program_path(cmd, cwd, found), globs) is ok


PATH = "/usr/local/bin:/usr/bin:/bin"


@pytest.mark.parametrize("cmd, folder, env, globs, ok", [
    ("/bin/sh", "", (), (), True),
    ("/bin/sh", "", (), ("/usr/bin/*",), False),
    ("/usr/bin/../../bin/sh", "", (), ("/usr/bin/*",), False),
    ("/usr/bin/./env", "", (), ("/usr/bin/*",), True),
    ("python3", "", (), ("/usr/bin/python3",), True),        # on the node's task PATH
    ("python3", "", (), ("/opt/*",), False),
    ("./sim", "", (), ("/w/*",), True),                      # a file of the job, in its folder
    ("./sim", "run", (), ("/w/task.*/run/sim",), True),
    ("../../bin/sh", "", (), ("/w/*",), False),              # out of the task's folder
    ("sim", "", (("PATH", "/opt/bin"),), ("/opt/bin/*",), True),   # the job's own PATH
    ("sim", "", (("PATH", "/opt/bin"),), ("/usr/bin/*",), False),
    ("/bin/sh", "x", (("PATH", "/opt"),), ("/bin/sh",), True),     # no PATH for a path
    ("./sim", "", (), ("/usr/bin/*",), False),
])
def test_matchmaking_reads_the_paths_the_program_may_have_on_the_node(cmd, folder, env, globs,
                                                                     ok):
    program = allowlist.job_program(cmd, folder, env)
    assert allowlist.could_run(program, globs, PATH, "/w") is ok
