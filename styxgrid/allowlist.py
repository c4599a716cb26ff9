"""A desktop owner's allow list (`styxgrid worker --allow GLOB`): the programs a
node runs, as globs matched against a program's absolute path.

Two sides read it.  The worker decides, when it starts a task, on the one path
the program runs from (`program_path`: no `.`, `..` or look-alike on the PATH
gets past).  The scheduler, which cannot look at the node's files, matches jobs
to nodes on the paths the program may have there (`could_run`), from what the
node's ad says: its globs (`Allow`), the PATH its tasks get (`TaskPath`) and
where their folders are (`TaskFolders`); so a job the owner does not allow
waits for a node that does, and `why` says so, instead of failing on this one.
"""

from __future__ import annotations

import fnmatch
import os
from typing import NamedTuple, Sequence

TASK_FOLDER = "task.XXXXXXXX"       # stands for a task's folder's name (the scheduler's view)


def allowed(path: str | None, globs: Sequence[str]) -> bool:
    """With globs, only an absolute path (`program_path`) matching one is
    allowed; with none, any program is."""
    if not globs:
        return True
    return path is not None and any(fnmatch.fnmatchcase(path, glob) for glob in globs)


def program_path(cmd: str, cwd: str, found: str | None) -> str | None:
    """The absolute path a task's program runs from, with no `..` or `.` left in
    it: `cmd` itself when it names a path (taken from the task's folder), else
    where the task's PATH `found` it; None when it was not found."""
    if cmd.startswith("/") and "/." not in cmd and "//" not in cmd:
        return cmd                              # already absolute and normal (the usual)
    if "/" in cmd:
        return os.path.normpath(os.path.join(cwd, cmd))
    return os.path.normpath(os.path.join(cwd, found)) if found else None


class Program(NamedTuple):
    """A job's program as matchmaking sees it: `cmd` as the job names it, the
    job's `dir` and the PATH the job sets (empty: the node's task PATH)."""

    cmd: str
    folder: str = ""
    path: str = ""


def job_program(cmd: str, folder: str, env: Sequence[tuple[str, str]]) -> Program:
    """What of a job decides where its program is: only a bare name is looked
    up on a PATH, and only a path inside the task's folder depends on `dir`."""
    if cmd.startswith("/"):
        return Program(cmd)
    if "/" in cmd:
        return Program(cmd, folder)
    return Program(cmd, "", next((v for k, v in reversed(env) if k == "PATH"), ""))


def could_run(program: Program, globs: Sequence[str], task_path: str, folders: str) -> bool:
    """Whether a node with these globs may allow the job's program: an absolute
    path when it matches; a bare name when it matches in some folder of the
    PATH it is looked up on (the job's, else the node's for tasks); a file of
    the job when its place in a task's folder does.  The worker's own check,
    on the one file it finds, stays final."""
    if not globs:
        return True
    cmd = program.cmd
    if cmd.startswith("/"):
        return allowed(os.path.normpath(cmd), globs)
    if "/" not in cmd:
        return any(allowed(os.path.normpath(os.path.join(d, cmd)), globs)
                   for d in (program.path or task_path).split(":") if d.startswith("/"))
    return allowed(os.path.normpath(os.path.join(folders, TASK_FOLDER, program.folder, cmd)),
                   globs)


def parse_globs(text: str) -> tuple[str, ...]:
    """The `Allow` attribute: globs separated by blanks (a glob has none)."""
    return tuple(text.split())
